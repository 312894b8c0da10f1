"""helpers.answers: each expected value against the definition worked out by hand, and against the course's code."""

import math
from types import SimpleNamespace

import pytest
import torch

from helpers import answers
from helpers.lora import apply_lora, trainable_parameters
from helpers.sampling import SamplingParams
from helpers.schedules import lr_at
from helpers.train import History, TrainConfig


@pytest.mark.parametrize("n_in,n_out,count", [(3, 2, 8), (128, 512, 66_048), (1, 1, 2)])
def test_linear_parameter_count(n_in, n_out, count):
    assert answers.linear_parameter_count(n_in, n_out) == count  # n_in * n_out weights + n_out biases


def test_tokens_per_step_counts_windows_accumulation_and_length():
    tokens = torch.arange(1000) % 50
    cfg = TrainConfig(steps=10, batch_size=4, grad_accum=8, block_size=64, warmup_steps=0)
    assert answers.tokens_per_step(cfg, tokens) == 4 * 8 * 64
    with pytest.raises(ValueError, match="block_size"):
        answers.tokens_per_step(TrainConfig(steps=10, warmup_steps=0), tokens)


def test_scaled_lr_rules():
    assert answers.scaled_lr(3e-3, 16, 64, "sqrt") == pytest.approx(6e-3)
    assert answers.scaled_lr(3e-3, 16, 64, "linear") == pytest.approx(1.2e-2)
    with pytest.raises(ValueError, match="rule"):
        answers.scaled_lr(3e-3, 16, 64, "cube")


def test_first_step_reaching_half_of_the_warmup():
    # the course's ramp: lr = base (s + 1) / (warmup + 1); (s + 1) / 11 >= 1/2 first at s = 5 (6/11)
    assert answers.first_step_reaching(0.5, 100, 0.01, "warmup_cosine", 10) == 5
    assert lr_at(4, 100, 0.01, "warmup_cosine", warmup_steps=10) < 0.005 <= lr_at(5, 100, 0.01, "warmup_cosine",
                                                                                 warmup_steps=10)
    with pytest.raises(ValueError, match="never reaches"):
        answers.first_step_reaching(2.0, 100, 0.01, "warmup_cosine", 10)


def test_runs_within_and_gap_to_best():
    assert answers.runs_within([3.0, 2.0, 2.05, math.inf, 2.2], margin=0.1) == 2
    assert answers.gap_to_best({"sgd": 5.0, "adam": 3.5, "adamw": 3.25}, "sgd") == pytest.approx(1.75)


def test_history_answers():
    full = History(step=list(range(1, 101)), train_loss=[2.0] * 100, val_loss=[3.0, 2.5, 3.5])
    stopped = History(step=list(range(1, 41)))
    assert answers.generalisation_gap(full) == pytest.approx(1.5)
    assert answers.steps_saved(full, stopped) == 60


@pytest.mark.parametrize(
    "losses,patience,stop",
    [([5.0, 4.6, 4.5, 4.55, 4.52, 4.6, 4.4], 3, 6),  # best 4.5 at 3, then three without a new best
     ([5.0, 4.0, 3.0], 1, 3),  # always improving: every evaluation runs
     ([5.0, 5.0, 4.0], 1, 2),  # an equal loss is no improvement
     ([5.0, 5.1, 4.0, 4.1, 4.2], 2, 5)],
)
def test_evaluations_until_stop(losses, patience, stop):
    assert answers.evaluations_until_stop(losses, patience) == stop


def test_lora_trainable_matches_apply_lora():
    model = torch.nn.Sequential(torch.nn.Linear(128, 512))
    assert answers.lora_trainable(model[0], rank=8) == 8 * (128 + 512)
    apply_lora(model, targets="0", rank=8, alpha=16)
    assert trainable_parameters(model).trainable == 8 * (128 + 512)


def test_bits_per_weight_of_int4_groups():
    w = torch.randn(64, 128)
    # 4 bits per code, plus a float32 scale and a uint8 zero point shared by 32 weights
    assert answers.bits_per_weight(w, bits=4, group_size=32) == pytest.approx(4 + (32 + 8) / 32)


def test_pareto_numbers_sorted():
    study = SimpleNamespace(best_trials=[SimpleNamespace(number=7), SimpleNamespace(number=2)])
    assert answers.pareto_numbers(study) == [2, 7]


def test_sampling_probabilities_at_a_temperature():
    # softmax of the logits divided by T, written out: exp(z_i / T) / sum_j exp(z_j / T)
    z, t = [2.0, 1.0, 0.0], 0.5
    by_hand = [math.exp(v / t) / sum(math.exp(u / t) for u in z) for v in z]
    assert answers.sampling_probabilities(z, SamplingParams(temperature=t)) == pytest.approx(by_hand)


def test_token_count():
    tok = SimpleNamespace(encode=lambda text: text.split())
    assert answers.token_count(tok, "a b c") == 3


def test_is_exponential_decay_accepts_only_a_constant_factor():
    good = lambda s, n, lr, r: lr * r ** (s / (n - 1))  # noqa: E731
    linear = lambda s, n, lr, r: lr * (1 - (1 - r) * s / (n - 1))  # right ends, wrong shape  # noqa: E731
    off_by_one = lambda s, n, lr, r: lr * r ** (s / n)  # never reaches the end value  # noqa: E731
    assert answers.is_exponential_decay(good)
    assert not answers.is_exponential_decay(linear)
    assert not answers.is_exponential_decay(off_by_one)
