"""Plots for notebooks 01 and 02: neurons, decision boundaries, loss landscapes, parameter histograms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from helpers.neurons import ACTIVATIONS, boundary_segment
from helpers.plots.style import MAX_WIDTH_IN, finish

_BOX = (-1.0, 4.0, -1.0, 4.0)


def plot_decision_boundary(x: torch.Tensor, y: torch.Tensor, w: Sequence[float], b: float,
                           box: tuple[float, float, float, float] = _BOX, title: str | None = None,
                           ax: plt.Axes | None = None) -> Figure:
    """Points coloured by label, the neuron's boundary ``w·x + b = 0`` and the side where it fires."""
    own = ax is None
    fig, ax = (plt.subplots(figsize=(4.5, 4.5)) if own else (ax.figure, ax))
    x0min, x0max, x1min, x1max = box
    g0, g1 = np.meshgrid(np.linspace(x0min, x0max, 200), np.linspace(x1min, x1max, 200))
    fires = (float(w[0]) * g0 + float(w[1]) * g1 + float(b)) > 0
    ax.contourf(g0, g1, fires.astype(float), levels=[-0.5, 0.5, 1.5], colors=["#dde6f5", "#f8dcd4"], alpha=0.8)
    xs, ys = x.numpy(), y.numpy()
    ax.scatter(xs[ys == 0, 0], xs[ys == 0, 1], s=14, c="tab:blue", label="class 0")
    ax.scatter(xs[ys == 1, 0], xs[ys == 1, 1], s=14, c="tab:red", label="class 1")
    seg = boundary_segment(w, b, box)
    if seg is not None:
        ax.plot([seg[0][0], seg[1][0]], [seg[0][1], seg[1][1]], "k-", lw=2, label="boundary w·x + b = 0")
    if float(w[0]) or float(w[1]):  # the weight vector points to the side where the neuron fires
        ax.annotate("", xy=(float(w[0]) * 0.5, float(w[1]) * 0.5), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="->", color="k"))
    ax.plot([0], [0], "k+", ms=10)
    ax.set(xlim=(x0min, x0max), ylim=(x1min, x1max), xlabel="input x0", ylabel="input x1",
           title=title or f"w = ({float(w[0]):.2f}, {float(w[1]):.2f}), b = {float(b):.2f}")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8)
    return finish(fig, f"{ax.get_title()}: {int((ys == 0).sum())} points of class 0 and {int((ys == 1).sum())} of "
                       f"class 1 in the plane of the two inputs, the neuron's boundary line and the side where it "
                       "fires shaded red", layout=False)


def plot_activations(names: Sequence[str] = ("step", "sigmoid", "tanh", "relu")) -> Figure:
    """The activation functions side by side on z in [-4, 4]."""
    z = torch.linspace(-4, 4, 401)
    fig, axes = plt.subplots(1, len(names), figsize=(min(2.4 * len(names), MAX_WIDTH_IN), 2.6), sharex=True)
    for ax, name in zip(np.atleast_1d(axes), names):
        ax.plot(z, ACTIVATIONS[name](z))
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set(title=name, xlabel="z = w·x + b")
    return finish(fig, f"The activation functions {', '.join(names)} plotted for z from -4 to 4")


def plot_loss_landscape(ws: Sequence[float], bs: Sequence[float], surface: torch.Tensor,
                        path: Sequence[Mapping[str, float]] | None = None, title: str = "loss landscape") -> Figure:
    """Contours of the loss over (w, b); ``path`` (rows with "w", "b") drawn as the descent's steps."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    levels = np.geomspace(max(float(surface.min()), 1e-3), float(surface.max()), 20)
    cs = ax.contour(np.asarray(ws), np.asarray(bs), surface.numpy(), levels=levels, cmap="viridis")
    fig.colorbar(cs, ax=ax, label="loss")
    if path:
        pw, pb = [r["w"] for r in path], [r["b"] for r in path]
        ax.plot(pw, pb, "o-", color="tab:red", ms=3, lw=1, label="gradient descent")
        ax.plot(pw[0], pb[0], "s", color="tab:red", ms=7, label="start")
        ax.legend()
    ax.set(xlabel="weight w", ylabel="bias b", title=title)
    i = int(surface.argmin())
    best = f"; the lowest loss {float(surface.min()):.3g} is near w = {float(ws[i % len(ws)]):.2f}, b = {float(bs[i // len(ws)]):.2f}"
    steps = f"; gradient descent takes {len(path) - 1} steps from w = {path[0]['w']:.2f}, b = {path[0]['b']:.2f}" if path else ""
    return finish(fig, f"{title}: contour plot of the loss over weight w and bias b{best}{steps}", layout=False)


def plot_descent(rows: Sequence[Mapping[str, float]]) -> Figure:
    """Loss, weight and bias against the step of a gradient-descent run."""
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(MAX_WIDTH_IN, 2.8))
    for ax, key in zip(axes, ("loss", "w", "b")):
        ax.plot(steps, [r[key] for r in rows], ".-")
        ax.set(xlabel="step", title=key)
    axes[0].set_yscale("log")
    return finish(fig, f"Loss (log scale), weight and bias against the step of gradient descent: after {steps[-1]} "
                       f"steps loss {rows[-1]['loss']:.3g}, w = {rows[-1]['w']:.3f}, b = {rows[-1]['b']:.3f}")


def plot_parameter_histograms(groups: Mapping[str, torch.Tensor], bins: int = 60) -> Figure:
    """One histogram per named group of parameter values (e.g. all weights, all biases of a model)."""
    n = len(groups)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(min(3.0 * cols, MAX_WIDTH_IN), 2.8 * rows), squeeze=False)
    for ax, (name, values) in zip(axes.flat, groups.items()):
        v = values.detach().float().flatten().cpu().numpy()
        ax.hist(v, bins=bins, color="tab:blue")
        ax.set_yscale("log")
        ax.set(title=f"{name}\n({v.size:,} values)", xlabel="value")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return finish(fig, "Histograms (log counts) of the parameter values of " + ", ".join(
        f"{name} ({v.numel():,} values, from {float(v.min()):.2g} to {float(v.max()):.2g})" for name, v in groups.items()))


def plot_curve(xs: Sequence[float], ys: Sequence[float], xlabel: str = "", ylabel: str = "", title: str = "",
               logx: bool = False, logy: bool = False) -> Figure:
    """One line with markers, optionally on log axes."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(list(xs), list(ys), "o-")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    xs, ys = list(xs), list(ys)
    return finish(fig, f"{title}: line chart of {ylabel} against {xlabel}, from {ys[0]:.3g} at {xs[0]:.3g} to "
                       f"{ys[-1]:.3g} at {xs[-1]:.3g}")


def plot_parameter_trajectories(history: Mapping[str, Sequence[torch.Tensor]], losses: Sequence[float]) -> Figure:
    """Every parameter's value against the step (one panel per tensor), and the loss."""
    n = len(history) + 1
    fig, axes = plt.subplots(1, n, figsize=(min(2.8 * n, MAX_WIDTH_IN), 2.9))
    for ax, (name, snapshots) in zip(axes, history.items()):
        values = torch.stack([s.flatten() for s in snapshots]).numpy()  # (steps, numbers in the tensor)
        ax.plot(values, lw=1.2)
        ax.set(title=name, xlabel="step")
    axes[-1].plot(losses, color="k")
    axes[-1].set(title="loss", xlabel="step", yscale="log")
    return finish(fig, f"The values of {', '.join(history)} against the step, and the loss (log scale) falling "
                       f"from {losses[0]:.3g} to {losses[-1]:.3g}")
