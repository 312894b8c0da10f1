"""helpers.exercises: the three paths (not attempted, wrong, right)."""

import numpy as np
import pytest
import torch

from helpers.exercises import check


def test_placeholder_passes_and_says_not_attempted(capsys):
    assert check("ex1", ..., expected=3, hint="h") is False
    assert "not attempted yet" in capsys.readouterr().out


def test_wrong_answer_raises_with_hint():
    with pytest.raises(AssertionError, match="count the biases"):
        check("ex1", 4, expected=3, hint="count the biases")


def test_right_answer_confirms(capsys):
    assert check("ex1", 3, expected=3, hint="h") is True
    assert "correct" in capsys.readouterr().out


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
def test_close_answers_accepted(answer, expected):
    assert check("x", answer, expected=expected, hint="h")


@pytest.mark.parametrize(
    "answer,expected",
    [(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.1])), (True, 1), ([1, 2], [1, 2, 3]), ({"a": 1}, {"b": 1})],
)
def test_different_answers_rejected(answer, expected):
    with pytest.raises(AssertionError):
        check("x", answer, expected=expected, hint="h")


def test_checker_function():
    assert check("x", 7, checker=lambda a: a % 7 == 0, hint="a multiple of 7")
    with pytest.raises(AssertionError, match="multiple of 7"):
        check("x", 8, checker=lambda a: a % 7 == 0, hint="a multiple of 7")


def test_needs_exactly_one_of_expected_or_checker():
    with pytest.raises(ValueError, match="exactly one"):
        check("x", 1, hint="h")
