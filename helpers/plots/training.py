"""Plots of training runs: loss curves (any notebook that trains), bars per run, learning-rate
schedules, sweeps and batch sizes (notebooks 08-10).

Every function takes measured data (``History`` objects, lists, sweep rows) and returns the
matplotlib ``Figure``; none of them trains anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from helpers.plots.style import MAX_WIDTH_IN, finish
from helpers.schedules import smooth
from helpers.train import History


def _mark_divergence(ax: plt.Axes, x: float, y: float, color: str) -> None:
    """An x where a run diverged (its last finite loss, clipped to the visible range)."""
    ax.plot([x], [y], marker="x", ms=10, mew=2.5, color=color, linestyle="none")


def plot_loss_curves(histories: Mapping[str, History], x: str = "step", val: bool = False, smoothing: int = 1,
                     log_y: bool = False, ylim: tuple[float, float] | None = None, title: str = "training loss",
                     ax: plt.Axes | None = None, baselines: Mapping[str, float] | None = None) -> Figure:
    """Training loss of several runs on one plot; ``x`` is ``"step"`` or ``"tokens"`` (tokens seen).

    ``val=True`` adds each run's validation losses as dashed lines with dots (the gap between the
    two is overfitting). A run that diverged ends with an x at its last point, drawn at the top
    edge if its loss left the plot. ``smoothing`` > 1 shows a centred moving average over that
    many steps. ``baselines`` draws reference losses as horizontal lines, e.g. the uniform guess
    ``ln V`` and the unigram baseline.
    """
    if x not in ("step", "tokens"):
        raise ValueError(f"x must be 'step' or 'tokens', got {x!r}")
    own = ax is None
    fig, ax = (plt.subplots(figsize=(MAX_WIDTH_IN, 4)) if own else (ax.figure, ax))
    baselines = dict(baselines or {})
    finite = [v for h in histories.values() for v in h.train_loss if math.isfinite(v)] + list(baselines.values())
    survivors = [v for h in histories.values() if not h.diverged
                 for v in h.train_loss + (h.val_loss if val else []) if math.isfinite(v)]  # validation points too
    # the top edge shows every surviving run whole; a diverged run's explosion is cut off (and marked)
    top = ylim[1] if ylim else (max(survivors) if survivors else min(max(finite), 1.3 * finite[0]) if finite else 1.0)
    for i, (label, h) in enumerate(histories.items()):
        color = f"C{i % 10}"
        per_step = h.tokens_per_step if x == "tokens" else 1
        xs = np.array(h.step, dtype=float) * per_step
        ys = np.array(smooth(h.train_loss, smoothing) if smoothing > 1 and not h.diverged else h.train_loss)
        ax.plot(xs, ys, color=color, lw=1.2, label=label + (" (diverged)" if h.diverged else ""))
        if h.diverged and len(xs):
            last = ys[-1]
            _mark_divergence(ax, xs[-1], min(last, top) if math.isfinite(last) else top, color)
        if val and h.val_loss:
            ax.plot(np.array(h.eval_step) * per_step, h.val_loss, "o--", color=color, ms=3, lw=1)
    for j, (name, value) in enumerate(baselines.items()):
        ax.axhline(value, ls=":", lw=1, color=f"C{(len(histories) + j) % 10}", label=f"{name} ({value:.2f})")
    ax.set(xlabel="tokens seen" if x == "tokens" else "step", ylabel="loss (nats per token)", title=title)
    if log_y:
        ax.set_yscale("log")
    ax.set_ylim(ylim if ylim else (min(finite) * 0.95 if finite else 0, top * 1.02))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: the curves fill it
    ax.grid(alpha=0.3)
    ends = "; ".join(f"{label}: " + ("diverged" if h.diverged else f"{h.train_loss[-1]:.3f} after {h.step[-1]} steps")
                     for label, h in histories.items() if h.train_loss)
    return finish(fig, f"{title}: training loss{' and validation loss' if val else ''} against "
                       f"{'tokens seen' if x == 'tokens' else 'step'}. Final loss {ends}", layout=own)


def plot_lr_schedules(curves: Mapping[str, Sequence[float]], log_y: bool = False,
                      title: str = "learning-rate schedules") -> Figure:
    """Learning rate against step for each named schedule."""
    fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN, 3.6))
    for label, lrs in curves.items():
        ax.plot(range(len(lrs)), lrs, lw=1.8, label=label)
    ax.set(xlabel="step", ylabel="learning rate", title=title)
    if log_y:
        ax.set_yscale("log")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: inside it covers the ramps
    ax.grid(alpha=0.3)
    return finish(fig, f"{title}: learning rate against step for " + ", ".join(
        f"{label} (from {lrs[0]:.2g} to {lrs[-1]:.2g}, peak {max(lrs):.2g})" for label, lrs in curves.items()))


def plot_lr_sweep(lrs: Sequence[float], losses: Sequence[float], diverged: Sequence[bool] | None = None,
                  ylabel: str = "final training loss", title: str = "final loss against learning rate",
                  ax: plt.Axes | None = None) -> Figure:
    """The U-curve: final loss against learning rate (log x). Diverged runs appear as red x on top."""
    own = ax is None
    fig, ax = (plt.subplots(figsize=(6.5, 3.8)) if own else (ax.figure, ax))
    diverged = list(diverged) if diverged is not None else [not math.isfinite(v) for v in losses]
    ok = [(lr, v) for lr, v, d in zip(lrs, losses, diverged) if not d and math.isfinite(v)]
    if ok:
        ax.plot([p[0] for p in ok], [p[1] for p in ok], "o-", color="C0", label="finished")
        best = min(ok, key=lambda p: p[1])
        ax.plot([best[0]], [best[1]], "*", ms=16, color="C2", label=f"best: lr = {best[0]:.0e}")
    top = max((p[1] for p in ok), default=1.0) * 1.05
    bad = [lr for lr, d in zip(lrs, diverged) if d]
    if bad:
        ax.plot(bad, [top] * len(bad), "x", ms=11, mew=2.5, color="C3", label="diverged")
    ax.set_xscale("log")
    ax.set(xlabel="learning rate (log scale)", ylabel=ylabel, title=title)
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    best_text = f"; the best is lr = {best[0]:.0e} with {best[1]:.3f}" if ok else ""
    return finish(fig, f"{title}: {ylabel} for {len(lrs)} learning rates from {min(lrs):.0e} to {max(lrs):.0e}"
                       f"{best_text}; {len(bad)} diverged", layout=own)


def plot_range_test(lrs: Sequence[float], losses: Sequence[float], suggestion: float | None = None,
                    window: int = 5, title: str = "LR range test") -> Figure:
    """Loss against an exponentially growing learning rate (raw and smoothed), with the suggested LR."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    finite = [(lr, v) for lr, v in zip(lrs, losses) if math.isfinite(v)]
    xs, ys = [p[0] for p in finite], [p[1] for p in finite]
    ax.plot(xs, ys, color="C0", alpha=0.35, lw=1, label="loss per step")
    ax.plot(xs, smooth(ys, window), color="C0", lw=2, label=f"smoothed ({window} points)")
    if suggestion is not None:
        ax.axvline(suggestion, color="C2", ls="--", label=f"suggestion: {suggestion:.1e}")
    ax.set_xscale("log")
    ax.set_ylim(min(ys) * 0.95, min(max(ys), 1.4 * ys[0]) * 1.02)
    ax.set(xlabel="learning rate (log scale)", ylabel="training loss", title=title)
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    tip = f", suggested learning rate {suggestion:.1e}" if suggestion is not None else ""
    return finish(fig, f"{title}: training loss against a learning rate growing from {min(xs):.0e} to "
                       f"{max(xs):.0e}{tip}")


def plot_metric_per_step(histories: Mapping[str, History], metric: str = "grad_norm", steps: int | None = None,
                         log_y: bool = False, title: str | None = None) -> Figure:
    """A per-step History field (``grad_norm``, ``lr``, ``train_loss``, ``tokens_per_s``) for several runs,
    optionally only the first ``steps`` steps (where warmup and spikes happen)."""
    if metric not in ("grad_norm", "lr", "train_loss", "tokens_per_s"):
        raise ValueError(f"metric must be one of grad_norm, lr, train_loss, tokens_per_s, got {metric!r}")
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for label, h in histories.items():
        n = len(h.step) if steps is None else steps
        ax.plot(h.step[:n], getattr(h, metric)[:n], lw=1.2, label=label)
    names = {"grad_norm": "gradient norm (before clipping)", "lr": "learning rate", "train_loss": "training loss",
             "tokens_per_s": "tokens per second"}
    ax.set(xlabel="step", ylabel=names[metric], title=title or names[metric])
    if log_y:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    return finish(fig, f"{title or names[metric]}: {names[metric]} against step for {', '.join(histories)}")


def plot_batch_size_costs(batch_sizes: Sequence[int], tokens_per_s: Sequence[float],
                          memory_bytes: Sequence[float | None], memory_label: str = "peak memory") -> Figure:
    """Throughput (tokens/s) and memory against batch size, side by side (log-2 x axis)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(MAX_WIDTH_IN, 3.6))
    a.plot(batch_sizes, tokens_per_s, "o-")
    a.set(xlabel="batch size", ylabel="tokens per second", title="throughput")
    mem = [m / 2**20 if m is not None else math.nan for m in memory_bytes]
    b.plot(batch_sizes, mem, "o-", color="C1")
    b.set(xlabel="batch size", ylabel="MiB", title=memory_label)
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    return finish(fig, f"Throughput and {memory_label} against batch size {batch_sizes[0]} to {batch_sizes[-1]}: "
                       + ", ".join(f"batch {b}: {t:,.0f} tokens/s" for b, t in zip(batch_sizes, tokens_per_s)))


def plot_gradient_noise(batch_sizes: Sequence[int], similarities: Sequence[Sequence[float]]) -> Figure:
    """Cosine similarity between mini-batch gradients and a large-batch gradient, per batch size:
    every dot is one mini-batch, the line their mean."""
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    for b, sims in zip(batch_sizes, similarities):
        ax.plot([b] * len(sims), sims, ".", color="C0", alpha=0.5)
    ax.plot(batch_sizes, [float(np.mean(s)) for s in similarities], "o-", color="C1", label="mean")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="batch size (windows)", ylabel="cosine similarity to the large-batch gradient",
           title="gradient noise shrinks with the batch size", ylim=(min(0.0, *map(min, similarities)), 1.0))
    ax.legend()
    ax.grid(alpha=0.3)
    return finish(fig, "Cosine similarity between mini-batch gradients and the large-batch gradient: mean "
                       + ", ".join(f"{float(np.mean(s)):.2f} at batch {b}" for b, s in zip(batch_sizes, similarities)))


def plot_bars(values: Mapping[str, float], ylabel: str = "", title: str = "", highlight: str | None = None) -> Figure:
    """A bar per named value with the value written on it (e.g. the final loss of each optimiser).

    ``highlight`` names a bar to draw in another colour; a value that is not finite (a diverged
    run) becomes a full red bar labelled "diverged". Bars start at 0 (a bar's length is its value;
    an axis that starts elsewhere exaggerates small differences), and each bar has its value written on it.
    More than six bars, or long names, are drawn horizontally, one row per name, so the names stay legible.
    """
    names = list(values)
    horizontal = len(names) > 6 or max(len(n) for n in names) * len(names) > 60
    if horizontal:
        fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN * 0.8, 0.32 * len(names) + 1.2))
    else:
        fig, ax = plt.subplots(figsize=(min(max(5.0, 1.1 * len(names)), MAX_WIDTH_IN), 3.8))
    finite = [v for v in values.values() if math.isfinite(v)] or [1.0]
    top = max(max(finite) * 1.05, 0.0)
    colors = ["C2" if n == highlight else "C0" if math.isfinite(values[n]) else "C3" for n in names]
    heights = [values[n] if math.isfinite(values[n]) else top for n in names]  # a diverged run: a full red bar
    labels = [f"{v:.4g}" if math.isfinite(v) else "diverged" for v in values.values()]
    lo = min(0.0, min(finite) * 1.1)
    hi = max(top, 0.0) + (0.3 if horizontal else 0.1) * (max(top, 0.0) - lo)  # 0, and room for the numbers
    if horizontal:
        ax.barh(range(len(names)), heights, color=colors)
        for i, text in enumerate(labels):  # on the positive side of 0 also for a negative bar: nothing to collide with
            ax.text(max(heights[i], 0.0), i, f" {text}", va="center", ha="left", fontsize=9)
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlim(lo, hi)
        ax.set(xlabel=ylabel, title=title)
        ax.grid(alpha=0.3, axis="x")
    else:
        ax.bar(range(len(names)), heights, color=colors)
        for i, text in enumerate(labels):
            ax.text(i, max(heights[i], 0.0), text, ha="center", va="bottom", fontsize=9)
        ax.set_ylim(lo, hi)
        ax.set(ylabel=ylabel, title=title)
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", rotation_mode="anchor")
        ax.grid(alpha=0.3, axis="y")
    return finish(fig, f"{title}: bar chart of {ylabel or 'the value'} per run: " + ", ".join(
        f"{n} {v:.4g}" if math.isfinite(v) else f"{n} diverged" for n, v in values.items())
        + (f"; {highlight} highlighted" if highlight else ""))
