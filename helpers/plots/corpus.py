"""Plots for the corpus and tokenizer (notebook 03): token statistics. Its loss curve is ``plots.training``'s."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from helpers.plots.style import finish


def plot_token_counts(labels: Sequence[str], counts: Sequence[int], title: str = "most frequent tokens",
                      xlabel: str = "count") -> Figure:
    """A horizontal bar per token (``labels`` as printed pieces, e.g. from ``token_str``)."""
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(labels) + 1.2))
    y = range(len(labels))
    ax.barh(list(y), list(counts), color="C0")
    # plain text: a token such as ' $$' would otherwise be parsed as mathtext (and fail)
    ax.set_yticks(list(y), [repr(s) for s in labels], fontsize=9, family="monospace", parse_math=False)
    ax.invert_yaxis()  # the most frequent at the top
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return finish(fig, f"{title}: horizontal bars of the {xlabel} of " + ", ".join(
        f"{s!r} {n:,}" for s, n in zip(labels, counts)))
