"""Budgets: every notebook declares one that code can read, the runner measures and records against it,
the README's table is the one the record renders, and the fast-mode test run fails a notebook over budget."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import budgets
from helpers.budgets import BudgetError, Result, read_declaration
from helpers.runtime import MAX_FAST_SECONDS, MAX_FULL_GB, MAX_FULL_MINUTES, Budget

ROOT = Path(__file__).resolve().parents[1]
ALL = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted(
    (ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))


def _notebook(tmp_path: Path, first_code: str, name: str = "98_probe.ipynb", more: tuple[str, ...] = ()) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# probe"),
                                         nbformat.v4.new_code_cell(first_code),
                                         *(nbformat.v4.new_code_cell(c) for c in more)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


DECLARED = ('from helpers.runtime import Budget, describe\n'
            'device = describe(notebook="98", budget=Budget(full_minutes=1, full_gb=0.5, fast_seconds={fast}))')


# ----------------------------------------------------------------------------------- the declarations
def test_every_notebook_declares_a_budget_within_the_limits():
    assert len(ALL) == 28
    for path in ALL:
        number, budget = read_declaration(path)
        assert number == path.name[:2]
        assert 0 < budget.full_minutes <= MAX_FULL_MINUTES and 0 < budget.full_gb <= MAX_FULL_GB
        assert 0 < budget.fast_seconds <= MAX_FAST_SECONDS


def test_solutions_declare_the_same_budgets():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert read_declaration(path) == read_declaration(ROOT / "notebooks" / "solutions" / path.name)


def test_the_whole_course_fits_its_budget():
    total = sum(read_declaration(p)[1].full_minutes for p in budgets.notebook_paths())
    assert total <= budgets.COURSE_MINUTES


def test_no_hand_typed_run_time_in_the_first_markdown_cell():
    for path in ALL:
        first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        assert "Runs in" not in first.source, path.name
        assert not re.search(r"measured: \d", first.source), path.name
        assert "first code cell" in first.source, path.name


@pytest.mark.parametrize("source, message", [
    ("from helpers.runtime import describe\ndevice = describe()", "no notebook and budget="),
    ('device = describe(notebook="98")', "no budget="),
    ('device = describe(budget=Budget(full_minutes=1, full_gb=1, fast_seconds=5))', "no notebook="),
    ('device = describe(notebook="97", budget=Budget(full_minutes=1, full_gb=1, fast_seconds=5))',
     "does not match the file's number"),
    ('device = describe(notebook="98", budget=dict(full_minutes=1))', "must be a Budget(...) call"),
    ('device = describe(notebook="98", budget=Budget(full_minutes=1, full_gb=1))', "lacks fast_seconds"),
    ('device = describe(notebook="98", budget=Budget(full_minutes=1, full_gb=1, fast_seconds=5, gpu=1))',
     "no parameter 'gpu'"),
    ('device = describe(notebook="98", budget=Budget(full_minutes=x, full_gb=1, fast_seconds=5))',
     "full_minutes must be a plain number"),
    ("device = describe(notebook=", "does not parse"),
    ("x = 1", "does not call describe()"),
])
def test_a_missing_or_malformed_declaration_names_the_notebook(tmp_path, source, message):
    path = _notebook(tmp_path, source)
    with pytest.raises(BudgetError, match=r"98_probe\.ipynb") as err:
        read_declaration(path)
    assert message in str(err.value)


def test_a_notebook_without_code_cells_is_refused(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# only prose")])
    nbformat.write(nb, tmp_path / "98_prose.ipynb")
    with pytest.raises(BudgetError, match="98_prose.ipynb: has no code cell"):
        read_declaration(tmp_path / "98_prose.ipynb")


@pytest.mark.parametrize("field, value", [("full_minutes", 6), ("full_gb", 2.5), ("fast_seconds", 31),
                                          ("fast_seconds", 0), ("full_gb", -1)])
def test_values_out_of_range_name_the_parameter_and_value(tmp_path, field, value):
    values = {"full_minutes": 1, "full_gb": 1, "fast_seconds": 5, field: value}
    args = ", ".join(f"{k}={v}" for k, v in values.items())
    path = _notebook(tmp_path, f'device = describe(notebook="98", budget=Budget({args}))')
    with pytest.raises(ValueError, match=rf"98_probe.ipynb: Budget {field} must be in .* got {value}"):
        read_declaration(path)
    with pytest.raises(ValueError, match=rf"Budget {field} must be in \(0, .*\] .*got {value}"):
        Budget(**values)


def test_budget_refuses_non_numbers():
    with pytest.raises(TypeError, match="full_gb must be a number, got '1'"):
        Budget(full_minutes=1, full_gb="1", fast_seconds=5)
    with pytest.raises(TypeError, match="fast_seconds must be a number, got True"):
        Budget(full_minutes=1, full_gb=1, fast_seconds=True)


def test_only_picks_notebooks_and_refuses_unknown_ones():
    assert [p.name[:2] for p in budgets.notebook_paths(["09", "08_learning_rate"])] == ["08", "09"]
    with pytest.raises(ValueError, match=r"only=\['99'\]"):
        budgets.notebook_paths(["08", "99"])


# ---------------------------------------------------------------------------------- judging, recording
def test_judge_by_wall_or_cpu_and_memory():
    b = Budget(full_minutes=1, full_gb=0.5, fast_seconds=5)
    r = Result("98_probe", b, fast=False, wall_s=61, cpu_s=30, peak_mb=499)
    r.judge("wall")
    assert r.over == ["wall time 61 s > 60 s"] and not r.ok
    r.judge("cpu")
    assert r.over == [] and r.ok
    r.peak_mb = 501
    r.judge("cpu")
    assert r.over == ["peak 0.50 GB > 0.5 GB"]
    fast = Result("98_probe", b, fast=True, wall_s=5.5, cpu_s=4, peak_mb=900)  # no memory budget in fast mode
    fast.judge("wall")
    assert fast.over == ["wall time 6 s > 5 s"]
    failed = Result("98_probe", b, fast=False, error="RuntimeError: boom")
    failed.judge()
    assert not failed.ok


def test_record_merges_and_the_readme_table_is_rendered_from_it(tmp_path):
    b = Budget(full_minutes=2, full_gb=1, fast_seconds=10)
    path = tmp_path / "verified.json"
    one = Result("98_a", b, fast=False, wall_s=100.0, cpu_s=90.0, peak_mb=700.0)
    two = Result("99_b", b, fast=False, wall_s=30.0, cpu_s=20.0, peak_mb=1200.0)
    two.judge()
    budgets.record([one], threads=2, path=path, today="2026-01-01")
    data = budgets.record([two], threads=2, path=path, today="2026-01-02")
    assert set(data["notebooks"]) == {"98_a", "99_b"}
    assert data["notebooks"]["98_a"]["full"]["wall_s"] == 100.0
    assert data["notebooks"]["99_b"]["full"]["over"] == ["peak 1.20 GB > 1 GB"]
    assert json.loads(path.read_text()) == data
    assert data["notebooks"]["98_a"]["full"]["versions"]["python"].count(".") == 2
    table = budgets.render_table(data)
    assert "| `98_a` | 1.7 min | 1.5 min | 0.70 GB | 2 min, 1 GB | not run | 10 s |" in table
    assert "| `99_b` | 30 s | 20 s | 1.20 GB **over** |" in table  # the memory is over, not the time
    assert "| all | 2.2 min | 1.8 min |" in table
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{budgets.BEGIN}\nold\n{budgets.END}\nrest\n")
    assert budgets.update_readme(data, readme)
    assert readme.read_text() == f"intro\n{budgets.BEGIN}\n{table}\n{budgets.END}\nrest\n"
    assert not budgets.update_readme(data, readme)
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="lacks the markers"):
        budgets.update_readme(data, readme)


def test_a_fast_run_fills_only_the_fast_column(tmp_path):
    """``--fast`` records beside the full-mode figures and never replaces them; the table shows its wall and CPU
    time (the figure the fast budget is checked on) and marks a fast run over its budget."""
    b = Budget(full_minutes=2, full_gb=1, fast_seconds=10)
    path = tmp_path / "verified.json"
    budgets.record([Result("98_a", b, fast=False, wall_s=100.0, cpu_s=90.0, peak_mb=700.0)], threads=2, path=path,
                   today="2026-01-01")
    fast = Result("98_a", b, fast=True, wall_s=14.0, cpu_s=8.0, peak_mb=400.0)
    fast.judge("cpu")
    slow = Result("99_b", b, fast=True, wall_s=30.0, cpu_s=12.0, peak_mb=400.0)
    slow.judge("cpu")
    data = budgets.record([fast, slow], threads=2, path=path, today="2026-01-02")
    assert data["notebooks"]["98_a"]["full"]["wall_s"] == 100.0  # the full-mode record is untouched
    assert data["notebooks"]["98_a"]["fast"]["cpu_s"] == 8.0
    assert data["notebooks"]["98_a"]["fast"]["machine"]["threads"] == 1
    table = budgets.render_table(data)
    assert "| `98_a` | 1.7 min | 1.5 min | 0.70 GB | 2 min, 1 GB | 14 s (8 s) | 10 s |" in table
    assert "| `99_b` | not run |  |  | 2 min, 1 GB | 30 s (12 s) **over** | 10 s |" in table  # CPU 12 s > 10 s
    assert "Measured on" in table and "Fast mode on one thread, 2026-01-02;" in table


def test_readme_table_is_the_one_verified_json_renders():
    data = json.loads(budgets.VERIFIED.read_text(encoding="utf-8")) if budgets.VERIFIED.exists() else {}
    text = budgets.README.read_text(encoding="utf-8")
    assert f"{budgets.BEGIN}\n{budgets.render_table(data)}\n{budgets.END}" in text, (
        "README's notebook table differs from notebooks/verified.json: run python -m helpers.budgets readme")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                OMP_NUM_THREADS="1", MPLBACKEND="Agg")


@pytest.mark.slow
def test_runner_measures_a_notebook_without_writing_it(tmp_path):
    # about 60 MB held for a moment, on top of the kernel's own memory
    path = _notebook(tmp_path, DECLARED.format(fast=5),
                     more=("import numpy as np\nblock = np.ones(60_000_000 // 8)\nimport time\n"
                           "t = time.process_time()\nwhile time.process_time() - t < 1.0: pass",))
    before = path.read_bytes()
    r = budgets.run_notebook(path, fast=True, threads=1)
    assert r.error is None
    assert path.read_bytes() == before
    assert r.cpu_s >= 1.0  # the busy loop, at least
    assert r.peak_mb >= 60  # the array, at least
    assert r.wall_s > 0  # a measurement: how long depends on the machine's load
    broken = _notebook(tmp_path, DECLARED.format(fast=5), name="98_broken.ipynb",
                       more=("raise RuntimeError('deliberately broken')",))
    r = budgets.run_notebook(broken, fast=True, threads=1)
    assert "deliberately broken" in r.error


@pytest.mark.slow
def test_the_fast_test_run_fails_notebooks_over_budget_or_without_one(tmp_path):
    # Starting a kernel and importing torch alone costs more than one second of CPU, so a budget of one
    # second fails; the busy loop makes sure of it on any machine. One pytest run for the three notebooks.
    _notebook(tmp_path, DECLARED.format(fast=1), name="98_over.ipynb",
              more=("import time\nt = time.process_time()\nwhile time.process_time() - t < 1.5: pass",))
    _notebook(tmp_path, DECLARED.format(fast=30), name="98_within.ipynb")
    _notebook(tmp_path, "x = 1", name="98_undeclared.ipynb")
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "helpers.budgets", "--nbmake", "-rA",
                          "-p", "no:cacheprovider", "."], capture_output=True, text=True, cwd=tmp_path,
                         env=_env() | {"COURSE_FAST": "1"})
    assert "98_over.ipynb: fast mode took" in out.stdout and "fast_seconds=1" in out.stdout, out.stdout
    assert "98_undeclared.ipynb: the first code cell does not call describe()" in out.stdout
    assert "PASSED 98_within.ipynb" in out.stdout
    assert "2 failed, 1 passed" in out.stdout


def test_fast_budget_error_message():
    path = ROOT / "notebooks" / "08_learning_rate.ipynb"
    limit = read_declaration(path)[1].fast_seconds
    assert budgets.fast_budget_error(path, limit) is None
    assert f"fast_seconds={limit:g}" in budgets.fast_budget_error(path, limit + 0.1)


def test_teaching_table_shows_the_declared_budgets():
    text = (ROOT / "TEACHING.md").read_text(encoding="utf-8")
    for path in budgets.notebook_paths():
        b = read_declaration(path)[1]
        row = re.search(rf"^\| {path.name[:2]} [^|]+\| ([^|]+) \|", text, re.M)
        assert row, f"TEACHING.md has no row for {path.name[:2]}"
        assert row.group(1) == f"{b.full_minutes:g} min ({b.fast_seconds:g} s)", path.name


def test_command_line_checks_its_arguments_and_the_readme(capsys):
    assert budgets.main(["check"]) == 0
    assert "the README table matches notebooks/verified.json" in capsys.readouterr().out
    for bad in (["full", "--threads", "0"], ["full", "--timeout", "-1"], ["full", "--by", "feel"]):
        with pytest.raises(SystemExit) as err:
            budgets.main(bad)
        assert err.value.code == 2
    with pytest.raises(ValueError, match=r"only=\['99'\]"):
        budgets.main(["full", "--only", "99", "--no-write"])
