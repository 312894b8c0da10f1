"""Grading made-up submissions: solutions, untouched, wrong answers, an error midway, an endless loop, a file
that is not JSON, an edited check. "Predict, then run" guesses count as predicted or not attempted. Each runs
for real in its own kernel (notebooks 00 and 02, fast mode)."""

import csv
import json
import re
from pathlib import Path

import pytest

from helpers import grading

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks"


def _load(path: Path) -> dict:
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:  # a copy that a learner has run may hold outputs; a submission starts clean
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return nb


def _set(nb: dict, index: int, source: str) -> dict:
    nb["cells"][index]["source"] = source
    return nb


def _save(nb: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


def _exercise_cells(name: str) -> dict[str, int]:
    return {e.label: e.answer_cell for e in grading.exercises(_load(NB / name))}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    subs = tmp_path_factory.mktemp("submissions")
    b = "02_backpropagation.ipynb"
    ex = _exercise_cells(b)
    _save(_load(NB / "solutions" / "00_start_here.ipynb"), subs / "alice" / "00_start_here.ipynb")
    _save(_load(NB / "solutions" / b), subs / "alice" / b)
    _save(_load(NB / b), subs / "bob" / b)  # untouched
    # four decimals: no time in the results (written with one) can look like this wrong answer
    wrong = _set(_load(NB / "solutions" / b), ex["ex1"], "answer = 5.4321")
    _save(_set(wrong, ex["ex3"], "answer = (0.0, 0.0)"), subs / "carol" / b)
    raises = _load(NB / "solutions" / b)
    _save(_set(raises, ex["ex2"], "answer = dh * (1 - h**2) * undefined_factor"), subs / "dave" / b)
    (subs / "frank").mkdir()
    (subs / "frank" / b).write_text('{"cells": [ {"cell_type": "code", ', encoding="utf-8")  # cut off: not JSON
    tampered = _load(NB / b)
    check_cell = next(e.check_cell for e in grading.exercises(tampered) if e.label == "ex1")
    src = "".join(tampered["cells"][check_cell]["source"]).replace("expected=b_.grad.item()", "expected=answer")
    _set(tampered, ex["ex1"], "answer = 123.4567")
    _save(_set(tampered, check_cell, src), subs / "grace" / b)
    loop = _set(_load(NB / "00_start_here.ipynb"), _exercise_cells("00_start_here.ipynb")["ex0"],
                "while True:\n    pass")
    loops = _save(loop, tmp_path_factory.mktemp("slow") / "erin_00_start_here.ipynb")

    out = subs.parent / "results.csv"
    results = grading.grade([subs], timeout=240, jobs=2)
    results += grading.grade([loops], timeout=15)  # an endless loop meets a short limit
    grading.write_csv(results, out)
    grading.write_html(results, out.with_suffix(".html"))
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    return results, rows, out


def _outcomes(rows, student, notebook="02_backpropagation.ipynb"):
    return {r["exercise"]: r["outcome"] for r in rows if r["student"] == student and r["notebook"] == notebook}


def _status(results, student, notebook="02_backpropagation.ipynb"):
    return next(r for r in results if r.student == student and r.notebook == notebook)


def test_solutions_are_correct(graded):
    results, rows, _ = graded
    assert _outcomes(rows, "alice") == {"p1": "predicted", "ex1": "correct", "ex2": "correct", "ex3": "correct"}
    assert _outcomes(rows, "alice", "00_start_here.ipynb") == {"ex0": "correct", "p1": "predicted"}
    assert _status(results, "alice").status == "ok"


def test_untouched_notebook_is_not_attempted(graded):
    results, rows, _ = graded
    assert _outcomes(rows, "bob") == {"p1": "not attempted", "ex1": "not attempted", "ex2": "not attempted",
                                      "ex3": "not attempted"}
    assert _status(results, "bob").status == "ok"


def test_wrong_answers_do_not_stop_the_run(graded):
    results, rows, _ = graded
    assert _outcomes(rows, "carol") == {"p1": "predicted", "ex1": "wrong", "ex2": "correct", "ex3": "wrong"}
    assert _status(results, "carol").errors == []  # a wrong answer is a verdict, not an error


def test_an_error_midway_marks_that_exercise_and_the_rest_still_run(graded):
    results, rows, _ = graded
    assert _outcomes(rows, "dave") == {"p1": "predicted", "ex1": "correct", "ex2": "error", "ex3": "correct"}
    r = _status(results, "dave")
    assert r.status == "error" and any(e.endswith("NameError") for e in r.errors)


def test_invalid_json_is_reported_not_run(graded):
    results, rows, _ = graded
    assert set(_outcomes(rows, "frank").values()) == {"invalid"}
    assert _status(results, "frank").status == "invalid"


def test_an_edited_check_is_flagged_and_not_counted_correct(graded):
    results, rows, _ = graded
    outcomes = _outcomes(rows, "grace")
    assert outcomes["ex1"] == "tampered"
    assert outcomes["ex2"] == outcomes["ex3"] == outcomes["p1"] == "not attempted"
    assert _status(results, "grace").edited_cells


def test_an_endless_loop_times_out(graded):
    results, rows, _ = graded
    assert _outcomes(rows, "erin", "00_start_here.ipynb") == {"ex0": "timeout", "p1": "timeout"}
    assert _status(results, "erin", "00_start_here.ipynb").status == "timeout"


def test_nothing_written_reveals_an_answer(graded):
    _, _, out = graded
    answers = []
    for name in ("00_start_here.ipynb", "02_backpropagation.ipynb"):
        sol = _load(NB / "solutions" / name)
        for cell in _exercise_cells(name).values():
            answers += [ln.strip() for ln in "".join(sol["cells"][cell]["source"]).splitlines() if ln.strip()]
    assert answers
    for path in (out, out.with_suffix(".html")):
        text = path.read_text(encoding="utf-8")
        assert "hint" not in text.lower() and "your answer" not in text.lower() and "expected" not in text.lower()
        for line in answers:
            assert line not in text, f"{path.name} shows a solution line: {line!r}"
        # the wrong and the tampered answers given above are not echoed either
        assert not re.search(r"5\.4321|123\.4567|undefined_factor", text)
    html = out.with_suffix(".html").read_text(encoding="utf-8")
    assert "<table>" in html and "alice" in html and "tampered" in html


def test_bad_arguments_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="timeout=0"):
        grading.grade([tmp_path], timeout=0)
    with pytest.raises(ValueError, match="neither a notebook nor a folder"):
        grading.grade([tmp_path / "missing"])
