"""Learning-rate schedules, and a learning rate read off an LR range test (``helpers.lr_range``).

Every schedule is a pure function ``f(step, total_steps, base_lr, warmup_steps=0, min_lr_ratio=0.0)``
of the 0-based step: no optimiser, no state, so each can be plotted and unit-tested on its own.
``min_lr_ratio`` sets where decaying schedules end: ``min_lr = base_lr * min_lr_ratio``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def _check(step: int, total_steps: int, base_lr: float, warmup_steps: int, min_lr_ratio: float) -> None:
    if not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps < 1:
        raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    if not isinstance(base_lr, (int, float)) or isinstance(base_lr, bool) or not 0 < base_lr < math.inf:
        raise ValueError(f"base_lr must be a finite positive number, got {base_lr!r}")
    if not isinstance(warmup_steps, int) or isinstance(warmup_steps, bool) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")
    if not isinstance(min_lr_ratio, (int, float)) or isinstance(min_lr_ratio, bool) or not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be a number in [0, 1], got {min_lr_ratio!r}")


def _progress(step: int, start: int, total_steps: int) -> float:
    """Where ``step`` lies between ``start`` (0.0) and the last step ``total_steps - 1`` (1.0); a run
    with no steps after ``start`` stays at 0.0, so a one-step run uses ``base_lr``."""
    span = total_steps - 1 - start
    return 0.0 if span <= 0 else min(1.0, max(0.0, (step - start) / span))


def constant(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> float:
    """The same learning rate at every step."""
    _check(step, total_steps, base_lr, warmup_steps, min_lr_ratio)
    return float(base_lr)


def step_decay(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> float:
    """Piecewise constant: ``base_lr``, divided by 10 after half of the steps and again after 3/4."""
    _check(step, total_steps, base_lr, warmup_steps, min_lr_ratio)
    drops = (step >= total_steps // 2) + (step >= (3 * total_steps) // 4)
    return float(base_lr * 0.1**drops)


def linear(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> float:
    """A straight line from ``base_lr`` at step 0 to ``min_lr`` at the last step."""
    _check(step, total_steps, base_lr, warmup_steps, min_lr_ratio)
    p = _progress(step, 0, total_steps)
    return float(base_lr * (1.0 - p * (1.0 - min_lr_ratio)))


def _cosine_from(step: int, start: int, total_steps: int, base_lr: float, min_lr_ratio: float) -> float:
    p = _progress(step, start, total_steps)
    min_lr = base_lr * min_lr_ratio
    return float(min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * p)))


def cosine(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> float:
    """Half a cosine wave from ``base_lr`` at step 0 to ``min_lr`` at the last step: slow changes at
    both ends, the fastest decay in the middle."""
    _check(step, total_steps, base_lr, warmup_steps, min_lr_ratio)
    return _cosine_from(step, 0, total_steps, base_lr, min_lr_ratio)


def warmup_cosine(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0,
                  min_lr_ratio: float = 0.0) -> float:
    """Linear warmup to ``base_lr`` (reached at step ``warmup_steps``), then cosine decay to ``min_lr``.

    During warmup the LR is ``base_lr * (step + 1) / (warmup_steps + 1)``, so even step 0 learns a
    little. Warmup lets Adam's running averages of the gradient settle before the steps get large.

    A convention to know when comparing: many libraries (Hugging Face's
    ``get_cosine_schedule_with_warmup``, for one) ramp as ``step / warmup_steps``, which is 0 at
    step 0. Ours is that ramp with ``warmup_steps + 1``, one step ahead (tested against it).
    """
    _check(step, total_steps, base_lr, warmup_steps, min_lr_ratio)
    if warmup_steps >= total_steps:
        raise ValueError(f"warmup_steps must be < total_steps={total_steps}, got {warmup_steps}")
    if step < warmup_steps:
        return float(base_lr * (step + 1) / (warmup_steps + 1))
    return _cosine_from(step, warmup_steps, total_steps, base_lr, min_lr_ratio)


def one_cycle(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> float:
    """One cycle: a straight line up from ``base_lr / 25`` to the peak ``base_lr`` in the middle of
    training, then a straight line down to ``min_lr`` at the last step (``warmup_steps`` is unused)."""
    _check(step, total_steps, base_lr, warmup_steps, min_lr_ratio)
    peak = (total_steps - 1) / 2
    start_lr = base_lr / 25
    if step <= peak:
        p = 1.0 if peak == 0 else step / peak
        return float(start_lr + (base_lr - start_lr) * p)
    p = min(1.0, (step - peak) / (total_steps - 1 - peak))
    return float(base_lr - (base_lr - base_lr * min_lr_ratio) * p)


Schedule = Callable[..., float]

#: Schedule names accepted by ``TrainConfig.schedule`` and ``lr_at``.
SCHEDULES: dict[str, Schedule] = {
    "constant": constant,
    "step": step_decay,
    "linear": linear,
    "cosine": cosine,
    "warmup_cosine": warmup_cosine,
    "one_cycle": one_cycle,
}


def get_schedule(name: str) -> Schedule:
    """The schedule function called ``name``; a ``ValueError`` lists the valid names."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {name!r}")
    return SCHEDULES[name]


def lr_at(step: int, total_steps: int, base_lr: float, schedule: str = "constant", warmup_steps: int = 0,
          min_lr_ratio: float = 0.0) -> float:
    """The learning rate of ``schedule`` at the 0-based ``step`` of a run of ``total_steps``."""
    return get_schedule(schedule)(step, total_steps, base_lr, warmup_steps, min_lr_ratio)


def lr_curve(schedule: str, total_steps: int, base_lr: float, warmup_steps: int = 0,
             min_lr_ratio: float = 0.0) -> list[float]:
    """The learning rate at every step of a run, for plotting."""
    fn = get_schedule(schedule)
    return [fn(s, total_steps, base_lr, warmup_steps, min_lr_ratio) for s in range(total_steps)]


def smooth(values: Sequence[float], window: int = 5) -> list[float]:
    """Centred moving average over ``window`` points (fewer at the ends). Centred, unlike an
    exponential average, so the smoothed curve is not shifted towards later steps."""
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    half = window // 2
    n = len(values)
    out = []
    for i in range(n):
        chunk = values[max(0, i - half): min(n, i + half + 1)]
        out.append(sum(chunk) / len(chunk))
    return out


def suggest_lr(lrs: Sequence[float], losses: Sequence[float], method: str = "steepest",
               window: int = 5) -> float:
    """A learning rate read off an LR range test.

    - ``"steepest"``: smooth the losses (``smooth``), then take the LR where the smoothed loss falls
      fastest per factor of LR (most negative slope against log LR), looking only up to the minimum
      of the smoothed curve. There the model learns fastest while the LR is still safe.
    - ``"min_div_10"``: one tenth of the LR at the minimum of the smoothed loss (a common rule of thumb:
      the minimum is already at the edge of instability).
    """
    if method not in ("steepest", "min_div_10"):
        raise ValueError(f"method must be one of steepest, min_div_10, got {method!r}")
    if len(lrs) != len(losses) or len(lrs) < 3:
        raise ValueError(f"lrs and losses must have the same length >= 3, got {len(lrs)} and {len(losses)}")
    pairs = [(lr, loss) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    if len(pairs) < 3:
        raise ValueError("losses must contain at least 3 finite values")
    xs = [math.log10(lr) for lr, _ in pairs]
    ys = smooth([loss for _, loss in pairs], window)
    lowest = min(range(len(ys)), key=ys.__getitem__)
    if method == "min_div_10":
        return pairs[lowest][0] / 10
    end = max(lowest, 2)
    slopes = [(ys[i + 1] - ys[i - 1]) / (xs[i + 1] - xs[i - 1]) for i in range(1, end)]
    i = 1 + min(range(len(slopes)), key=slopes.__getitem__)
    return pairs[i][0]
