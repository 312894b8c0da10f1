"""Mutation testing of the core modules with mutmut: how many small planted bugs the tests catch.

    python -m benchmarks.mutation                 # every module below
    python -m benchmarks.mutation schedules lora  # some of them
    python -m benchmarks.mutation --list          # the modules and the test files that cover them

Each module is mutated in its own temporary copy of the repository (mutmut rewrites the code it
mutates), against only the test files that cover it, one worker per core. Prints per module the
mutants killed, survived and the score (killed / all mutants), and the surviving mutants' names;
``mutmut show NAME`` in the printed folder shows one. Slow (minutes per module), so not part of the
default test command; ``tests/test_mutants.py`` runs a fixed sample of mutants there instead.
A module listed in ``FIRST_PASS`` is run in two passes: its slow tests left out first, then the
survivors again against every covering test (the score is the same, the run much shorter).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: module name -> (the code mutated, the test files that cover it)
MODULES: dict[str, tuple[str, list[str]]] = {
    "schedules": ("helpers/schedules.py", ["tests/test_schedules.py"]),
    "quantize": ("helpers/quantize.py", ["tests/test_quantize.py", "tests/test_quantize_paths.py",
                                      "tests/test_quantize_lowbit.py"]),
    "lora": ("helpers/lora.py", ["tests/test_lora.py", "tests/test_lora_peft.py", "tests/test_lora_state.py"]),
    "tokenizer": ("helpers/tokenizer.py", ["tests/test_tokenizer.py"]),
    "checkpoints": ("helpers/checkpoints.py", ["tests/test_checkpoints.py"]),
    "train": ("helpers/train.py", ["tests/test_train.py"]),
    "sampling": ("helpers/sampling", ["tests/test_sampling.py", "tests/test_sampling_generate.py",
                                      "tests/test_sampling_oracle.py", "tests/test_sampling_metrics.py"]),
    "model": ("helpers/model.py", ["tests/test_model.py"]),
}


#: module name -> a pytest -k expression that leaves out its slow tests (they start subprocesses) in a
#: first pass; the mutants that survive it are run again against every covering test, so the score
#: is the same as from one pass with all of them, in a fraction of the time
FIRST_PASS: dict[str, str] = {
    "checkpoints": "not test_killed_save_loses_nothing and not test_killed_first_save_is_recovered",
}


def _config(source: str, tests: list[str], keyword: str | None = None) -> str:
    """The [tool.mutmut] table for one module (appended to the copy's pyproject.toml)."""
    quoted = ", ".join(f'"{t}"' for t in [*tests, *(["-k", keyword] if keyword else [])])
    return (f'\n[tool.mutmut]\nsource_paths = ["{source}"]\npytest_add_cli_args_test_selection = [{quoted}]\n'
            f'also_copy = ["helpers", "tests"]\npytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\n')


def _copy(name: str, config: str) -> Path:
    work = Path(tempfile.mkdtemp(prefix=f"mutation-{name}-"))
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
    shutil.copytree(REPO / "helpers", work / "helpers", ignore=ignore)
    shutil.copytree(REPO / "tests", work / "tests", ignore=ignore)
    (work / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text() + config)
    return work


def _mutmut(work: Path, workers: int, names: list[str]) -> tuple[dict[str, str], subprocess.CompletedProcess]:
    """Run mutmut in ``work`` (on ``names`` only, if given); returns ({mutant: status}, the run)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # mutmut imports from its own copy
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    mutmut = [sys.executable, "-m", "mutmut"]
    run = subprocess.run([*mutmut, "run", "--max-children", str(workers), *names], cwd=work, env=env,
                         capture_output=True, text=True)
    listing = subprocess.run([*mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True)
    status = {}
    for line in listing.stdout.splitlines():
        if ":" in line:
            mutant, _, state = line.strip().rpartition(": ")
            status[mutant] = state
    if not status:
        print(run.stdout[-2000:], run.stderr[-2000:], listing.stderr[-2000:], sep="\n")
    return status, run


def run_module(name: str, workers: int, keep: bool) -> dict:
    source, tests = MODULES[name]
    keyword = FIRST_PASS.get(name)
    start = time.perf_counter()
    work = _copy(name, _config(source, tests, keyword))
    status, _ = _mutmut(work, workers, [])
    folders = [work]
    survivors = sorted(m for m, s in status.items() if s != "killed")
    if keyword and survivors:  # second pass: the survivors against every covering test
        folders.append(_copy(name, _config(source, tests)))
        again, _ = _mutmut(folders[-1], workers, survivors)
        status |= {m: again[m] for m in survivors if m in again}
    seconds = time.perf_counter() - start
    counts = Counter(status.values())
    total = len(status)
    if not keep:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    return {"module": name, "total": total, "killed": counts.get("killed", 0), "counts": dict(counts),
            "score": counts.get("killed", 0) / total if total else float("nan"), "seconds": seconds,
            "survivors": sorted(m for m, s in status.items() if s != "killed"),
            "folder": " and ".join(map(str, folders)) if keep else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"any of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", action="store_true", help="keep the copies, to inspect mutants with mutmut show")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"modules must be among {', '.join(MODULES)}, got {', '.join(unknown)}")
    if args.list:
        for name, (source, tests) in MODULES.items():
            print(f"{name:12} {source:28} {' '.join(tests)}")
        return 0
    results = []
    for name in args.modules or list(MODULES):
        r = run_module(name, args.workers, args.keep)
        results.append(r)
        print(f"{name}: {r['killed']}/{r['total']} killed = {r['score']:.1%} in {r['seconds']:.0f} s "
              f"{r['counts']}", flush=True)
        for m in r["survivors"]:
            print(f"    not killed: {m}")
        if r["folder"]:
            print(f"    copy kept in {r['folder']}")
    print("\nmodule        killed/total  score")
    for r in results:
        print(f"{r['module']:12} {r['killed']:>6}/{r['total']:<6} {r['score']:6.1%}")
    return 0 if all(r["total"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
