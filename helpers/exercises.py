"""Self-checking exercises.

A notebook cell holds ``answer = ...`` for the learner to replace, followed by ``check(...)``:

- an untouched placeholder (``...``) prints "not attempted yet" and lets the notebook run on;
- a wrong answer raises ``AssertionError`` with a hint;
- a right answer prints a confirmation.

``check`` returns nothing, so the last line of a cell shows only its message (no stray ``Out[n]: False``).
A check never shows the expected value: it is derived at check time from objects of the notebook or by a
function of ``helpers.answers``, never typed into the check call.

"Predict, then run": the learner writes a guess into ``guess = ...`` before a cell that measures, and
``predict(name, guess, measured)`` after it says how close the guess was. A prediction is never wrong in
the sense of a failed check: nothing raises for a poor guess, and an untouched ``...`` prints a gentle note.

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
) -> None:
    """Check an exercise answer against ``expected`` (or with ``checker(answer) -> bool``).

    Prints "not attempted yet" for an untouched placeholder (``...``) and "correct!" for a right answer,
    and raises ``AssertionError`` carrying ``hint`` for a wrong one. Returns None, so that a check on the
    last line of a cell displays nothing but its message.
    """
    if (expected is None) == (checker is None):
        raise ValueError(f"check({name!r}): give exactly one of expected= or checker=")
    if answer is Ellipsis:
        _record(name, "not attempted")
        print(f"{name}: not attempted yet - replace the ... with your answer and run the cell again.")
        return None
    try:
        ok = bool(checker(answer)) if checker is not None else _close(answer, expected, tol)
    except Exception:
        _record(name, "wrong")  # an answer the checker cannot even compare (wrong type or shape)
        raise
    _record(name, "correct" if ok else "wrong")
    if not ok:
        raise AssertionError(f"{name}: not quite. Your answer: {answer!r}. Hint: {hint}")
    print(f"{name}: correct!")
    return None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _fmt(x: Any, unit: str) -> str:
    if _is_number(x):
        text = f"{x:,}" if isinstance(x, (int, np.integer)) else f"{float(x):.4g}"
        return f"{text} {unit}".rstrip()
    return repr(x)


def _concordant_pairs(predicted: list, measured: list) -> int:
    """How many pairs of items the predicted ordering puts in the same order as the measured one."""
    rank = {item: i for i, item in enumerate(predicted)}
    n = len(measured)
    return sum(rank[measured[i]] < rank[measured[j]] for i in range(n) for j in range(i + 1, n))


def predict(
    name: str,
    prediction: Any,
    measured: Any,
    *,
    options: list | tuple | None = None,
    unit: str = "",
) -> None:
    """Compare a prediction written down before a measurement with what was measured; never fails.

    Three kinds, told apart by the arguments:

    - a number (``measured`` is a number): prints the ratio and the relative difference;
    - a choice (``options`` given, ``measured`` one of them): says whether the choice matched;
    - an ordering (``measured`` a list or tuple of labels): counts the pairs put in the right order.

    Prints the comparison and returns None (nothing stray is displayed under the cell). An untouched
    ``...`` prints a gentle note; a wrong or malformed prediction only prints a note; a measurement of the
    wrong kind (the notebook's own mistake) raises ``ValueError``.
    """
    if options is not None:
        kind = "choice"
        if measured not in options:
            raise ValueError(f"predict({name!r}): measured={measured!r} is not one of options={list(options)!r}")
    elif isinstance(measured, (list, tuple)):
        kind = "order"
        if len(set(measured)) != len(measured):
            raise ValueError(f"predict({name!r}): measured={measured!r} must list each item once")
    elif _is_number(measured):
        kind = "number"
        if not math.isfinite(float(measured)):
            raise ValueError(f"predict({name!r}): measured={measured!r} must be a finite number")
    else:
        raise ValueError(f"predict({name!r}): measured={measured!r}: give a number, a list (an ordering) "
                         "or options= (a choice)")

    if prediction is Ellipsis:
        _record(name, "not attempted")
        print(f"{name}: no prediction this time - that is fine. Next time, write your guess in place of the ... "
              f"before running the measurement: a guess that turns out wrong teaches the most. "
              f"Measured: {_fmt(measured, unit)}.")
        return None
    _record(name, "predicted")

    if kind == "number":
        if not _is_number(prediction):
            print(f"{name}: your prediction {prediction!r} is not a number; measured: {_fmt(measured, unit)}.")
            return None
        p, m = float(prediction), float(measured)
        head = f"{name}: you predicted {_fmt(prediction, unit)}, measured {_fmt(measured, unit)}"
        if p == m or (m != 0 and abs(p - m) <= 0.1 * abs(m)):
            print(f"{head}: within 10 % - well predicted.")
        elif p * m > 0:
            factor = max(p / m, m / p)
            side = "too high" if abs(p) > abs(m) else "too low"
            print(f"{head}: {side} by a factor of {factor:.2g} ({(p - m) / abs(m):+.0%}). "
                  "What did the measurement show that your estimate left out?")
        else:
            print(f"{head}: a different sign or a zero where the other is not. Which part of your reasoning "
                  "does the measurement contradict?")
        return None

    if kind == "choice":
        if prediction not in options:
            print(f"{name}: your prediction {prediction!r} is not one of the options {list(options)!r}; "
                  f"measured: {measured!r}.")
            return None
        if prediction == measured:
            print(f"{name}: you predicted {prediction!r} and the measurement agrees.")
            return None
        print(f"{name}: you predicted {prediction!r}, the measurement gave {measured!r}. "
              "Read on: the text after the measurement explains what decides it.")
        return None

    items = list(measured)
    if not isinstance(prediction, (list, tuple)) or sorted(map(repr, prediction)) != sorted(map(repr, items)):
        print(f"{name}: your prediction {prediction!r} should list each of {items!r} exactly once; "
              f"measured order: {items!r}.")
        return None
    pairs = len(items) * (len(items) - 1) // 2
    right = _concordant_pairs(list(prediction), items)
    if right == pairs:
        print(f"{name}: you predicted the order {list(prediction)!r} and the measurement agrees.")
        return None
    print(f"{name}: you predicted {list(prediction)!r}, measured {items!r}: {right} of {pairs} pairs "
          "in the right order.")
    return None


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
