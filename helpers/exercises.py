"""Self-checking exercises.

A notebook cell holds ``answer = ...`` for the learner to replace, followed by ``check(...)``:

- an untouched placeholder (``...``) prints "not attempted yet" and lets the notebook run on;
- a wrong answer raises ``AssertionError`` with a hint;
- a right answer prints a confirmation.

Solution notebooks fill every placeholder, which proves that each check can be satisfied.

Grading: ``python -m helpers.exercises grade SUBMISSIONS... --out results.csv`` runs each student's
notebook in its own kernel and reports per exercise: not attempted / correct / wrong (or error, timeout,
tampered), never the answers (see ``helpers.grading``). While a notebook is graded, ``check`` appends
each outcome to the file named by ``COURSE_GRADE_LOG``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def _close(answer: Any, expected: Any, tol: float) -> bool:
    """Equality that tolerates float rounding, also inside tensors, arrays, lists and dicts."""
    if isinstance(expected, torch.Tensor) or isinstance(answer, torch.Tensor):
        a = torch.as_tensor(answer).detach().cpu().double()
        e = torch.as_tensor(expected).detach().cpu().double()
        return a.shape == e.shape and bool(torch.allclose(a, e, rtol=tol, atol=tol, equal_nan=True))
    if isinstance(expected, np.ndarray) or isinstance(answer, np.ndarray):
        a, e = np.asarray(answer, dtype=float), np.asarray(expected, dtype=float)
        return a.shape == e.shape and bool(np.allclose(a, e, rtol=tol, atol=tol, equal_nan=True))
    if isinstance(expected, bool) or isinstance(answer, bool):
        return type(answer) is type(expected) and answer == expected
    if isinstance(expected, (int, float)) and isinstance(answer, (int, float)):
        return math.isclose(answer, expected, rel_tol=tol, abs_tol=tol)
    if isinstance(expected, dict) and isinstance(answer, dict):
        return answer.keys() == expected.keys() and all(_close(answer[k], expected[k], tol) for k in expected)
    if isinstance(expected, (list, tuple)) and isinstance(answer, (list, tuple)):
        return len(answer) == len(expected) and all(_close(a, e, tol) for a, e in zip(answer, expected))
    return answer == expected


def check(
    name: str,
    answer: Any,
    expected: Any = None,
    *,
    checker: Callable[[Any], bool] | None = None,
    hint: str,
    tol: float = 1e-6,
) -> bool:
    """Check an exercise answer against ``expected`` (or with ``checker(answer) -> bool``).

    Returns False for an untouched placeholder (``...``), True for a right answer, and raises
    ``AssertionError`` carrying ``hint`` for a wrong one.
    """
    if (expected is None) == (checker is None):
        raise ValueError(f"check({name!r}): give exactly one of expected= or checker=")
    if answer is Ellipsis:
        _record(name, "not attempted")
        print(f"{name}: not attempted yet - replace the ... with your answer and run the cell again.")
        return False
    try:
        ok = bool(checker(answer)) if checker is not None else _close(answer, expected, tol)
    except Exception:
        _record(name, "wrong")  # an answer the checker cannot even compare (wrong type or shape)
        raise
    _record(name, "correct" if ok else "wrong")
    if not ok:
        raise AssertionError(f"{name}: not quite. Your answer: {answer!r}. Hint: {hint}")
    print(f"{name}: correct!")
    return True


def _record(name: str, outcome: str) -> None:
    """For grading: append the outcome (never the answer) to the file named by COURSE_GRADE_LOG, if set."""
    path = os.environ.get("COURSE_GRADE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"name": name, "outcome": outcome}) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.exercises grade ...``: see helpers.grading."""
    from helpers.grading import main as grade_main  # nbclient and friends only when grading

    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "grade":
        print("usage: python -m helpers.exercises grade SUBMISSIONS... --out results.csv [--timeout S] [--jobs N]",
              file=sys.stderr)
        return 2
    return grade_main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
