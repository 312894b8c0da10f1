"""helpers.exercises: the three paths of check (not attempted, wrong, right) and predict's comparisons."""

import numpy as np
import pytest
import torch

from helpers.exercises import check, predict


def test_placeholder_passes_and_says_not_attempted(capsys):
    assert check("ex1", ..., expected=3, hint="h") is None  # nothing for the cell to display as Out[n]
    assert capsys.readouterr().out.strip() == "ex1: not attempted yet - replace the ... with your answer and run the cell again."


def test_wrong_answer_raises_with_hint():
    with pytest.raises(AssertionError, match="count the biases"):
        check("ex1", 4, expected=3, hint="count the biases")


def test_right_answer_confirms(capsys):
    assert check("ex1", 3, expected=3, hint="h") is None
    assert capsys.readouterr().out.strip() == "ex1: correct!"


@pytest.mark.parametrize(
    "answer,expected",
    [
        (0.1 + 0.2, 0.3),
        (torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-9])),
        (np.array([1.0, 2.0]), [1.0, 2.0]),
        ({"a": 1.0, "b": [2, 3]}, {"a": 1.0, "b": [2, 3]}),
        ("adamw", "adamw"),
    ],
)
def test_close_answers_accepted(answer, expected, capsys):
    check("x", answer, expected=expected, hint="h")
    assert "correct!" in capsys.readouterr().out


@pytest.mark.parametrize(
    "answer,expected",
    [(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.1])), (True, 1), ([1, 2], [1, 2, 3]), ({"a": 1}, {"b": 1})],
)
def test_different_answers_rejected(answer, expected):
    with pytest.raises(AssertionError):
        check("x", answer, expected=expected, hint="h")


def test_checker_function(capsys):
    check("x", 7, checker=lambda a: a % 7 == 0, hint="a multiple of 7")
    assert "correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="multiple of 7"):
        check("x", 8, checker=lambda a: a % 7 == 0, hint="a multiple of 7")


def test_needs_exactly_one_of_expected_or_checker():
    with pytest.raises(ValueError, match="exactly one"):
        check("x", 1, hint="h")


def test_a_typed_true_does_not_pass_a_numeric_check():
    with pytest.raises(AssertionError):
        check("x", True, expected=1.0, hint="h")


def test_check_records_outcomes_for_grading(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("COURSE_GRADE_LOG", str(log))
    check("a", ..., expected=1, hint="h")
    check("b", 1, expected=1, hint="h")
    with pytest.raises(AssertionError):
        check("c", 2, expected=1, hint="h")
    predict("p", ..., 3.0)
    predict("q", 2.0, 3.0)
    outcomes = [line for line in log.read_text().splitlines()]
    assert outcomes == ['{"name": "a", "outcome": "not attempted"}', '{"name": "b", "outcome": "correct"}',
                        '{"name": "c", "outcome": "wrong"}', '{"name": "p", "outcome": "not attempted"}',
                        '{"name": "q", "outcome": "predicted"}']


def test_untouched_prediction_prints_a_gentle_note_and_the_measurement(capsys):
    assert predict("p1", ..., 42, unit="tokens") is None
    out = capsys.readouterr().out
    assert "no prediction this time" in out and "42 tokens" in out


@pytest.mark.parametrize(
    "prediction,measured,expected_text",
    [
        (100, 105, "within 10 %"),
        (105.0, 100, "within 10 %"),
        (50, 100, "too low by a factor of 2 (-50%)"),
        (300, 100, "too high by a factor of 3 (+200%)"),
        (-1.0, 2.0, "a different sign"),
        (0, 2.0, "a different sign or a zero"),
        ("lots", 2.0, "is not a number"),
        (True, 1.0, "is not a number"),
    ],
)
def test_numeric_prediction_says_how_close(prediction, measured, expected_text, capsys):
    predict("p", prediction, measured)  # never raises, whatever the guess
    assert expected_text in capsys.readouterr().out


def test_choice_prediction(capsys):
    predict("p", "adamw", "adamw", options=["sgd", "adam", "adamw"])
    assert "agrees" in capsys.readouterr().out
    predict("p", "sgd", "adamw", options=["sgd", "adam", "adamw"])
    out = capsys.readouterr().out
    assert "'sgd'" in out and "'adamw'" in out and "agrees" not in out
    predict("p", "lion", "adamw", options=["sgd", "adam", "adamw"])
    assert "not one of the options" in capsys.readouterr().out


@pytest.mark.parametrize(
    "prediction,right",
    [(["a", "b", "c", "d"], 6), (["d", "c", "b", "a"], 0), (["b", "a", "c", "d"], 5), (["a", "c", "b", "d"], 5)],
)
def test_ordering_prediction_counts_pairs_in_order(prediction, right, capsys):
    predict("p", prediction, ["a", "b", "c", "d"])
    out = capsys.readouterr().out
    if right == 6:
        assert "agrees" in out
    else:
        assert f"{right} of 6 pairs" in out


def test_ordering_prediction_with_missing_items_only_prints_a_note(capsys):
    predict("p", ["a", "b"], ["a", "b", "c"])
    assert "exactly once" in capsys.readouterr().out


@pytest.mark.parametrize(
    "measured,kwargs,match",
    [("x", {}, "measured='x'"), (float("nan"), {}, "finite"), ("z", {"options": ["a", "b"]}, "not one of options"),
     (["a", "a"], {}, "each item once")],
)
def test_a_bad_measurement_is_a_value_error(measured, kwargs, match):
    with pytest.raises(ValueError, match=match):
        predict("p", 1, measured, **kwargs)
