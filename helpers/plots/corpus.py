"""Plots for the corpus, tokenizer and end-to-end notebook (03): token statistics and a loss curve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def plot_loss_curve(steps: Sequence[int], train_loss: Sequence[float], eval_steps: Sequence[int] = (),
                    val_loss: Sequence[float] = (), baselines: Mapping[str, float] | None = None,
                    title: str = "training") -> Figure:
    """Training (and validation) loss per step, with horizontal lines for reference losses
    such as the uniform guess (ln V) and the unigram baseline."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(steps, train_loss, lw=1, alpha=0.8, label="train loss")
    if len(val_loss):
        ax.plot(eval_steps, val_loss, "o-", ms=4, label="validation loss")
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, ls="--", lw=1, color=f"C{i + 2}", label=f"{name} ({value:.2f})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_token_counts(labels: Sequence[str], counts: Sequence[int], title: str = "most frequent tokens",
                      xlabel: str = "count") -> Figure:
    """A horizontal bar per token (``labels`` as printed pieces, e.g. from ``token_str``)."""
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(labels) + 1))
    y = range(len(labels))
    ax.barh(list(y), list(counts), color="C0")
    # plain text: a token such as ' $$' would otherwise be parsed as mathtext (and fail)
    ax.set_yticks(list(y), [repr(s) for s in labels], fontsize=8, family="monospace", parse_math=False)
    ax.invert_yaxis()  # the most frequent at the top
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig
