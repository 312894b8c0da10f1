"""Grade students' notebooks: ``python -m helpers.exercises grade SUBMISSIONS... --out results.csv``.

Each submission is a notebook file, or a folder searched for notebooks (``submissions/alice/02_backpropagation.ipynb``
belongs to student ``alice``; ``alice_02_backpropagation.ipynb`` too). Every notebook runs in fast mode in a
kernel of its own, in a fresh temporary folder, with a time limit for the whole notebook; a wrong answer does
not stop the run, so every exercise is reached. The results, per student and exercise:

- ``correct``, ``wrong``, ``not attempted``: what ``helpers.exercises.check`` decided;
- ``predicted``: a "predict, then run" guess was written down (``helpers.exercises.predict``; a prediction
  is never right or wrong, only made or not: ``not attempted``);
- ``error``: the exercise's cells raised something other than the check's verdict, or never reached it;
- ``timeout``: the notebook ran out of time before the exercise;
- ``tampered``: a check the course ships was edited (the exercise's verdict is then not trusted);
- ``invalid``: the file is not a notebook (not JSON, or not nbformat 4).

A notebook whose code cells outside the exercises differ from the course's own is flagged as edited. Nothing
written reveals an answer: no answers, hints, expected values or error messages, only exception names.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import multiprocessing
import os
import re
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PLACEHOLDER = re.compile(r"^\s*\w+\s*=\s*\.\.\.", re.MULTILINE)  # the same rule as the structure test
PLACEHOLDER_LINE = re.compile(r"^\s*(\w+\s*=\s*)?\.\.\.")
CHECK_NAME = re.compile(r"""\b(?:check|predict)\(\s*(["'])(.+?)\1""")  # an exercise's check or a prediction's
OUTCOMES = ("correct", "wrong", "predicted", "not attempted", "error", "timeout", "tampered", "invalid")


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


@dataclass
class Exercise:
    """One exercise of a shipped notebook: the placeholder cell, the cell with its check, the check's name."""

    name: str
    answer_cell: int
    check_cell: int

    @property
    def label(self) -> str:
        """The short name used in results ('ex1' for 'ex1: dL/db of one squared error')."""
        return self.name.split(":")[0].strip()


def exercises(notebook: dict) -> list[Exercise]:
    """The exercises of a shipped notebook: each ``answer = ...`` cell (or ``guess = ...`` of a prediction) and
    the ``check(...)`` or ``predict(...)`` in it or in the next code cell that has one."""
    cells = notebook["cells"]
    found = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code" or not PLACEHOLDER.search(_source(cell)):
            continue
        j = i
        while j < len(cells) and not (cells[j]["cell_type"] == "code" and CHECK_NAME.search(_source(cells[j]))):
            j += 1
        if j == len(cells):
            raise ValueError(f"exercise cell {i} has no check(...) after it")
        found.append(Exercise(CHECK_NAME.search(_source(cells[j])).group(2), i, j))
    return found


def _fixed_lines(source: str) -> list[str]:
    """The lines of an exercise cell a student must leave alone: all but placeholders, comments and blanks."""
    keep = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not PLACEHOLDER_LINE.match(line):
            keep.append(line.rstrip())
    return keep


def _contains_in_order(lines: list[str], required: list[str]) -> bool:
    it = iter(line.rstrip() for line in lines)
    return all(any(have == need for have in it) for need in required)


def compare_with_shipped(student: dict, shipped: dict) -> tuple[dict[int, int], list[int], set[str]]:
    """Align a student's code cells with the shipped notebook's.

    Returns (shipped code cell index -> student cell index, shipped cells edited or missing, labels of
    exercises whose check was edited). Students may add cells of their own anywhere; the shipped code
    cells outside exercises must keep their source, and exercise cells must keep every line that is not
    the placeholder, a comment or blank (the check call above all).
    """
    ex = exercises(shipped)
    answer_cells = {e.answer_cell: e for e in ex}
    check_cells: dict[int, list[Exercise]] = {}
    for e in ex:
        check_cells.setdefault(e.check_cell, []).append(e)
    theirs = [(k, c) for k, c in enumerate(student["cells"]) if c.get("cell_type") == "code"]
    mapping: dict[int, int] = {}
    edited: list[int] = []
    tampered: set[str] = set()
    pos = 0
    for i, cell in enumerate(shipped["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = _source(cell)
        required = _fixed_lines(src) if i in answer_cells or i in check_cells else None
        match = None
        for k in range(pos, len(theirs)):
            have = _source(theirs[k][1])
            if (required is None and have.strip() == src.strip()) or (
                required is not None and _contains_in_order(have.splitlines(), required)
            ):
                match = k
                break
        if match is None:
            edited.append(i)
            for e in check_cells.get(i, []):
                tampered.add(e.label)
            continue
        mapping[i] = theirs[match][0]
        pos = match + 1
    return mapping, edited, tampered


@dataclass
class Result:
    """The grade of one submission."""

    student: str
    notebook: str
    path: str
    status: str = "ok"  # ok, error, timeout, invalid, unknown notebook
    outcomes: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # 'cell 12: NameError', never the message
    edited_cells: list[int] = field(default_factory=list)
    seconds: float = 0.0


def identify(path: Path, base: Path | None) -> tuple[str, str | None]:
    """(student, shipped notebook name or None) for a submitted file."""
    shipped = sorted((p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")), key=len, reverse=True)
    name = next((s for s in shipped if path.name.endswith(s)), None)
    prefix = path.name[: -len(name)].strip("_- .") if name else path.stem
    if prefix:
        return prefix, name
    if base is not None and path.parent != base:
        return path.parent.relative_to(base).as_posix(), name
    return path.parent.name, name


def collect(submissions: list[Path]) -> list[tuple[Path, Path | None]]:
    """Every notebook file among the arguments, with the folder it was found under."""
    found = []
    for sub in submissions:
        if sub.is_dir():
            found += [(p, sub) for p in sorted(sub.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts]
        elif sub.is_file():
            found.append((sub, None))
        else:
            raise ValueError(f"submission {str(sub)!r} is neither a notebook nor a folder")
    return found


def grade_notebook(path: Path, base: Path | None = None, timeout: float = 300.0) -> Result:
    """Run one submission in fast mode in its own kernel and grade its exercises."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    student, name = identify(path, base)
    result = Result(student, name or path.name, str(path))
    if name is None:
        result.status = "unknown notebook"
        return result
    shipped = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    ex = exercises(shipped)
    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception:  # not JSON, not a notebook, or not valid nbformat: nothing can be run
        result.status = "invalid"
        result.outcomes = {e.label: "invalid" for e in ex}
        return result
    mapping, result.edited_cells, tampered = compare_with_shipped(nb, shipped)

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grade-") as work:
        log = Path(work) / "checks.jsonl"
        env = dict(os.environ, COURSE_FAST="1", COURSE_GRADE_LOG=str(log), MPLBACKEND="Agg",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        env.pop("COURSE_DEVICE", None)
        deadline = start + timeout
        client = NotebookClient(
            nb, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": work}},
            timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),  # one limit for the whole notebook
        )
        reached_end = True
        try:
            client.execute(env=env)
        except CellTimeoutError:
            result.status, reached_end = "timeout", False
        except DeadKernelError:
            result.status, reached_end = "error", False
            result.errors.append("the kernel died")
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    result.seconds = time.monotonic() - start

    for k, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                result.errors.append(f"cell {k}: {out.get('ename', 'error')}")
    if result.errors and result.status == "ok":
        result.status = "error"
    checked = {}
    for rec in records:  # the last verdict for each name counts
        checked[rec["name"]] = rec["outcome"]

    def cell_raised(shipped_index: int, but_not: str | None = None) -> bool:
        k = mapping.get(shipped_index)
        if k is None:
            return False
        return any(o.get("output_type") == "error" and o.get("ename") != but_not
                   for o in nb.cells[k].get("outputs", []))

    for e in ex:
        if e.label in tampered:
            outcome = "tampered"
        elif not reached_end and e.name not in checked:
            outcome = "timeout"
        elif e.answer_cell != e.check_cell and cell_raised(e.answer_cell):
            outcome = "error"  # the answer cell failed; a check after it would see a stale `answer`
        elif e.name in checked:
            outcome = checked[e.name]
            if outcome != "wrong" and cell_raised(e.check_cell, but_not="AssertionError"):
                outcome = "error"
        else:
            outcome = "error"
        result.outcomes[e.label] = outcome
    # a wrong answer's AssertionError is the exercise's verdict, not an error of the notebook
    wrong_cells = {mapping.get(e.check_cell) for e in ex if result.outcomes[e.label] == "wrong"}
    result.errors = [err for err in result.errors
                     if not (int(err.split(":")[0].split()[1]) in wrong_cells and err.endswith("AssertionError"))]
    if result.status == "error" and not result.errors:
        result.status = "ok"
    if result.edited_cells and result.status == "ok":
        result.status = "edited"
    return result


def _grade_one(args: tuple[Path, Path | None, float]) -> Result:
    return grade_notebook(*args)


def grade(submissions: list[Path], timeout: float = 300.0, jobs: int = 1) -> list[Result]:
    """Grade every notebook among ``submissions`` (files or folders); ``jobs`` kernels run at a time."""
    if timeout <= 0:
        raise ValueError(f"timeout={timeout}: must be a positive number of seconds")
    if jobs < 1:
        raise ValueError(f"jobs={jobs}: must be at least 1")
    todo = [(path, base, timeout) for path, base in collect(submissions)]
    if jobs == 1:
        return [_grade_one(t) for t in todo]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_grade_one, todo))


def write_csv(results: list[Result], out: Path) -> None:
    """One row per student, notebook and exercise; notebook-level problems on rows with exercise '-'."""
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "notebook", "exercise", "outcome", "notebook_status", "errors", "edited_cells",
                    "seconds"])
        for r in sorted(results, key=lambda r: (r.student, r.notebook)):
            rows = sorted(r.outcomes.items()) or [("-", r.status)]
            for label, outcome in rows:
                w.writerow([r.student, r.notebook, label, outcome, r.status, "; ".join(r.errors),
                            " ".join(map(str, r.edited_cells)), f"{r.seconds:.1f}"])


COLOURS = {"correct": "#c8f0c8", "wrong": "#f8d0d0", "predicted": "#d8ecf8", "not attempted": "#eeeeee", "error": "#f8e0a0",
           "timeout": "#f8e0a0", "tampered": "#d8c8f8", "invalid": "#f8e0a0"}


def write_html(results: list[Result], out: Path) -> None:
    """A summary for the teacher: per notebook, one row per student, one column per exercise."""
    esc = html.escape
    parts = ["<!doctype html><meta charset='utf-8'><title>Exercise results</title>",
             "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:2em}"
             "td,th{border:1px solid #999;padding:4px 8px}</style>",
             "<h1>Exercise results</h1>"]
    counts = {o: sum(list(r.outcomes.values()).count(o) for r in results) for o in OUTCOMES}
    parts.append("<p>" + ", ".join(f"{esc(o)}: {n}" for o, n in counts.items() if n) + "</p>")
    for name in sorted({r.notebook for r in results}):
        group = sorted((r for r in results if r.notebook == name), key=lambda r: r.student)
        labels = sorted({label for r in group for label in r.outcomes})
        parts.append(f"<h2>{esc(name)}</h2><table><tr><th>student</th>"
                     + "".join(f"<th>{esc(lb)}</th>" for lb in labels) + "<th>solved</th><th>notebook</th></tr>")
        for r in group:
            cells = "".join(f"<td style='background:{COLOURS.get(r.outcomes.get(lb, ''), '#fff')}'>"
                            f"{esc(r.outcomes.get(lb, '-'))}</td>" for lb in labels)
            solved = sum(v == "correct" for v in r.outcomes.values())
            note = r.status + (f" ({'; '.join(r.errors)})" if r.errors else "")
            if r.edited_cells:
                note += f"; edited cells {', '.join(map(str, r.edited_cells))}"
            parts.append(f"<tr><td>{esc(r.student)}</td>{cells}<td>{solved}/{len(labels)}</td>"
                         f"<td>{esc(note)}</td></tr>")
        parts.append("</table>")
    out.write_text("\n".join(parts) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.exercises grade", description=__doc__.split("\n")[0])
    parser.add_argument("submissions", nargs="+", type=Path, help="notebooks, or folders of them")
    parser.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    parser.add_argument("--html", type=Path, help="the HTML summary (default: next to --out, .html)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per notebook (default 300)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at a time (default 1)")
    args = parser.parse_args(argv)
    results = grade(args.submissions, timeout=args.timeout, jobs=args.jobs)
    write_csv(results, args.out)
    html_out = args.html or args.out.with_suffix(".html")
    write_html(results, html_out)
    print(f"graded {len(results)} notebook(s): {args.out}, {html_out}")
    return 0
