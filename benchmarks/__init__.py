"""Speed and memory benchmarks against the reference implementations (see README.md)."""
