"""Notebooks follow the course's rules: a solution for each, same cells but the answers, describe() first."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PLACEHOLDER = re.compile(r"^\s*\w+\s*=\s*\.\.\.", re.MULTILINE)
MAIN = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def test_there_are_notebooks():
    assert MAIN, "no numbered notebooks found"


@pytest.mark.parametrize("path", MAIN, ids=lambda p: p.name)
def test_solution_mirrors_notebook(path):
    solution = NOTEBOOKS / "solutions" / path.name
    assert solution.exists(), f"{path.name} has no solution notebook in notebooks/solutions/"
    ours, theirs = _cells(path), _cells(solution)
    assert len(ours) == len(theirs), f"{path.name}: {len(ours)} cells, solution has {len(theirs)}"
    exercises = 0
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a["cell_type"] == b["cell_type"], f"{path.name} cell {i}: cell types differ"
        if a["cell_type"] == "code" and PLACEHOLDER.search(_source(a)):
            exercises += 1
            assert not PLACEHOLDER.search(_source(b)), f"{path.name} cell {i}: the solution leaves a placeholder"
        else:
            assert _source(a) == _source(b), f"{path.name} cell {i} differs from the solution outside exercises"
    minimum = 1 if path.name.startswith("00_") else 2
    assert exercises >= minimum, f"{path.name} has {exercises} exercise(s), needs at least {minimum}"


@pytest.mark.parametrize("path", MAIN, ids=lambda p: p.name)
def test_starts_with_describe_and_ends_with_glossary(path):
    cells = _cells(path)
    first_code = next(_source(c) for c in cells if c["cell_type"] == "code")
    assert "describe(" in first_code, f"{path.name}: the first code cell must call describe()"
    assert "budget=Budget(" in first_code, f"{path.name}: the first code cell must declare the budget"
    assert "budget" in _source(cells[0]), f"{path.name}: the first cell points to the budget (no typed run times)"
    last_md = [_source(c) for c in cells if c["cell_type"] == "markdown"][-1]
    assert "Glossary" in last_md and "Deutsch" in last_md, f"{path.name}: end with an English/German glossary"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.rglob("*.ipynb")), ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_no_absolute_paths_or_path_hacks(path):
    text = "\n".join(_source(c) for c in _cells(path))
    assert "sys.path" not in text, f"{path.name}: import helpers as a package, no sys.path edits"
    assert not re.search(r"['\"](/home/|/work/|/Users/|[A-Z]:\\\\)", text), f"{path.name}: absolute path"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.rglob("*.ipynb")), ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_no_unfilled_placeholders(path):
    """Measured figures are written into the prose after a run; a placeholder left behind is a bug."""
    text = "\n".join(_source(c) for c in _cells(path) if c["cell_type"] == "markdown")
    left = re.findall(r"\b[A-Z][A-Z0-9]*_(?:PLACEHOLDER|RESULT|MIN|CPU|TBD)\b|\bPLACEHOLDER\b|\bTBD\b", text)
    assert not left, f"{path.name}: unfilled placeholder(s) {sorted(set(left))}"
