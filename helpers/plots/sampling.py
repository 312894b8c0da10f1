"""Plots for notebooks 06 and 07: next-token distributions before and after each sampling step."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from helpers.plots.style import MAX_WIDTH_IN, finish
from helpers.sampling import entropy


def _label(token_id: int, token_str: Callable[[int], str] | None) -> str:
    return repr(token_str(token_id)) if token_str is not None else str(token_id)


# Token labels are drawn as plain text: with mathtext on, a token such as ' $$' or '$x$' is parsed
# as a formula (or fails to parse and the whole figure fails).
PLAIN = {"parse_math": False}


def _left(alive: int, ent: float) -> str:
    """'1 token left, entropy 0.00 nats': singular for one, and no '-0.00' for a one-token distribution."""
    return f"{alive} token{'' if alive == 1 else 's'} left, entropy {_nats(ent)} nats"


def _nats(ent: float) -> str:
    return f"{max(ent, 0.0) + 0.0:.2f}"  # a sum of -p log p can round to -0.0 (or -1e-8): shown as 0.00


def _top_ids(probs: torch.Tensor, top: int) -> list[int]:
    return probs.topk(min(top, probs.numel())).indices.tolist()


def plot_filter_steps(steps: Sequence[tuple[str, torch.Tensor]], token_str: Callable[[int], str] | None = None,
                      top: int = 15, ncols: int | None = None) -> Figure:
    """One bar chart per step (name, probabilities (V,)), all on the tokens that lead the first one.

    Removed tokens show as an empty slot with an x, so each filter's cut is visible; the title
    gives how many tokens survive in the whole vocabulary and the entropy. At most two panels per
    row (``ncols`` 1 or 2), so that the token labels stay legible at the notebook's width.
    """
    if ncols is not None and ncols not in (1, 2):
        raise ValueError(f"ncols must be 1 or 2 (wider rows shrink the token labels), got {ncols!r}")
    ids = _top_ids(steps[0][1], top)
    ncols = ncols or min(len(steps), 2)
    nrows = -(-len(steps) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(MAX_WIDTH_IN if ncols == 2 else 5.5, 3.3 * nrows),
                             squeeze=False, sharey=True)
    labels = [_label(i, token_str) for i in ids]
    parts = []
    for ax, (name, probs) in zip(axes.flat, steps):
        p = probs[ids].numpy()
        removed = p == 0
        ax.bar(range(len(ids)), p, color=np.where(removed, "lightgrey", "C0"))
        ax.plot(np.flatnonzero(removed), np.zeros(removed.sum()), "x", color="C3", ms=7, mew=2)
        alive = int((probs > 0).sum())
        left = _left(alive, float(entropy(probs[probs > 0])))
        ax.set_title(f"{name}\n{left}", fontsize=10, **PLAIN)
        ax.set_xticks(range(len(ids)), labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=9,
                      family="monospace", **PLAIN)
        ax.grid(axis="y", alpha=0.3)
        parts.append(f"{name}: {left}, {int(removed.sum())} of the {len(ids)} shown removed")
    for ax in axes.flat[len(steps):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("probability")
    return finish(fig, f"Next-token probabilities of the {len(ids)} most likely tokens ({', '.join(labels)}) "
                       f"after each step. " + "; ".join(parts))


def plot_temperature_sweep(temperatures: Sequence[float], entropies: Sequence[float],
                           counts: Mapping[str, Sequence[float]], max_entropy: float | None = None) -> Figure:
    """Left: entropy of the next-token distribution against T. Right: token counts against T (log)."""
    fig, (ax_e, ax_n) = plt.subplots(1, 2, figsize=(MAX_WIDTH_IN, 3.6))
    ax_e.plot(temperatures, entropies, "o-")
    if max_entropy is not None:
        ax_e.axhline(max_entropy, ls="--", color="k", lw=1, label=f"uniform over the vocabulary ({max_entropy:.2f})")
        ax_e.legend(loc="lower right")
    ax_e.set(xlabel="temperature T", ylabel="entropy (nats)", title="flatter with T: entropy grows")
    for name, values in counts.items():
        ax_n.plot(temperatures, values, "o-", label=name)
    ax_n.set(xlabel="temperature T", ylabel="tokens", yscale="log", title="how many tokens are in play")
    ax_n.legend()
    for ax in (ax_e, ax_n):
        ax.grid(alpha=0.3)
    return finish(fig, f"Entropy of the next-token distribution for temperatures {temperatures[0]:g} to "
                       f"{temperatures[-1]:g}: from {_nats(entropies[0])} to {_nats(entropies[-1])} nats; and how "
                       "many tokens are in play at each temperature")


def plot_sorted_distributions(named: Mapping[str, torch.Tensor], top: int = 60, title: str = "") -> Figure:
    """Probabilities sorted from the most likely token down, one line per distribution (log y)."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, probs in named.items():
        p = probs.sort(descending=True).values[:top].numpy()
        ax.plot(range(1, len(p) + 1), np.where(p > 0, p, np.nan), ".-", label=name)
    ax.set(xlabel="rank of the token", ylabel="probability", yscale="log", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return finish(fig, f"Probabilities of the {top} most likely tokens sorted by rank, log scale, for "
                       + ", ".join(f"{n} (top token {float(q.max()):.2g})" for n, q in named.items()))


def plot_metric_lines(xs: Sequence, series: Mapping[str, Sequence[float]], xlabel: str,
                      title: str = "", ylabels: Mapping[str, str] | None = None, bars: bool = False) -> Figure:
    """One panel per metric (diversity, repetition, quality, ...) against one setting.

    ``bars=True`` draws bars, for settings that are categories rather than points on a scale.
    """
    fig, axes = plt.subplots(1, len(series), figsize=(min(3.4 * len(series), MAX_WIDTH_IN), 3.6), squeeze=False)
    positions = range(len(xs))
    for ax, (name, values) in zip(axes[0], series.items()):
        if bars:
            ax.bar(positions, values, color="C0")
        else:
            ax.plot(positions, values, "o-")
        ax.set_xticks(list(positions), [str(x) for x in xs], rotation=60 if bars else 0,
                      ha="right" if bars else "center", rotation_mode="anchor", **PLAIN)
        ax.set(xlabel=xlabel, title=name)
        if (ylabels or {}).get(name, name) != name:
            ax.set_ylabel(ylabels[name])
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    summary = "; ".join(f"{name}: " + ", ".join(f"{x} {float(v):.3g}" for x, v in zip(xs, values))
                        for name, values in series.items())
    return finish(fig, f"{title + ': ' if title else ''}{' and '.join(series)} for each setting. {summary}")


def plot_lines(xs: Sequence[float], series: Mapping[str, Sequence[float]], xlabel: str, ylabel: str,
               title: str = "") -> Figure:
    """Several lines on one panel, sharing the x values."""
    fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN * 0.85, 3.8))
    for name, values in series.items():
        ax.plot(xs, values, "o-", label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return finish(fig, f"{ylabel} against {xlabel}: " + "; ".join(
        f"{name} from {float(v[0]):.3g} to {float(v[-1]):.3g}" for name, v in series.items()))


def plot_sweep_grid(sweeps: Mapping[str, Sequence[Mapping]], x: str, metrics: Sequence[str]) -> Figure:
    """A grid of panels: one column per sweep (rows of results, each with ``x`` and the metrics),
    one row per metric; panels in a row share their y axis so the sweeps compare at a glance."""
    fig, axes = plt.subplots(len(metrics), len(sweeps), figsize=(min(3.0 * len(sweeps), MAX_WIDTH_IN),
                                                                 2.4 * len(metrics)), squeeze=False, sharey="row")
    for j, (name, rows) in enumerate(sweeps.items()):
        xs = [r[x] for r in rows]
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            ax.plot(xs, [r[metric] for r in rows], "o-", color=f"C{j}")
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(name)
            if i == len(metrics) - 1:
                ax.set_xlabel("strength")
            if j == 0:
                ax.set_ylabel(metric)
    return finish(fig, f"{', '.join(metrics)} against the strength of {', '.join(sweeps)}: one column per setting, "
                       "one row per measure")


def plot_playground(raw: torch.Tensor, processed: torch.Tensor, token_str: Callable[[int], str] | None = None,
                    top: int = 20) -> Figure:
    """The playground's chart: the model's own probabilities (outline) and the processed ones (bars)."""
    ids = _top_ids(torch.maximum(raw, processed), top)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    x = np.arange(len(ids))
    ax.bar(x, raw[ids].numpy(), color="none", edgecolor="grey", label="model (T = 1, no filter)")
    ax.bar(x, processed[ids].numpy(), width=0.6, color="C0", label="after your settings")
    ax.set_xticks(x, [_label(i, token_str) for i in ids], rotation=60, ha="right", rotation_mode="anchor",
                  fontsize=9, family="monospace", **PLAIN)
    ax.set(ylabel="probability", ylim=(0, 1.02))
    ax.legend()
    return finish(fig, f"The model's probabilities and those after the chosen settings for the {len(ids)} most "
                       "likely tokens. " + distribution_summary(processed, token_str))


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (for an ``ipywidgets.Image``); closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def distribution_summary(probs: torch.Tensor, token_str: Callable[[int], str] | None = None) -> str:
    """One line about a distribution: surviving tokens, entropy and the most likely token."""
    alive = probs > 0
    ent = float(entropy(probs[alive]))
    top = int(probs.argmax())
    n = int(alive.sum())
    return (f"{n} token{'' if n == 1 else 's'} can be drawn; entropy {_nats(ent)} nats; "
            f"most likely {_label(top, token_str)} with p = {float(probs[top]):.3f}")
