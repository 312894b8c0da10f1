"""Plots for notebooks 12-13: fine-tuning methods side by side, forgetting, weight histograms, quantisation.

Every function takes measured numbers (rows of dicts, tensors) and returns the matplotlib ``Figure``;
none of them trains or quantises anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from helpers.plots.style import MAX_WIDTH_IN, finish

_PANELS = {
    "trainable": ("trainable parameters", True),
    "memory_mb": ("training memory (MB)", False),
    "step_ms": ("time per step (ms)", False),
    "german_loss": ("German val loss", False),
    "english_loss": ("English val loss", False),
}


def plot_methods(rows: Sequence[Mapping], columns: Sequence[str] = tuple(_PANELS), label: str = "method",
                 baseline: Mapping[str, float] | None = None) -> Figure:
    """One horizontal bar chart per column, the methods as bars (rows: dicts with ``label`` and ``columns``).

    ``baseline`` draws a dashed line per column (e.g. the base model's losses before adaptation).
    Losses are drawn as points, not bars: their axis cannot start at 0 without hiding the differences,
    and a bar whose axis does not start at 0 misstates its length.
    """
    if not rows:
        raise ValueError("rows must hold at least one result")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise ValueError(f"columns {missing} are not in the rows; they have {sorted(rows[0])}")
    names = [str(r[label]) for r in rows]
    ncols = min(len(columns), 3)  # more panels wrap onto further rows, so that labels keep their size
    nrows = -(-len(columns) // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(MAX_WIDTH_IN if ncols > 1 else 4.5,
                                                    nrows * (0.4 * len(rows) + 1.5)), squeeze=False)
    axes = grid.flat
    y = np.arange(len(rows))
    for k, (ax, col) in enumerate(zip(axes, columns)):
        title, log = _PANELS.get(col, (col, False))
        values = np.array([float(r[col]) for r in rows])
        colors = [f"C{i % 10}" for i in range(len(rows))]
        if "loss" in col and not log:
            ax.scatter(values, y, color=colors, s=50, zorder=3)
        else:
            ax.barh(y, values, color=colors)
        for i, v in enumerate(values):
            ax.text(v, i, f"  {v:,.0f}" if v >= 100 else f"  {v:.3g}", va="center", fontsize=8)
        if log:
            ax.set_xscale("log")
            decades = np.log10(values.max() / (values.min() / 2))
            ax.set_xlim(values.min() / 2, values.max() * 10 ** (0.6 * decades + 0.3))  # room for the longest number
        elif "loss" in col:
            lo, hi = values.min(), values.max()
            if baseline and col in baseline:
                lo, hi = min(lo, baseline[col]), max(hi, baseline[col])
            ax.set_xlim(lo - 0.15 * (hi - lo + 1e-3), hi + 0.45 * (hi - lo + 1e-3))
        else:
            ax.set_xlim(0, values.max() * 1.45)
        if baseline and col in baseline:
            ax.axvline(baseline[col], color="k", ls="--", lw=1)
            title += "\n(dashed: base model)"
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="x")
        ax.set_yticks(y, names if k % ncols == 0 else [], fontsize=9)
        ax.invert_yaxis()
    for ax in grid.flat[len(columns):]:
        ax.axis("off")
    summary = "; ".join(f"{_PANELS.get(c, (c,))[0]}: " + ", ".join(f"{n} {float(r[c]):.3g}" for n, r in zip(names, rows))
                        for c in columns)
    return finish(fig, f"Horizontal bar charts comparing {', '.join(names)}. {summary}")


def plot_forgetting(rows: Sequence[Mapping], base: tuple[float, float], label: str = "method",
                    x: str = "german_loss", y: str = "english_loss") -> Figure:
    """New-domain loss (x) against old-domain loss (y) per method; the base model is the star.

    Down-left is better on both; a point far above the star has forgotten the old domain.
    """
    fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN, 4.6))
    ax.plot([base[0]], [base[1]], "k*", ms=14, label="base model (before)")
    for i, r in enumerate(rows):
        ax.plot([r[x]], [r[y]], "o", color=f"C{i % 10}", ms=8, label=str(r[label]))
        ax.annotate("", xy=(r[x], r[y]), xytext=base, arrowprops=dict(arrowstyle="->", color=f"C{i % 10}", alpha=0.4))
    ax.set(xlabel="German validation loss (new domain, lower = adapted)",
           ylabel="English validation loss (old domain, higher = forgot)", title="adaptation vs forgetting")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return finish(fig, f"Scatter plot of new-domain (German) against old-domain (English) validation loss per "
                       f"method, the base model at {base[0]:.2f}, {base[1]:.2f}: " + ", ".join(
                           f"{r[label]} {r[x]:.2f}, {r[y]:.2f}" for r in rows))


def plot_weight_histogram(weight: torch.Tensor, title: str = "weights", bits: int = 8, bins: int = 200) -> Figure:
    """Histogram (log counts) of a weight tensor with the per-tensor absmax grid of ``bits`` bits marked.

    Left: all weights and the range the per-tensor scale must cover. Right: the central part, with
    the spacing between neighbouring codes, which is all the resolution the bulk of the weights gets.
    """
    w = weight.detach().float().flatten().cpu().numpy()
    absmax = float(np.abs(w).max())
    step = absmax / (2 ** (bits - 1) - 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(MAX_WIDTH_IN, 3.8))
    a.hist(w, bins=bins, color="C0", log=True)
    for edge in (-absmax, absmax):
        a.axvline(edge, color="C3", ls="--", lw=1)
    std = w.std()
    a.set(title=f"{title}\nmax |w| = {absmax:.3f} = {absmax / std:.1f} std", xlabel="weight value", ylabel="count (log)")
    core = 3 * std
    b.hist(w[np.abs(w) < core], bins=bins, color="C0")
    grid = np.arange(-np.floor(core / step), np.floor(core / step) + 1) * step
    for g in grid if len(grid) <= 80 else grid[:: max(1, len(grid) // 80)]:
        b.axvline(g, color="C3", lw=0.6, alpha=0.6)
    b.set(title=f"|w| < 3 std: {len(grid)} of {2 ** bits - 1} int{bits}\ncodes fall here (red lines)",
          xlabel="weight value", ylabel="count")
    return finish(fig, f"Histograms of the weights of {title}: the largest |w| is {absmax:.3f}, {absmax / std:.1f} "
                       f"standard deviations; only {len(grid)} of the {2 ** bits - 1} int{bits} codes fall within "
                       "3 standard deviations, where most weights are")


def plot_size_vs_loss(rows: Sequence[Mapping], x: str = "size_mb", y: str = "val_loss", label: str = "variant",
                      baseline: float | None = None) -> Figure:
    """Model size against validation loss, one point per variant (fp32, int8, int4, ...).

    Each variant has its own colour and marker and is named in the legend beside the axes: labels
    written next to the points overlap when two variants are close in size and loss.
    """
    fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN, 4.4))
    markers = "osD^vP*Xh<>p"
    for i, r in enumerate(rows):
        ax.plot([r[x]], [r[y]], markers[i % len(markers)], color=f"C{i % 10}", ms=9, ls="none",
                label=f"{r[label]}: {r[x]:.3g} MB, {r[y]:.3f}")
    if baseline is not None:
        ax.axhline(baseline, color="k", ls="--", lw=1, label=f"fp32 loss ({baseline:.3f})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set(xlabel="model size (MB)", ylabel="validation loss (nats per token)", title="size vs quality")
    ax.set_xlim(0, max(r[x] for r in rows) * 1.1)
    ax.grid(alpha=0.3)
    return finish(fig, "Scatter plot of model size against validation loss: " + ", ".join(
        f"{r[label]} {r[x]:.3g} MB with loss {r[y]:.3f}" for r in rows))


def plot_error_by_scheme(errors: Mapping[str, float], title: str = "mean |w - dequantised w|") -> Figure:
    """One bar per quantisation scheme: the mean rounding error it leaves in a weight matrix."""
    fig, ax = plt.subplots(figsize=(min(max(5.0, 1.3 * len(errors)), MAX_WIDTH_IN), 3.6))
    names = list(errors)
    ax.bar(names, [errors[n] for n in names], color=[f"C{i % 10}" for i in range(len(names))])
    for i, n in enumerate(names):
        ax.text(i, errors[n], f"{errors[n]:.2e}", ha="center", va="bottom", fontsize=9)
    ax.set(title=title, ylabel="mean absolute error")
    ax.set_ylim(0, max(errors.values()) * 1.15)
    ax.set_xticks(range(len(names)), names, rotation=15, ha="right", rotation_mode="anchor")
    ax.grid(alpha=0.3, axis="y")
    return finish(fig, f"{title}: bar chart, " + ", ".join(f"{n} {errors[n]:.2e}" for n in names))
