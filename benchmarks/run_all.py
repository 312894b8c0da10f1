"""Run every benchmark in turn and print their tables: ``python -m benchmarks.run_all`` (or ``make benchmarks``).

Each benchmark is its own module with its own command line; this runs them with their defaults
(CPU, 2 threads), one after another so that they never compete for the cores.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = ["benchmarks.bench_model", "benchmarks.bench_sampling", "benchmarks.bench_adaptation",
              "benchmarks.bench_smollm2"]


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n## {name}\n", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", name])
        print(f"\n({name} took {time.perf_counter() - t0:.0f} s, exit status {rc})", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
