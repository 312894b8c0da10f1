"""Plots for hyperparameter optimisation (notebook 11). Each takes plain data and returns a Figure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from helpers.plots.style import MAX_WIDTH_IN, finish

Point = tuple[float, float]


def plot_grid_vs_random(grid: Sequence[Point], rand: Sequence[Point], x_opt: float | None = None,
                        contour: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Figure:
    """Grid and random trials side by side, with their projections onto each axis as tick marks.

    The projection onto the important axis (x) is what matters: a grid of n x n points tries only
    n distinct values there, random search as many as it has trials.
    """
    fig, axes = plt.subplots(1, 2, figsize=(MAX_WIDTH_IN, 4.6), sharey=True)
    for ax, (name, pts) in zip(axes, (("grid", grid), ("random", rand))):
        xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        if contour is not None:
            ax.contourf(*contour, levels=20, cmap="Blues_r", alpha=0.6)
        ax.scatter(xs, ys, s=36, color="tab:orange", edgecolor="k", zorder=3)
        # projections: one tick per distinct value, drawn just outside the square
        ax.plot(xs, np.full_like(xs, -0.06), "|", color="tab:red", ms=14, mew=2, clip_on=False)
        ax.plot(np.full_like(ys, -0.06), ys, "_", color="tab:gray", ms=14, mew=2, clip_on=False)
        if x_opt is not None:
            ax.axvline(x_opt, color="k", ls="--", lw=1, label=f"best x = {x_opt:.2f}")
        ax.set(xlim=(-0.1, 1.02), ylim=(-0.1, 1.02), xlabel="x (important)",
               title=f"{name}: {len(pts)} trials, {len(set(xs.round(9)))} distinct x values")
    axes[0].set_ylabel("y (hardly matters)")
    if x_opt is not None:  # beside the panels: a grid has trials in every corner
        axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    counts = [len(set(np.round([p[0] for p in pts], 9))) for pts in (grid, rand)]
    return finish(fig, f"Trials of grid search ({len(grid)}) and random search ({len(rand)}) in the plane of an "
                       f"important x and an unimportant y: the grid tries {counts[0]} distinct x values, random search "
                       f"{counts[1]}")


def plot_best_so_far(curves: Mapping[str, Sequence[float] | Sequence[Sequence[float]]], ylabel: str = "best validation loss so far",
                     title: str = "Best value found vs. number of trials") -> Figure:
    """One line per strategy; a strategy given several runs (one list per seed) is drawn as its
    median with the range between the best and the worst run shaded."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, runs in curves.items():
        arr = np.array(runs, dtype=float)
        arr = arr[None, :] if arr.ndim == 1 else arr
        x = np.arange(1, arr.shape[1] + 1)
        (line,) = ax.plot(x, np.nanmedian(arr, axis=0), marker="o", ms=3, label=name)
        if arr.shape[0] > 1:
            ax.fill_between(x, np.nanmin(arr, axis=0), np.nanmax(arr, axis=0), color=line.get_color(), alpha=0.15)
    ax.set(xlabel="trials", ylabel=ylabel, title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    ends = []
    for name, runs in curves.items():
        arr = np.array(runs, dtype=float)
        arr = arr[None, :] if arr.ndim == 1 else arr
        ends.append(f"{name} ends at a median {float(np.nanmedian(arr[:, -1])):.3f}")
    return finish(fig, f"{title}: {ylabel} against the number of trials; " + ", ".join(ends))


def plot_learning_curves(curves: Sequence[tuple[Sequence[int], Sequence[float], bool]],
                         title: str = "Validation loss of every trial") -> Figure:
    """Intermediate values of each trial: ``(steps, values, pruned)``; pruned trials end in a cross."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for steps, values, pruned in curves:
        values = [v if math.isfinite(v) else np.nan for v in values]
        style = dict(color="tab:red", alpha=0.7, ls="--") if pruned else dict(color="tab:blue", alpha=0.8)
        ax.plot(steps, values, **style)
        if pruned and len(steps):
            ax.plot(steps[-1], values[-1], "x", color="tab:red", ms=8)
    ax.plot([], [], color="tab:blue", label="ran to the end")
    ax.plot([], [], color="tab:red", ls="--", marker="x", label="pruned")
    ax.set(xlabel="training step", ylabel="validation loss", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    pruned = sum(1 for c in curves if c[2])
    return finish(fig, f"{title}: validation loss against the training step for {len(curves)} trials, "
                       f"{pruned} of them pruned")


def plot_importances(importances: Mapping[str, float], title: str = "Hyperparameter importance") -> Figure:
    """Horizontal bars, most important on top."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:green")
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v:.2f}", va="center", fontsize=9)
    ax.set(xlabel="importance (sums to 1)", title=title, xlim=(0, max(v for _, v in items) * 1.2 or 1))
    return finish(fig, f"{title}: horizontal bars, " + ", ".join(f"{k} {v:.2f}" for k, v in reversed(items)))


def plot_param_slice(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], name: str, log: bool = True,
                     span: tuple[float, float] | None = None, ylabel: str = "validation loss") -> Figure:
    """Loss against one parameter for one or more studies; ``span`` shades a search space's range."""
    fig, ax = plt.subplots(figsize=(7, 4))
    if span is not None:
        ax.axvspan(*span, color="tab:orange", alpha=0.15, label="narrow search space")
    for label, (xs, ys) in series.items():
        ax.scatter(xs, ys, label=label, s=30, edgecolor="k")
    if log:
        ax.set_xscale("log")
    ax.set(xlabel=name, ylabel=ylabel, title=f"Loss against {name}")
    ax.legend()
    ax.grid(alpha=0.3)
    return finish(fig, f"Scatter plot of {ylabel} against {name} for " + ", ".join(
        f"{label} ({len(xs)} trials)" for label, (xs, _) in series.items())
        + (f"; the narrow search space from {span[0]:.2g} to {span[1]:.2g} shaded" if span is not None else ""))


def plot_val_vs_test(val: Sequence[float], test: Sequence[float], chosen: int | None = None) -> Figure:
    """Validation against test loss per trial; ``chosen`` (an index) marks the trial that won on validation."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.scatter(val, test, s=30, edgecolor="k", label="trials")
    lo, hi = min(min(val), min(test)), max(max(val), max(test))
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1, label="test = validation")
    if chosen is not None:
        ax.scatter([val[chosen]], [test[chosen]], s=120, marker="*", color="tab:red", zorder=3, label="best on validation")
    ax.set(xlabel="validation loss", ylabel="test loss", title="Validation vs. test loss")
    ax.legend()
    won = f"; the trial best on validation has test loss {test[chosen]:.3f}" if chosen is not None else ""
    return finish(fig, f"Scatter plot of test loss against validation loss for {len(val)} trials, with the line "
                       f"where they are equal{won}")


def plot_pareto(points: Sequence[Point], front: Sequence[Point], xlabel: str = "validation loss",
                ylabel: str = "cost", log_y: bool = False) -> Figure:
    """All trials and their Pareto front (no other trial is better in both objectives)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=30, color="lightgray", edgecolor="k", label="trials")
    f = sorted(front)
    ax.plot([p[0] for p in f], [p[1] for p in f], "o-", color="tab:red", label="Pareto front")
    if log_y:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title="Quality vs. cost")
    ax.legend()
    ax.grid(alpha=0.3)
    return finish(fig, f"Scatter plot of {ylabel} against {xlabel} for {len(points)} trials; the Pareto front of "
                       f"{len(front)} trials: " + ", ".join(f"{p[0]:.3g} at {p[1]:.3g}" for p in f))
