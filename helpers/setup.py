"""Set up the course and run its tests, on any system with Python >= 3.10 (no ``make`` needed).

    python -m helpers.setup course        # create/update .venv with what the notebooks need, open JupyterLab
    python -m helpers.setup test          # the same .venv plus the test tools, then the whole test suite
    python -m helpers.setup wheelhouse DIR --platform linux-x86_64 windows-x86_64   # wheels for a room offline
    python -m helpers.setup course --wheelhouse DIR                                 # install from those wheels
    python -m helpers.setup bundle student.zip                                      # notebooks without solutions

The Makefile's ``course`` and ``test`` call this module, so ``make`` and the plain ``python -m`` route
cannot drift apart. Only the standard library is used here: this runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from helpers.handout import (  # the pins and the command runner are shared with the hand-out tools
    CPU_INDEX,
    KINDS,
    NO_DEPS,
    PLATFORMS,
    ROOT,
    TORCH,
    Runner,
    _checked,
    build_bundle,
    build_wheelhouse,
    index_reachable,
    run_command,
)

# The optional extras of pyproject.toml (tests/test_setup.py keeps this list in step with the file).
OPTIONAL_EXTRAS = ("test", "cluster")
STAMP = ".course-setup.json"






def venv_python(venv: Path) -> Path:
    """The interpreter inside a virtual environment, on Windows and elsewhere."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def has_nvidia_gpu() -> bool:
    """True when ``nvidia-smi -L`` lists at least one GPU."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def _source_args(wheelhouse: Path | None) -> list[str]:
    """pip arguments that install from a wheelhouse only, never from the network."""
    return ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse is not None else []


def install_torch(
    python: Path | str,
    *,
    runner: Runner = run_command,
    wheelhouse: Path | None = None,
    index: str = CPU_INDEX,
    gpu: bool | None = None,
    reachable: Callable[[str], bool] = index_reachable,
) -> str:
    """Install PyTorch into the environment of ``python``, and return the route taken.

    ``kept``: a torch is importable already (e.g. a CUDA build the learner chose); ``wheelhouse``: from
    the offline folder; ``default``: an NVIDIA GPU is present, so the default (CUDA) build; ``cpu-index``:
    no NVIDIA GPU, the CPU build from PyTorch's own index; ``fallback``: that index cannot be reached (or
    its install failed), so the plain requirement from the configured index (a mirror may serve the CPU
    build there; on Linux, PyPI's default is the CUDA build).
    """
    pip = [str(python), "-m", "pip", "install"]
    if runner([str(python), "-c", "import torch"]) == 0:
        print("keeping the installed torch", flush=True)
        return "kept"
    if wheelhouse is not None:
        _checked(runner, [*pip, *_source_args(wheelhouse), TORCH])
        return "wheelhouse"
    if gpu is None:
        gpu = has_nvidia_gpu()
    if gpu:
        print("NVIDIA GPU found: installing the default (CUDA) build of torch", flush=True)
        _checked(runner, [*pip, TORCH])
        return "default"
    print(f"no NVIDIA GPU: installing the CPU build of torch from {index}", flush=True)
    if reachable(index) and runner([*pip, TORCH, "--index-url", index]) == 0:
        return "cpu-index"
    print(f"{index} cannot be reached: installing {TORCH} from the configured package index", flush=True)
    _checked(runner, [*pip, TORCH])
    return "fallback"


def _stamp_key() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def _installed_kinds(venv: Path) -> set[str]:
    try:
        data = json.loads((venv / STAMP).read_text())
    except (OSError, ValueError):
        return set()
    return set(data.get("kinds", [])) if data.get("pyproject") == _stamp_key() else set()


def install(
    kind: str,
    venv: Path,
    *,
    runner: Runner = run_command,
    wheelhouse: Path | None = None,
    force: bool = False,
    index: str = CPU_INDEX,
    reachable: Callable[[str], bool] = index_reachable,
    gpu: bool | None = None,
    extras: Sequence[str] = (),
) -> Path:
    """Create or update the virtual environment ``venv`` for ``kind`` ('course' or 'test'); return its python.

    'course' installs what the notebooks need; 'test' adds the ``test`` extra (test runners, linters and
    the reference libraries the tests compare with). ``extras`` names further optional extras of
    pyproject.toml (e.g. 'cluster': Ray Tune and psycopg). Nothing is reinstalled while pyproject.toml is
    unchanged, unless ``force``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {', '.join(KINDS)}")
    for extra in extras:
        if extra not in OPTIONAL_EXTRAS:
            raise ValueError(f"extras: {extra!r} is not an extra of pyproject.toml; expected one of "
                             f"{', '.join(OPTIONAL_EXTRAS)}")
    if wheelhouse is not None and not Path(wheelhouse).is_dir():
        raise ValueError(f"wheelhouse={str(wheelhouse)!r}: not a folder (build one with `python -m helpers.setup wheelhouse DIR`)")
    python = venv_python(venv)
    have = set() if force else _installed_kinds(venv)
    if kind in have or (kind == "course" and "test" in have):
        print(f"{venv} is up to date for `{kind}` (delete {venv / STAMP} to reinstall)", flush=True)
        return python
    if not python.exists():
        _checked(runner, [sys.executable, "-m", "venv", str(venv)])
    src = _source_args(wheelhouse)
    if wheelhouse is None:
        _checked(runner, [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    install_torch(python, runner=runner, wheelhouse=wheelhouse, index=index, gpu=gpu, reachable=reachable)
    wanted = (["test"] if kind == "test" else []) + [e for e in extras if e != "test"]
    target = f"{ROOT}[{','.join(wanted)}]" if wanted else str(ROOT)
    _checked(runner, [str(python), "-m", "pip", "install", *src, "-e", target])
    _checked(runner, [str(python), "-m", "pip", "install", *src, "--no-deps", *NO_DEPS])
    if runner is run_command:  # a dry run records nothing
        (venv / STAMP).write_text(json.dumps({"pyproject": _stamp_key(), "kinds": sorted(have | {kind})}))
    return python


def open_course_command(python: Path | str) -> list[str]:
    """JupyterLab on the first notebook; as root (containers, cloud machines) it must be told that is fine."""
    cmd = [str(python), "-m", "jupyter", "lab"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        cmd.append("--allow-root")
    return [*cmd, "notebooks/00_start_here.ipynb"]


# ---------------------------------------------------------------------------------------------- tests

TEST_ENV = {
    # Fast mode; one thread per kernel so that two kernels share two cores without fighting.
    "COURSE_FAST": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}


def committed_notebooks(root: Path = ROOT) -> tuple[Path, list[Path]] | None:
    """Copies of the notebooks as git would commit them (the index), in a temporary folder.

    Returns (folder, notebook paths) or None outside a git checkout. A learner's run saves outputs into
    the working copy only; what the repository holds, and what a commit would add, is what must be clean.
    """
    if shutil.which("git") is None:
        return None
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True)
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    names = subprocess.run(["git", "ls-files", "-z", "--", "*.ipynb"], cwd=root, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    names = [n for n in names if n]
    tmp = Path(tempfile.mkdtemp(prefix="committed-notebooks-"))
    if names:
        subprocess.run(["git", "checkout-index", f"--prefix={tmp}{os.sep}", "--", *names], cwd=root, check=True)
    return tmp, [tmp / n for n in names]


def verify_notebooks_clean(root: Path = ROOT, runner: Runner = run_command) -> int:
    """``nbstripout --verify`` on the committed (staged) notebooks; 0 when none carries outputs."""
    found = committed_notebooks(root)
    if found is None:
        print("not a git checkout: checking the notebooks in the working folder", flush=True)
        files = sorted(p for p in (root / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        return runner([sys.executable, "-m", "nbstripout", "--verify", *files]) if files else 0
    tmp, files = found
    try:
        return runner([sys.executable, "-m", "nbstripout", "--verify", *files]) if files else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_tests(pytest_args: Sequence[str] = (), runner: Runner = run_command) -> int:
    """The whole suite in the current environment: lint, clean notebooks, unit tests and notebooks, browser."""
    os.chdir(ROOT)
    os.environ.update(TEST_ENV)
    print("== ruff: helpers, tests, benchmarks and notebooks", flush=True)
    status = runner([sys.executable, "-m", "ruff", "check", "helpers", "tests", "benchmarks", "notebooks"])
    print("== the committed notebooks carry no outputs (your own runs in the working copy may)", flush=True)
    status = verify_notebooks_clean(ROOT, runner) or status
    print("== unit tests and every notebook (fast mode, one thread per kernel, two workers)", flush=True)
    status = runner([sys.executable, "-m", "pytest", "tests", "notebooks", "--nbmake", "--nbmake-timeout=300",
                     "-n", "2", "--durations=15", "-p", "no:cacheprovider", "-m", "not browser",
                     *pytest_args]) or status
    # The browser tests drive JupyterLab and Chromium through whole notebooks; they run on their own,
    # after the rest, so that a busy machine does not starve the page while it renders outputs and widgets.
    if os.environ.get("COURSE_SKIP_BROWSER", "0") == "1":
        print("== browser tests skipped (COURSE_SKIP_BROWSER=1)", flush=True)
    else:
        print("== browser tests (JupyterLab in headless Chromium)", flush=True)
        status = runner([sys.executable, "-m", "pytest", "tests", "-m", "browser", "-p", "no:cacheprovider",
                         *pytest_args]) or status
    return status


# ------------------------------------------------------------------------------------------------ main


def _dry_runner(cmd: Sequence[str]) -> int:
    """Print a command instead of running it; the probe for an installed torch answers 'not there'."""
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return 1 if list(cmd[1:]) == ["-c", "import torch"] else 0


def main(argv: Sequence[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m helpers.setup", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for kind, text in [("course", "set up the course and open JupyterLab"), ("test", "set up and run every test")]:
        p = sub.add_parser(kind, help=text)
        p.add_argument("--venv", type=Path, default=ROOT / ".venv", help="the virtual environment (default .venv)")
        p.add_argument("--wheelhouse", type=Path, help="install from this folder of wheels only (no network)")
        p.add_argument("--force", action="store_true", help="reinstall even if pyproject.toml is unchanged")
        p.add_argument("--torch-index", default=CPU_INDEX, help=f"PyTorch's CPU wheel index (default {CPU_INDEX})")
        p.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
        p.add_argument("--setup-only", action="store_true", help="set up, then neither open JupyterLab nor test")
    sub.add_parser("run-tests", help="run the test suite in the current environment (other arguments go to pytest)")
    p = sub.add_parser("wheelhouse", help="download the wheels for a room without internet")
    p.add_argument("dest", type=Path)
    p.add_argument("--platform", nargs="+", default=list(PLATFORMS), choices=["here", *PLATFORMS])
    p.add_argument("--python-version", help="e.g. 3.11 (default: this Python's)")
    p.add_argument("--kind", choices=KINDS, default="test", help="'course' leaves out the test tools")
    p.add_argument("--dry-run", action="store_true")
    p = sub.add_parser("bundle", help="zip the notebooks (no solutions), helpers and set-up files for students")
    p.add_argument("out", type=Path)
    # `test` and `run-tests` pass the arguments they do not know on to pytest (e.g. `-x -k sampling`).
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("test", "run-tests"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    if args.command in KINDS:
        runner: Runner = _dry_runner if args.dry_run else run_command
        wheelhouse = args.wheelhouse.resolve() if args.wheelhouse else None
        # COURSE_EXTRAS=cluster adds optional extras to the test set-up (CI: Ray Tune and psycopg for the
        # cluster tests); the course set-up stays lean whatever the environment says.
        extras = [e.strip() for e in os.environ.get("COURSE_EXTRAS", "").split(",") if e.strip()]
        python = install(args.command, args.venv.resolve(), runner=runner, wheelhouse=wheelhouse, force=args.force,
                         index=args.torch_index, extras=extras if args.command == "test" else ())
        if args.setup_only:
            return 0
        os.chdir(ROOT)
        if args.command == "course":
            return runner(open_course_command(python))
        return runner([str(python), "-m", "helpers.setup", "run-tests", *rest])
    if args.command == "run-tests":
        return run_tests(rest)
    if args.command == "wheelhouse":
        runner = _dry_runner if args.dry_run else run_command
        dest = build_wheelhouse(args.dest, args.platform, kind=args.kind, python_version=args.python_version,
                                runner=runner)
        print(f"wheelhouse ready: {dest}; install with `python -m helpers.setup course --wheelhouse {dest}`")
        return 0
    out = build_bundle(args.out)
    print(f"student bundle: {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
