"""Plots for notebook 04: attention maps, head measures, positions, the KV cache and its timing."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from helpers.plots.style import MAX_WIDTH_IN, finish


def _map_on(ax: plt.Axes, weights: torch.Tensor, labels: Sequence[str] | None, title: str, small: bool,
            highlight: Sequence[int] = ()) -> None:
    w = weights.detach().float().cpu().numpy()
    ax.imshow(w, cmap="Blues", vmin=0, vmax=max(float(w.max()), 1e-9), interpolation="nearest")
    ax.set_title(title, fontsize=9 if small else 10)
    if labels is not None and not small:
        ticks = range(len(labels))
        labels = [str(t).replace("\n", "\\n").replace("\t", "\\t") for t in labels]  # one line per token
        ax.set_xticks(ticks, labels, rotation=90, fontsize=8, parse_math=False)
        ax.set_yticks(ticks, labels, fontsize=8, parse_math=False)
        ax.set(xlabel="key (looked at)", ylabel="query (looking)")
        for i in highlight:  # mark chosen tokens (say, a name) in red on both axes
            ax.get_xticklabels()[i].set_color("red")
            ax.get_yticklabels()[i].set_color("red")
    else:
        ax.set_xticks([])
        ax.set_yticks([])


def plot_attention_map(weights: torch.Tensor, labels: Sequence[str] | None = None, title: str = "",
                       highlight: Sequence[int] = ()) -> Figure:
    """One head's attention map (T, T): row = the query position, column = the key it takes from;
    the token labels at the positions in ``highlight`` are drawn in red."""
    if weights.dim() != 2:
        raise ValueError(f"weights must be (T, T), got shape {tuple(weights.shape)}")
    n = weights.shape[0]
    side = min(max(4.0, 0.16 * n + 1.8), MAX_WIDTH_IN)  # 8-pt labels need about 0.14 inch per token
    fig, ax = plt.subplots(figsize=(side, side))
    _map_on(ax, weights, labels, title, small=False, highlight=highlight)
    w = weights.detach().float()
    top = w.argmax(dim=-1)
    named = labels is not None
    return finish(fig, f"{title or 'attention map'}: heat map of the attention weights of {n} query positions "
                       f"(rows) over the key positions (columns); on average a query gives "
                       f"{float(w.max(dim=-1).values.mean()):.2f} of its attention to one key"
                       + (f"; the last token {labels[-1]!r} looks most at {labels[int(top[-1])]!r}" if named else ""))


def plot_attention_grid(weights: torch.Tensor, titles: Sequence[Sequence[str]] | None = None,
                        suptitle: str = "") -> Figure:
    """All maps of a model, (n_layer, n_head, T, T): one row per layer, one column per head."""
    if weights.dim() != 4:
        raise ValueError(f"weights must be (n_layer, n_head, T, T), got shape {tuple(weights.shape)}")
    L, H = weights.shape[:2]
    side = min(2.1, MAX_WIDTH_IN / H)
    fig, axes = plt.subplots(L, H, figsize=(side * H, side * L + (0.3 if suptitle else 0)), squeeze=False)
    for layer in range(L):
        for head in range(H):
            title = titles[layer][head] if titles is not None else f"L{layer} H{head}"
            _map_on(axes[layer][head], weights[layer, head], None, title, small=True)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return finish(fig, f"{suptitle or 'attention maps'}: a grid of {L} layers (rows) by {H} heads (columns) of "
                       f"attention heat maps over {weights.shape[-1]} positions")


def plot_head_scores(scores: Mapping[str, torch.Tensor], fmt: str = "{:.2f}") -> Figure:
    """One heat map per measure, each (n_layer, n_head): layers as rows, heads as columns. Small grids
    get the value written in every cell, large ones (a real LLM's hundreds of heads) a colour bar."""
    shapes = {tuple(s.shape) for s in scores.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"scores must all be (n_layer, n_head) tensors of one shape, got {sorted(shapes)}")
    L, H = next(iter(shapes))
    annotate = L * H <= 64
    height = 3.0 if annotate else 0.16 * L + 1.4
    # rows of at most three panels (two with colour bars): more side by side leave no room for the numbers
    ncols = min(len(scores), 3 if annotate else 2)
    nrows = -(-len(scores) // ncols)
    width = min(max(3.0, 0.45 * H + 1.4) * ncols, MAX_WIDTH_IN)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False)
    for ax in axes.flat[len(scores):]:
        ax.axis("off")
    for ax, (name, s) in zip(axes.flat, scores.items()):
        a = s.detach().float().cpu().numpy()
        im = ax.imshow(a, cmap="viridis", aspect="auto")
        if annotate:
            for i in range(L):
                for j in range(H):
                    ax.text(j, i, fmt.format(a[i, j]), ha="center", va="center", fontsize=8,
                            color="w" if a[i, j] < (a.min() + a.max()) / 2 else "k")
        else:
            fig.colorbar(im, ax=ax, fraction=0.08)
        hstep = 1 if H * 0.16 <= width / ncols - 0.8 else max(2, H // 8)  # 8-pt numbers need the room
        ax.set_xticks(range(0, H, hstep), [str(j) for j in range(0, H, hstep)], fontsize=8)
        step = 1 if L <= 12 else 5
        ax.set_yticks(range(0, L, step), [str(i) for i in range(0, L, step)], fontsize=8)
        ax.set(xlabel="head", ylabel="layer")
        ax.set_title(name, fontsize=10)
    parts = []
    for name, s in scores.items():
        a = s.detach().float()
        i = int(a.argmax())
        parts.append(f"{name}: highest {float(a.max()):.2f} at layer {i // H}, head {i % H}")
    return finish(fig, f"Heat maps of {L} layers by {H} heads, one per measure. " + "; ".join(parts))


def plot_similarity(matrix: torch.Tensor, title: str = "", xlabel: str = "", ylabel: str = "") -> Figure:
    """A square matrix of similarities (e.g. cosine similarity of position embeddings) as a heat map."""
    fig, ax = plt.subplots(figsize=(4.4, 3.8))
    im = ax.imshow(matrix.detach().float().cpu().numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return finish(fig, f"{title or 'similarity'}: heat map of a {matrix.shape[0]} by {matrix.shape[1]} similarity "
                       "matrix, from -1 (blue) to 1 (red)")


def plot_loss_by_position(curves: Mapping[str, torch.Tensor], trained_length: int | None, smooth: int = 8,
                          title: str = "") -> Figure:
    """Loss at every position, one line per model (a running mean over ``smooth`` positions), with
    the trained length marked (``None``: the curves stay inside it, nothing to mark)."""
    fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN, 3.6))
    for name, c in curves.items():
        y = c.detach().float().cpu().numpy()
        k = max(1, min(smooth, len(y)))
        ys = np.convolve(y, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(len(ys)) + (k - 1) / 2, ys, label=name)
    if trained_length is not None:
        ax.axvline(trained_length - 0.5, color="k", ls="--", lw=1, label=f"trained length ({trained_length})")
    ax.set(xlabel="position in the sequence", ylabel="loss (nats per token)", title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return finish(fig, f"{title or 'loss per position'}: loss against the position in the sequence for "
                       + ", ".join(f"{n} (mean {float(c.float().mean()):.2f})" for n, c in curves.items())
                       + (f"; trained length {trained_length}" if trained_length is not None else ""))


def plot_kv_cache(rows: Sequence[Mapping], tokens_key: str = "tokens", label_key: str = "model",
                  bytes_key: str = "bytes", limit_bytes: float | None = None) -> Figure:
    """Grouped bars (GB, log scale): the KV cache of each model at each number of tokens."""
    models = list(dict.fromkeys(r[label_key] for r in rows))
    lengths = list(dict.fromkeys(r[tokens_key] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(lengths)
    x = np.arange(len(models))
    for i, n in enumerate(lengths):
        vals = [next(r[bytes_key] for r in rows if r[label_key] == m and r[tokens_key] == n) / 1e9 for m in models]
        bars = ax.bar(x + (i - (len(lengths) - 1) / 2) * width, vals, width, label=f"{n:,} tokens")
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.2g}", ha="center", va="bottom", fontsize=8)
    if limit_bytes is not None:
        ax.axhline(limit_bytes / 1e9, color="k", ls="--", lw=1)
    ax.set_xticks(x, [textwrap.fill(m, 16) for m in models])  # long model names side by side run into each other
    ax.set(yscale="log", ylabel="GB (10⁹ bytes)", title="KV cache of one conversation (bf16)")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 1.6)  # room for the numbers above the highest bar
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return finish(fig, "Grouped bars, log scale: the KV cache in GB of " + "; ".join(
        f"{r[label_key]} at {r[tokens_key]:,} tokens {r[bytes_key] / 1e9:.2g}" for r in rows))


def plot_step_times(series: Mapping[str, Sequence[float]], xlabel: str = "generation step",
                    title: str = "time of each generation step", window: int = 9) -> Figure:
    """Milliseconds per step (log y), one colour per series: every step thin and pale, and a running
    median over ``window`` steps bold (on a shared machine single steps can be slowed by other programs)."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for name, times in series.items():
        ms = np.asarray(times, dtype=float) * 1e3
        line, = ax.plot(np.arange(len(ms)), ms, lw=0.8, alpha=0.35)
        k = max(1, min(window, len(ms)))
        med = np.array([np.median(ms[max(0, i - k // 2): i + k // 2 + 1]) for i in range(len(ms))])
        ax.plot(np.arange(len(ms)), med, color=line.get_color(), lw=2, label=f"{name} (running median)")
    ax.set(xlabel=xlabel, ylabel="ms", yscale="log", title=title)
    ax.legend()
    return finish(fig, f"{title}: milliseconds per step against {xlabel}, log scale: " + ", ".join(
        f"{name} median {float(np.median(t)) * 1e3:.3g} ms" for name, t in series.items()))
