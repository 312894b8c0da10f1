"""A fixed sample of plausible bugs, each planted in a copy of ``helpers``: the tests meant to catch it must fail.

Each of these bugs once went unnoticed by the whole suite. Planting them here keeps the catching tests
from being weakened later: if a test stops failing on its bug, this file fails. (The full mutation
run, ``python -m benchmarks.mutation``, is too slow for the default test command.)

The copies run in subprocesses started together, so the sample costs about one interpreter start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


@dataclass(frozen=True)
class Mutant:
    name: str
    module: str  # path inside the repository
    original: str  # must occur exactly once in the module
    mutated: str
    tests: tuple[str, ...]  # pytest node ids relative to tests/, the ones that must catch it
    catcher: str  # a test whose name must appear among the failures


MUTANTS = [
    Mutant("top_p keeps the token that reaches top_p exactly", "helpers/sampling/filters.py",
           "drop_sorted = mass_before >= top_p", "drop_sorted = mass_before > top_p",
           ("test_sampling.py::test_top_p_at_exact_boundaries",), "test_top_p_at_exact_boundaries"),
    Mutant("warmup_cosine decays one step late", "helpers/schedules.py",
           "return _cosine_from(step, warmup_steps, total_steps", "return _cosine_from(step, warmup_steps + 1, total_steps",
           ("test_schedules.py::test_every_step_matches_the_closed_form",), "test_every_step_matches_the_closed_form"),
    Mutant("train() reads the schedule one step ahead", "helpers/train.py",
           "lr = lr_at(k - 1, config.steps", "lr = lr_at(k, config.steps",
           ("test_train.py::test_the_optimiser_uses_the_schedule_at_every_step",),
           "test_the_optimiser_uses_the_schedule_at_every_step"),
    Mutant("load_checkpoint accepts a smaller tokenizer", "helpers/checkpoints.py",
           "if tokenizer.vocab_size != config.vocab_size:", "if tokenizer.vocab_size > config.vocab_size:",
           ("test_checkpoints.py::test_tokenizer_with_another_vocabulary_is_refused",),
           "test_tokenizer_with_another_vocabulary_is_refused"),
    Mutant("load_checkpoint accepts a larger tokenizer", "helpers/checkpoints.py",
           "if tokenizer.vocab_size != config.vocab_size:", "if tokenizer.vocab_size < config.vocab_size:",
           ("test_checkpoints.py::test_tokenizer_with_another_vocabulary_is_refused",),
           "test_tokenizer_with_another_vocabulary_is_refused"),
    Mutant("train() counts the activations of the whole accumulated batch", "helpers/train.py",
           "activation_bytes = _saved_activation_bytes(model, x[: config.batch_size], y[: config.batch_size],",
           "activation_bytes = _saved_activation_bytes(model, x, y,",
           ("test_train.py::test_memory_estimate_counts_one_micro_batch_of_activations",),
           "test_memory_estimate_counts_one_micro_batch_of_activations"),
    Mutant("the KV cache lets a chunk of two new tokens see each other both ways", "helpers/model.py",
           "if T > 1:  # new query i sees", "if T > 2:  # new query i sees",
           ("test_model.py::test_the_cache_from_the_first_token_in_pieces_of_one_to_three",),
           "test_the_cache_from_the_first_token_in_pieces_of_one_to_three"),
    Mutant("the sampler shifts every row by the batch's maximum", "helpers/sampling/filters.py",
           "logits - logits.amax(dim=-1, keepdim=True)", "logits - logits.amax()",
           ("test_sampling.py::test_rows_are_processed_apart",), "test_rows_are_processed_apart"),
    Mutant("save_checkpoint never syncs a folder", "helpers/checkpoints.py",
           'if path.is_dir() and os.name != "posix":', "if path.is_dir():",
           ("test_checkpoints.py::test_save_syncs_every_file_and_folder_before_renaming",),
           "test_save_syncs_every_file_and_folder_before_renaming"),
]

# Run in the child: refuse to test anything but the mutated copy (exit 99), then run pytest.
CHILD = """
import sys, pytest, helpers
copy = sys.argv[1]
if not helpers.__file__.startswith(copy):
    print("imported helpers from", helpers.__file__, "instead of", copy)
    sys.exit(99)
sys.exit(pytest.main(sys.argv[2:]))
"""


def _plant(m: Mutant, root: Path) -> Path:
    """A copy of ``helpers`` under ``root`` with ``m`` applied (the large assets are linked, not copied)."""
    dest = root / m.name.replace(" ", "_").replace("(", "").replace(")", "")
    shutil.copytree(REPO / "helpers", dest / "helpers", ignore=shutil.ignore_patterns("__pycache__", "assets"))
    (dest / "helpers" / "assets").symlink_to(REPO / "helpers" / "assets", target_is_directory=True)
    path = dest / m.module
    text = path.read_text()
    assert text.count(m.original) == 1, f"{m.module} no longer contains {m.original!r} exactly once: update {m.name!r}"
    path.write_text(text.replace(m.original, m.mutated))
    return dest


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start one pytest per mutant, all at once; each test below waits for its own."""
    root = tmp_path_factory.mktemp("mutants")
    procs = {}
    for m in MUTANTS:
        dest = _plant(m, root)
        env = os.environ | {"PYTHONPATH": str(dest), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        args = [sys.executable, "-c", CHILD, str(dest / "helpers"), "-x", "-q", "-p", "no:cacheprovider",
                "-p", "no:xdist", "-o", "addopts=", "--rootdir", str(REPO), *[str(TESTS / t) for t in m.tests]]
        # cwd is the copy: `python -c` puts the working directory first on sys.path
        procs[m.name] = subprocess.Popen(args, cwd=dest, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True)
    yield procs
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_planted_bug_is_caught(runs, mutant):
    out, _ = runs[mutant.name].communicate(timeout=600)
    code = runs[mutant.name].returncode
    assert code != 99, out
    # pytest's exit code 1 means "tests ran and some failed"; 0 would mean the bug went unnoticed,
    # anything else an error that says nothing about the tests
    assert code == 1, f"exit code {code} (1 expected: the tests must fail on this bug)\n{out[-3000:]}"
    assert f"FAILED tests/{mutant.tests[0].split('::')[0]}::{mutant.catcher}" in out or mutant.catcher in out, out[-3000:]


def test_every_planted_bug_differs_from_the_original():
    assert all(m.original != m.mutated for m in MUTANTS)
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
