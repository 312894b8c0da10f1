"""Environment report for bug reports: ``python -m helpers.check_env``.

Prints Python, the operating system, every required library with its version, the devices PyTorch
sees, SmolLM2's weight file (path, size, SHA-256 checked) and fast mode. Exits with status 1 when a required library is missing or older than the
course needs, so that a set-up script can stop early.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import re
import sys

from helpers.smollm2_file import check_smollm2

# The lower bounds of pyproject.toml's dependencies; a test keeps the two in step.
REQUIRED = {
    "torch": "2.2",
    "numpy": "1.24",
    "matplotlib": "3.7",
    "ipywidgets": "8",
    "jupyterlab": "4",
    "tqdm": "4.60",
    "optuna": "3.5",
    "cmaes": "0.10",
    "safetensors": "0.4",
    "gguf": "0.10",
    "jinja2": "3.1",
}
MIN_PYTHON = (3, 10)


def _as_tuple(version: str) -> tuple[int, ...]:
    """Leading numeric parts of a version string: '2.13.0+cpu' -> (2, 13, 0)."""
    parts = []
    for piece in version.split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def problems() -> list[str]:
    """Everything that keeps the course from running here (empty when all is well)."""
    found = []
    if sys.version_info[:2] < MIN_PYTHON:
        found.append(f"Python {platform.python_version()} is older than {'.'.join(map(str, MIN_PYTHON))}")
    for name, minimum in REQUIRED.items():
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            found.append(f"{name} is missing (need >= {minimum})")
            continue
        if _as_tuple(have) < _as_tuple(minimum):
            found.append(f"{name} {have} is older than {minimum}")
    found += check_smollm2()[1]
    return found


def report() -> str:
    """The environment report as text."""
    lines = [
        f"python      {platform.python_version()} ({sys.executable})",
        f"platform    {platform.platform()}",
        f"machine     {platform.machine()}, {os.cpu_count()} logical CPUs",
    ]
    for name in REQUIRED:
        try:
            lines.append(f"{name:<11} {md.version(name)}")
        except md.PackageNotFoundError:
            lines.append(f"{name:<11} MISSING")
    try:
        import torch

        from helpers.runtime import available_devices

        lines.append(f"devices     {', '.join(available_devices())}")
        if torch.cuda.is_available():
            lines.append(f"cuda        {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
        lines.append(f"threads     {torch.get_num_threads()}")
    except Exception as err:  # the report must print even when torch itself is broken
        lines.append(f"devices     unknown ({err})")
    lines += check_smollm2()[0]
    lines.append(f"COURSE_FAST={os.environ.get('COURSE_FAST', '')!r} COURSE_DEVICE={os.environ.get('COURSE_DEVICE', '')!r}")
    return "\n".join(lines)


def main() -> int:
    print("LLM parameters course: environment report")
    print(report())
    found = problems()
    if found:
        print("\nPROBLEMS:")
        for line in found:
            print(f"  - {line}")
        print("Fix them with `make setup` (see README.md), then run this report again.")
        return 1
    print("\nall required packages present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
