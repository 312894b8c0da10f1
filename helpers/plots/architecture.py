"""Plots for notebook 05: parameter counts, memory, attention cost, depth x width, positions, dropout."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from helpers.plots.style import MAX_WIDTH_IN, finish


def plot_parameter_shares(breakdowns: Mapping[str, Mapping[str, Mapping[str, int]]]) -> Figure:
    """Stacked bars: the share of each component (embeddings, attention, mlp, norms) per model."""
    names = list(breakdowns)
    parts = list(next(iter(breakdowns.values())))
    fig, ax = plt.subplots(figsize=(min(1.6 * len(names) + 3, MAX_WIDTH_IN), 3.8))
    bottom = np.zeros(len(names))
    for part in parts:
        totals = np.array([sum(b[part].values()) for b in breakdowns.values()], dtype=float)
        alls = np.array([sum(v for p in b.values() for v in p.values()) for b in breakdowns.values()], dtype=float)
        share = totals / alls
        ax.bar(names, share, bottom=bottom, label=part)
        for i, s in enumerate(share):
            if s > 0.04:
                ax.text(i, bottom[i] + s / 2, f"{s:.0%}", ha="center", va="center", fontsize=9)
        bottom += share
    ax.set(ylabel="share of all parameters", ylim=(0, 1), title="where the parameters are")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    return finish(fig, f"Stacked bars: the share of {', '.join(parts)} in all parameters of {', '.join(names)}")


def plot_memory(rows: Sequence[Mapping], columns: Sequence[str] = ("fp32", "bf16", "int8", "int4", "train_fp32"),
                limit_gb: float | None = None) -> Figure:
    """Grouped bars (log scale, GB): memory of each model in each number format / for training."""
    fig, ax = plt.subplots(figsize=(8.0, 3.8))
    width = 0.8 / len(columns)
    x = np.arange(len(rows))
    for i, col in enumerate(columns):
        ax.bar(x + (i - (len(columns) - 1) / 2) * width, [r[col] / 1e9 for r in rows], width, label=col)
    if limit_gb is not None:
        ax.axhline(limit_gb, color="k", ls="--", lw=1, label=f"{limit_gb:g} GB")
    ax.set_xticks(x, [textwrap.fill(str(r["model"]), 16) for r in rows])
    ax.set(yscale="log", ylabel="GB (10⁹ bytes)", title="memory: weights alone vs AdamW training")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return finish(fig, "Grouped bars, log scale: memory in GB of " + "; ".join(
        f"{r['model']}: " + ", ".join(f"{c} {r[c] / 1e9:.3g}" for c in columns) for r in rows))


def plot_attention_cost(results: Mapping[str, Sequence[Mapping]], fits: Mapping[str, Mapping] | None = None) -> Figure:
    """Time and peak memory of attention against sequence length, one line per implementation.

    ``fits`` (implementation -> ``fit_quadratic`` of the times) adds the fitted curves, dashed.
    """
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(MAX_WIDTH_IN, 4.2))
    for name, rows in results.items():
        T = np.array([r["seq_len"] for r in rows], dtype=float)
        line, = ax_t.plot(T, [r["seconds"] * 1e3 for r in rows], "o-", label=name)
        if fits and name in fits:
            f = fits[name]
            grid = np.linspace(T.min(), T.max(), 100)
            ax_t.plot(grid, (f["a"] + f["b"] * grid + f["c"] * grid**2) * 1e3, "--", color=line.get_color(),
                      label=f"{name}: fit a + bT + cT²")
        ax_m.plot(T, [r["peak_bytes"] / 1e6 for r in rows], "o-", label=name)
    ax_t.set(xlabel="sequence length T", ylabel="ms per forward", title="time of one attention layer")
    ax_m.set(xlabel="sequence length T", ylabel="MB", title="peak memory of tensors alive at once")
    ax_m.set(xscale="log", yscale="log")
    lengths = sorted({int(r["seq_len"]) for rows in results.values() for r in rows})
    ax_m.xaxis.set_minor_formatter(NullFormatter())  # 2x10², 3x10², ... crowd each other: the lengths measured instead
    ax_m.set_xticks(lengths, [str(t) for t in lengths])
    ax_t.legend()
    ax_m.legend()
    return finish(fig, "Time and peak memory of one attention layer against sequence length for "
                       + ", ".join(results))


def plot_train_vs_val(rows: Sequence[Mapping], x: str, line: str, panel: str,
                      train_key: str = "train_loss", val_key: str = "val_loss") -> Figure:
    """Train (dashed) and validation (solid) loss against column ``x``, one line per value of
    ``line``, one panel per value of ``panel`` (e.g. panels = data sizes, lines = widths)."""
    panels = list(dict.fromkeys(r[panel] for r in rows))
    lines = list(dict.fromkeys(r[line] for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(min(3.2 * len(panels) + 2.4, MAX_WIDTH_IN), 3.8), sharey=True,
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, p in zip(axes[0], panels):
        for j, value in enumerate(lines):
            sel = sorted((r for r in rows if r[panel] == p and r[line] == value), key=lambda r: r[x])
            xs = [r[x] for r in sel]
            c = colors[j % len(colors)]
            ax.plot(xs, [r[val_key] for r in sel], "o-", color=c, label=f"{line}={value} validation")
            ax.plot(xs, [r[train_key] for r in sel], "s--", color=c, alpha=0.7, label=f"{line}={value} train")
        ax.set(xlabel=x, title=f"{panel} = {p}")
        ax.set_xticks(sorted({r[x] for r in rows}))
    axes[0][0].set_ylabel("loss (nats / token)")
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return finish(fig, f"Train and validation loss against {x}, one line per {line} "
                       f"({', '.join(map(str, lines))}), one panel per {panel} ({', '.join(map(str, panels))})")


def plot_loss_per_position(losses: torch.Tensor, trained_length: int, title: str = "") -> Figure:
    """Validation loss at each position, with the training length marked."""
    fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN, 3.6))
    pos = np.arange(len(losses))
    ax.plot(pos, losses.numpy(), ".-", ms=3)
    ax.axvline(trained_length - 0.5, color="tab:red", ls="--", label=f"trained positions end ({trained_length})")
    ax.axvspan(trained_length - 0.5, len(losses) - 0.5, color="tab:red", alpha=0.08)
    ax.set(xlabel="position in the sequence", ylabel="loss (nats / token)", title=title or "loss per position")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    inside, outside = losses[:trained_length], losses[trained_length:]
    after = f", {float(outside.mean()):.2f} beyond it" if len(outside) else ""
    return finish(fig, f"{title or 'loss per position'}: validation loss at each position; mean "
                       f"{float(inside.mean()):.2f} within the {trained_length} trained positions{after}")


def plot_dropout(rows: Sequence[Mapping], rate_key: str = "dropout", train_key: str = "train_loss",
                 val_key: str = "val_loss") -> Figure:
    """Train and validation loss against the dropout rate, with the best rate marked."""
    rows = sorted(rows, key=lambda r: r[rate_key])
    rates = [r[rate_key] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(rates, [r[val_key] for r in rows], "o-", label="validation")
    ax.plot(rates, [r[train_key] for r in rows], "s--", label="train")
    best = min(rows, key=lambda r: r[val_key])
    ax.plot([best[rate_key]], [best[val_key]], "*", ms=14, color="tab:red", label=f"best: {best[rate_key]:g}")
    ax.set(xlabel="dropout rate", ylabel="loss (nats / token)", title="dropout on a small data set")
    ax.legend()
    return finish(fig, "Train and validation loss against the dropout rate: " + ", ".join(
        f"{r[rate_key]:g}: validation {r[val_key]:.3f}" for r in rows) + f"; best {best[rate_key]:g}")
