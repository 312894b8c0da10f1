"""helpers.schedules: schedule shapes, the LR range test and the suggestion read off it."""

import math

import pytest
import torch

from helpers.data import TokenSplits
from helpers.lr_range import lr_range_test
from helpers.schedules import SCHEDULES, lr_at, lr_curve, smooth, suggest_lr

N, BASE = 100, 0.01


def test_constant():
    assert set(lr_curve("constant", N, BASE)) == {BASE}


def test_step_decay_drops_tenfold_at_half_and_three_quarters():
    c = lr_curve("step", N, BASE)
    assert c[49] == BASE and c[50] == pytest.approx(BASE / 10) and c[75] == pytest.approx(BASE / 100)


def test_linear_and_cosine_end_at_min_lr():
    for name in ("linear", "cosine"):
        c = lr_curve(name, N, BASE, min_lr_ratio=0.1)
        assert c[0] == pytest.approx(BASE) and c[-1] == pytest.approx(BASE * 0.1)
        assert all(a >= b for a, b in zip(c, c[1:])), f"{name} must never increase"
    assert lr_curve("cosine", 101, BASE)[50] == pytest.approx(BASE / 2)  # halfway down at the middle


def test_warmup_reaches_base_lr_at_warmup_steps_then_decays_to_min():
    c = lr_curve("warmup_cosine", N, BASE, warmup_steps=10, min_lr_ratio=0.1)
    assert c[0] == pytest.approx(BASE / 11) and c[10] == pytest.approx(BASE)
    assert all(a < b for a, b in zip(c[:10], c[1:11])), "warmup must rise"
    assert max(c) == pytest.approx(BASE) and c[-1] == pytest.approx(BASE * 0.1)


def test_warmup_is_the_usual_ramp_one_step_ahead():
    """The documented convention: (step + 1) / (warmup + 1), i.e. Hugging Face's step / warmup ramp
    with one more warmup step, read one step later; theirs is 0 at step 0, ours is not."""
    transformers = pytest.importorskip("transformers")
    base, warmup, total = 0.1, 10, 100
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    hf = transformers.get_cosine_schedule_with_warmup(opt, num_warmup_steps=warmup + 1, num_training_steps=total)
    theirs = []
    for _ in range(warmup + 1):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        hf.step()
    assert theirs[0] == 0.0 and lr_at(0, total, base, "warmup_cosine", warmup_steps=warmup) > 0
    for step in range(warmup):
        assert lr_at(step, total, base, "warmup_cosine", warmup_steps=warmup) == pytest.approx(theirs[step + 1], rel=1e-12)


def test_one_cycle_peaks_in_the_middle():
    c = lr_curve("one_cycle", 101, BASE, min_lr_ratio=0.01)
    assert max(range(101), key=c.__getitem__) == 50 and c[50] == pytest.approx(BASE)
    assert c[0] == pytest.approx(BASE / 25) and c[-1] == pytest.approx(BASE * 0.01)


def test_every_schedule_is_a_pure_function_of_the_step():
    for name, fn in SCHEDULES.items():
        assert fn(7, N, BASE, 5, 0.1) == fn(7, N, BASE, 5, 0.1) == lr_at(7, N, BASE, name, 5, 0.1)
        assert all(v > 0 for v in lr_curve(name, N, BASE, 5, 0.1)), name
        assert lr_curve(name, 1, BASE)[0] > 0  # a one-step run has a defined LR


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(schedule="cosinus"), r"schedule must be one of constant, step, linear, cosine, warmup_cosine, one_cycle, got 'cosinus'"),
        (dict(step=-1), "step must be an int >= 0, got -1"),
        (dict(total_steps=0), "total_steps must be an int >= 1, got 0"),
        (dict(base_lr=0.0), "base_lr must be a finite positive number, got 0.0"),
        (dict(base_lr=True), "base_lr must be a finite positive number, got True"),
        (dict(base_lr=math.inf), "base_lr must be a finite positive number, got inf"),
        (dict(min_lr_ratio=1.5), r"min_lr_ratio must be a number in \[0, 1\], got 1.5"),
        (dict(min_lr_ratio=math.nan), r"min_lr_ratio must be a number in \[0, 1\], got nan"),
        (dict(min_lr_ratio=False), r"min_lr_ratio must be a number in \[0, 1\], got False"),
        (dict(schedule="warmup_cosine", warmup_steps=100), "warmup_steps must be < total_steps=100, got 100"),
    ],
)
def test_bad_schedule_input(kwargs, match):
    args = dict(step=0, total_steps=100, base_lr=0.1, schedule="constant") | kwargs
    with pytest.raises(ValueError, match=match):
        lr_at(**args)


def _synthetic_curve():
    """A range-test curve: flat, then falling fastest at lr = 1e-3, flat again, exploding past 0.3."""
    lrs = [10 ** (-6 + 6 * i / 99) for i in range(100)]
    losses = []
    for lr in lrs:
        x = math.log10(lr)
        loss = 4.0 - 2.0 / (1 + math.exp(-3 * (x + 3)))  # a falling sigmoid centred at 1e-3
        loss += 50 * max(0.0, x + 0.5) ** 2  # explosion past ~0.3
        losses.append(loss)
    return lrs, losses


def test_suggest_lr_finds_the_steepest_descent():
    lrs, losses = _synthetic_curve()
    assert suggest_lr(lrs, losses) == pytest.approx(1e-3, rel=0.2)
    noisy = [v + 0.05 * ((i * 7919) % 13 - 6) / 6 for i, v in enumerate(losses)]  # deterministic noise
    assert 3e-4 < suggest_lr(lrs, noisy) < 3e-3


def test_suggest_lr_min_div_10():
    lrs, losses = _synthetic_curve()
    lowest = lrs[min(range(100), key=smooth(losses).__getitem__)]
    assert suggest_lr(lrs, losses, method="min_div_10") == pytest.approx(lowest / 10)
    assert 1e-2 < lowest < 0.5


def test_suggest_lr_rejects_bad_input():
    with pytest.raises(ValueError, match="method must be one of steepest, min_div_10"):
        suggest_lr([1, 2, 3], [1, 2, 3], method="max")
    with pytest.raises(ValueError, match="same length"):
        suggest_lr([1, 2, 3], [1, 2])


def test_lr_range_test_stops_on_explosion_and_restores_the_model(tiny_gpt):
    model = tiny_gpt()  # 50 tokens
    pattern = torch.arange(2000) % 50  # learnable: the next token is always id + 1
    data = TokenSplits(train=pattern, val=pattern[:500], test=pattern[:500])
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lrs, losses = lr_range_test(model, data, start_lr=1e-4, end_lr=100.0, steps=60, batch_size=8, device="cpu")
    assert len(lrs) == len(losses) and 5 < len(lrs) < 60, "the test should stop once the loss explodes"
    assert all(b > a for a, b in zip(lrs, lrs[1:]))
    assert lrs[0] == pytest.approx(1e-4)
    assert min(losses) < losses[0] - 0.5, "the loss must fall somewhere in the range"
    assert not math.isfinite(losses[-1]) or losses[-1] > 4 * min(losses[:-1])
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights must be restored"
    assert not model.training, "eval mode must be restored"
    assert 1e-4 < suggest_lr(lrs, losses) < lrs[-1]


def _closed_form(name: str, s: int, total: int, base: float, warmup: int, ratio: float) -> float:
    """Each schedule written out from its docstring, independently of helpers.schedules."""
    lo = base * ratio
    last = total - 1
    if name == "constant":
        return base
    if name == "step":
        return base * (1.0 if s < total // 2 else 0.1 if s < 3 * total // 4 else 0.01)
    if name == "linear":
        return base + (lo - base) * s / last
    if name == "cosine":
        return lo + (base - lo) * (1 + math.cos(math.pi * s / last)) / 2
    if name == "warmup_cosine":
        if s < warmup:
            return base * (s + 1) / (warmup + 1)
        return lo + (base - lo) * (1 + math.cos(math.pi * (s - warmup) / (last - warmup))) / 2
    if name == "one_cycle":
        mid = last / 2
        return base / 25 + (base - base / 25) * s / mid if s <= mid else base + (lo - base) * (s - mid) / (last - mid)
    raise AssertionError(name)


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("total,warmup,ratio", [(100, 10, 0.1), (37, 5, 0.0), (12, 1, 0.5), (2, 0, 0.2)])
def test_every_step_matches_the_closed_form(name, total, warmup, ratio):
    """Every step, not only the ends: a decay that starts one step late or runs one step short
    differs from the closed form inside the decay, where the ends and the maximum still agree."""
    got = lr_curve(name, total, 0.3, warmup_steps=warmup, min_lr_ratio=ratio)
    want = [_closed_form(name, s, total, 0.3, warmup, ratio) for s in range(total)]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_warmup_cosine_decay_worked_numbers():
    """Hand-computed points of warmup_cosine(total=11, warmup=2, base=1, min_lr_ratio=0): the decay
    spans steps 2..10, eight intervals, so step 4 is a quarter of the way and step 6 halfway."""
    c = lr_curve("warmup_cosine", 11, 1.0, warmup_steps=2)
    assert c[0] == pytest.approx(1 / 3) and c[1] == pytest.approx(2 / 3) and c[2] == 1.0
    assert c[4] == pytest.approx((1 + math.sqrt(0.5)) / 2) and c[6] == pytest.approx(0.5)
    assert c[8] == pytest.approx((1 - math.sqrt(0.5)) / 2) and c[10] == pytest.approx(0.0, abs=1e-15)


def test_one_step_run_and_a_warmup_that_fills_all_but_the_last_step():
    assert lr_curve("warmup_cosine", 1, 0.1) == [0.1]
    assert lr_curve("warmup_cosine", 4, 0.1, warmup_steps=3, min_lr_ratio=0.5) == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lr_curve("one_cycle", 1, 0.1) == [0.1] and lr_curve("linear", 1, 0.1) == [0.1]


def test_suggest_lr_needs_three_finite_losses():
    with pytest.raises(ValueError, match="^losses must contain at least 3 finite values$"):
        suggest_lr([1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.0, math.nan, math.inf])
    with pytest.raises(ValueError, match="window must be a positive int, got 0"):
        smooth([1.0, 2.0], 0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(total_steps=2.5), "total_steps must be an int >= 1, got 2.5"),
    (dict(step=1.5), "step must be an int >= 0, got 1.5"),
    (dict(step=True), "step must be an int >= 0, got True"),
    (dict(warmup_steps=-1), "warmup_steps must be an int >= 0, got -1"),
    (dict(warmup_steps=1.5), "warmup_steps must be an int >= 0, got 1.5"),
    (dict(warmup_steps=True), "warmup_steps must be an int >= 0, got True"),
])
def test_non_int_steps_are_refused(kwargs, match):
    args = dict(step=0, total_steps=100, base_lr=0.1, schedule="cosine") | kwargs
    with pytest.raises(ValueError, match=match):
        lr_at(**args)


def test_defaults_are_no_warmup_and_decay_to_zero():
    for name, fn in SCHEDULES.items():
        assert [fn(s, 10, 0.1) for s in range(10)] == lr_curve(name, 10, 0.1, 0, 0.0), name
    assert lr_at(3, 10, 0.1) == 0.1  # the default schedule is constant
    assert lr_at(9, 10, 0.1, "cosine") == 0.0 and lr_at(0, 10, 0.1, "warmup_cosine") == 0.1


def test_min_lr_ratio_one_keeps_the_base_lr_and_steps_past_the_end_stay_at_min():
    for name in ("linear", "cosine", "warmup_cosine"):
        assert lr_curve(name, 10, 0.1, 2, 1.0) == pytest.approx([0.1] * 10 if name != "warmup_cosine"
                                                                else [0.1 / 3, 0.2 / 3] + [0.1] * 8)
        assert lr_at(25, 10, 0.1, name, 2, 0.1) == pytest.approx(0.01)  # clamped at the end, not extrapolated
    assert lr_at(25, 11, 0.1, "one_cycle", 0, 0.1) == pytest.approx(0.01)


def test_smooth_worked_numbers():
    assert smooth([0.0, 0.0, 3.0, 0.0, 0.0], 3) == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert smooth([0.0, 0.0, 5.0, 0.0, 0.0], 5) == [5 / 3, 5 / 4, 1.0, 5 / 4, 5 / 3]
    assert smooth([1.0, 4.0, 2.0], 1) == [1.0, 4.0, 2.0] and smooth([1.0, 3.0], 2) == [2.0, 2.0]
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match=f"window must be a positive int, got {bad}"):
            smooth([1.0, 2.0], bad)


def test_suggest_lr_worked_numbers():
    """Unevenly spaced LRs (log10: -4, -3, -2, 1, 2) and window=1, so every slope can be computed by
    hand: central differences at indices 1 and 2, the ones before the minimum (index 3)."""
    lrs = [1e-4, 1e-3, 1e-2, 10.0, 100.0]
    # slopes: (3 - 5) / (-2 + 4) = -1 at 1e-3, (1 - 4) / (1 + 3) = -0.75 at 1e-2
    assert suggest_lr(lrs, [5.0, 4.0, 3.0, 1.0, 3.0], window=1) == 1e-3
    # slopes: (4 - 5) / 2 = -0.5 at 1e-3, (1 - 4.9) / 4 = -0.975 at 1e-2
    assert suggest_lr(lrs, [5.0, 4.9, 4.0, 1.0, 3.0], window=1) == 1e-2
    # the minimum at index 0: the slope at index 1 is the only one looked at
    assert suggest_lr([1e-3, 1e-2, 1e-1, 1.0], [1.0, 5.0, 6.0, 7.0], window=1) == 1e-2
    assert suggest_lr([1e-3, 1e-2, 1e-1], [3.0, 2.0, 1.0]) == 1e-2  # exactly 3 points are enough
    # the window matters: unsmoothed the minimum is the dip at 1e-1; over 5 points the smoothed
    # losses are [2, 2.25, 2.4, 2.25, 2] and the first minimum is at 1e-3
    dip = [3.0, 3.0, 0.0, 3.0, 3.0]
    assert suggest_lr([1e-3, 1e-2, 1e-1, 1.0, 10.0], dip, window=1, method="min_div_10") == 1e-2
    assert suggest_lr([1e-3, 1e-2, 1e-1, 1.0, 10.0], dip, method="min_div_10") == 1e-4
    assert suggest_lr([1e-3, 1e-2, 1e-1, 1.0], [4.0, 3.0, math.nan, 1.0], window=1) == 1e-2  # NaN dropped


@pytest.mark.parametrize("kwargs,match", [
    (dict(start_lr=0.0), r"^start_lr must be a positive number, got 0.0$"),
    (dict(start_lr="1e-3"), r"^start_lr must be a positive number, got '1e-3'$"),
    (dict(start_lr=1e-3, end_lr=1e-3), r"^end_lr must be a number > start_lr=0.001, got 0.001$"),
    (dict(end_lr=None), r"^end_lr must be a number > start_lr=1e-06, got None$"),
    (dict(steps=1), r"^steps must be an int >= 2, got 1$"),
    (dict(steps=10.0), r"^steps must be an int >= 2, got 10.0$"),
    (dict(stop_factor=1.0), r"^stop_factor must be a number > 1, got 1.0$"),
])
def test_lr_range_test_names_bad_arguments(tiny_gpt, kwargs, match):
    data = TokenSplits(*(torch.arange(200) % 50,) * 3)
    with pytest.raises(ValueError, match=match):
        lr_range_test(tiny_gpt(), data, **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(total_steps=0), r"^total_steps must be an int >= 1, got 0$"),
    (dict(step=-1), r"^step must be an int >= 0, got -1$"),
    (dict(base_lr=0.0), r"^base_lr must be a finite positive number, got 0.0$"),
    (dict(base_lr=math.inf), r"^base_lr must be a finite positive number, got inf$"),
    (dict(base_lr=True), r"^base_lr must be a finite positive number, got True$"),
    (dict(min_lr_ratio=1.5), r"^min_lr_ratio must be a number in \[0, 1\], got 1.5$"),
    (dict(min_lr_ratio=-0.1), r"^min_lr_ratio must be a number in \[0, 1\], got -0.1$"),
    (dict(min_lr_ratio=False), r"^min_lr_ratio must be a number in \[0, 1\], got False$"),
    (dict(schedule="exp"), r"^schedule must be one of constant, step, linear, cosine, warmup_cosine, one_cycle, "
                           r"got 'exp'$"),
    (dict(schedule="warmup_cosine", warmup_steps=100), r"^warmup_steps must be < total_steps=100, got 100$"),
])
def test_schedules_name_bad_arguments(kwargs, match):
    args = dict(step=0, total_steps=100, base_lr=0.1, schedule="cosine") | kwargs
    with pytest.raises(ValueError, match=match):
        lr_at(**args)


def test_suggest_lr_names_both_lengths():
    with pytest.raises(ValueError, match=r"^lrs and losses must have the same length >= 3, got 2 and 2$"):
        suggest_lr([1e-3, 1e-2], [2.0, 1.0])
    with pytest.raises(ValueError, match=r"^lrs and losses must have the same length >= 3, got 3 and 2$"):
        suggest_lr([1e-3, 1e-2, 1e-1], [2.0, 1.0])
