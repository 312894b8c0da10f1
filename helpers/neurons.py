"""Single neurons, toy data and gradient checks: the small objects of notebooks 01 and 02.

A neuron computes ``activation(w · x + b)``. Everything here works on small float tensors so that
the numbers can be printed and read; nothing here trains a GPT.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

#: The activation functions the notebooks use, by name. "step" fires (1) when its input is > 0.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "step": lambda z: (z > 0).to(z.dtype),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda z: z,
}


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation function called ``name`` (one of ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


def _as_float(x: object, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if not (t.is_floating_point() or t.dtype in (torch.int64, torch.int32)):
        raise ValueError(f"{name} must hold numbers, got dtype {t.dtype}")
    return t if t.is_floating_point() else t.double()


def neuron(x: object, w: object, b: float, act: str = "step") -> torch.Tensor:
    """One neuron: ``act(x @ w + b)`` for inputs ``x`` (D,) or (N, D) and weights ``w`` (D,)."""
    x, w = _as_float(x, "x"), _as_float(w, "w")
    if w.dim() != 1:
        raise ValueError(f"w must be a 1-D tensor (one weight per input), got shape {tuple(w.shape)}")
    if x.shape[-1:] != w.shape:
        raise ValueError(f"x must end in {w.shape[0]} inputs to match w, got shape {tuple(x.shape)}")
    if not math.isfinite(float(b)):
        raise ValueError(f"b must be a finite number, got {b!r}")
    w = w.to(x.dtype if x.is_floating_point() else w.dtype)
    return activation(act)(x.to(w.dtype) @ w + float(b))  # (N,) or ()


def toy_data(kind: str = "near_far", n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D data set of ``n`` points with labels 0/1: ``(x (n, 2) float32, y (n,) float32)``.

    ``"near_far"``: class 0 sits around (1, 1), class 1 further out around (2.5, 2.5) on the same
    ray from the origin, so no line through the origin separates them: a neuron needs a bias.
    ``"opposite"``: the classes sit on opposite sides of the origin, so weights alone suffice.
    """
    centres = {"near_far": ((1.0, 1.0), (2.5, 2.5)), "opposite": ((-1.2, -0.8), (1.2, 0.8))}
    if kind not in centres:
        raise ValueError(f"kind must be one of {sorted(centres)}, got {kind!r}")
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % 2).float()  # alternate labels: balanced classes
    mean = torch.tensor(centres[kind])[y.long()]  # (n, 2)
    x = mean + 0.35 * torch.randn(n, 2, generator=g)
    return x, y


def accuracy(x: torch.Tensor, y: torch.Tensor, w: object, b: float) -> float:
    """Fraction of points the neuron ``step(w · x + b)`` labels like ``y``."""
    fired = neuron(x, w, b, "step")
    return float((fired == y.to(fired.dtype)).double().mean())


def best_accuracy_through_origin(x: torch.Tensor, y: torch.Tensor, n_angles: int = 720) -> tuple[float, torch.Tensor]:
    """The best accuracy of a 2-D neuron with bias 0, trying ``n_angles`` weight directions.

    With ``b = 0`` the boundary ``w · x = 0`` always passes through the origin; the length of ``w``
    does not move it, only its direction does, so a sweep over directions finds the best one.
    """
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (N, 2), got {tuple(x.shape)}")
    angles = torch.arange(n_angles, dtype=torch.float64) * (2 * math.pi / n_angles)
    ws = torch.stack([angles.cos(), angles.sin()], dim=1)  # (A, 2) unit vectors
    fired = (x.double() @ ws.T > 0).double()  # (N, A)
    acc = (fired == y.double()[:, None]).double().mean(0)  # (A,)
    best = int(acc.argmax())
    return float(acc[best]), ws[best].float()


def boundary_segment(w: Sequence[float], b: float, box: tuple[float, float, float, float] = (-1.0, 4.0, -1.0, 4.0)
                     ) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The part of the line ``w0·x0 + w1·x1 + b = 0`` inside ``box = (x0min, x0max, x1min, x1max)``.

    Returns two end points, or None when both weights are 0 (then there is no line: the neuron's
    output is the same everywhere) or when the line misses the box.
    """
    w0, w1 = float(w[0]), float(w[1])
    x0min, x0max, x1min, x1max = box
    points = []
    if w1 != 0:  # crossings with the left and right edges
        for x0 in (x0min, x0max):
            x1 = -(w0 * x0 + b) / w1
            if x1min <= x1 <= x1max:
                points.append((x0, x1))
    if w0 != 0:  # crossings with the bottom and top edges
        for x1 in (x1min, x1max):
            x0 = -(w1 * x1 + b) / w0
            if x0min <= x0 <= x0max:
                points.append((x0, x1))
    unique = list(dict.fromkeys(points))
    if len(unique) < 2:
        return None
    return unique[0], unique[-1]


def neuron_report(x: torch.Tensor, y: torch.Tensor, w: Sequence[float], b: float) -> str:
    """One line describing a 2-D neuron on a data set: its rule, its accuracy, where it crosses."""
    acc = accuracy(x, y, torch.tensor([float(w[0]), float(w[1])]), b)
    rule = f"fires when {float(w[0]):+.2f}·x0 {float(w[1]):+.2f}·x1 {float(b):+.2f} > 0"
    if w[0] == 0 and w[1] == 0:
        where = "no boundary: with both weights 0 only the bias decides, the same everywhere"
    else:
        # distance of the boundary from the origin: |b| / |w|; growing |w| moves it back towards 0
        where = f"boundary {abs(b) / math.hypot(w[0], w[1]):.2f} from the origin"
    return f"{rule}   accuracy {acc:.0%}   {where}"


@contextlib.contextmanager
def biases_zeroed(module: torch.nn.Module) -> Iterator[list[str]]:
    """Inside the ``with`` block every bias of ``module`` (and of its submodules) is 0; restored after.

    Yields the names of the zeroed tensors. Restoring copies the saved values back, so the model is
    bit-for-bit what it was, even if the block raises.
    """
    biases = {n: p for n, p in module.named_parameters() if n == "bias" or n.endswith(".bias")}
    if not biases:
        raise ValueError(f"module must have at least one bias parameter, got a {type(module).__name__} without any")
    saved = {n: p.detach().clone() for n, p in biases.items()}
    try:
        with torch.no_grad():
            for p in biases.values():
                p.zero_()
        yield list(biases)
    finally:
        with torch.no_grad():
            for n, p in biases.items():
                p.copy_(saved[n])


def bias_ablation(loss_fn: Callable[[], float], modules: Mapping[str, torch.nn.Module]) -> dict[str, float]:
    """How much ``loss_fn()`` rises when the biases of one module at a time are zeroed.

    ``modules`` maps a label to a module (a layer, a block or the whole model); all biases inside it
    are zeroed together, then restored before the next. Returns label -> loss increase.
    """
    base = loss_fn()
    effects = {}
    for label, module in modules.items():
        with biases_zeroed(module):
            effects[label] = loss_fn() - base
    return effects


# ---------------------------------------------------------------------------------------------
# A two-parameter model (y = w·x + b) for loss landscapes and gradient descent
# ---------------------------------------------------------------------------------------------

def line_data(n: int = 50, w: float = 2.0, b: float = -1.0, noise: float = 0.3, seed: int = 0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``(x, y)`` with ``y = w·x + b + noise``, x uniform in [-1, 1]; both (n,) float64."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1
    return x, w * x + b + noise * torch.randn(n, generator=g, dtype=torch.float64)


def loss_surface(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 ws: Sequence[float], bs: Sequence[float]) -> torch.Tensor:
    """``loss_fn(w, b)`` on every grid point: a tensor (len(bs), len(ws)), rows = b, columns = w."""
    with torch.no_grad():
        return torch.tensor([[float(loss_fn(torch.tensor(w), torch.tensor(b))) for w in ws] for b in bs])


def gradient_descent(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], start: tuple[float, float],
                     lr: float, steps: int) -> list[dict[str, float]]:
    """Plain gradient descent on two parameters; one row per step: w, b, loss, dL/dw, dL/db.

    The gradients come from autograd; the update is ``p <- p - lr * dL/dp``, nothing else.
    """
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    w = torch.tensor(float(start[0]), dtype=torch.float64, requires_grad=True)
    b = torch.tensor(float(start[1]), dtype=torch.float64, requires_grad=True)
    rows = []
    for step in range(steps + 1):
        loss = loss_fn(w, b)
        gw, gb = torch.autograd.grad(loss, (w, b))
        rows.append(dict(step=step, w=w.item(), b=b.item(), loss=loss.item(), grad_w=gw.item(), grad_b=gb.item()))
        if step < steps:
            with torch.no_grad():
                w -= lr * gw
                b -= lr * gb
    return rows


# ---------------------------------------------------------------------------------------------
# Gradient checks
# ---------------------------------------------------------------------------------------------

@dataclass
class GradComparison:
    """One row of a gradient comparison: is ``ours`` exactly / nearly ``reference``?"""

    name: str
    exact: bool
    close: bool
    max_diff: float
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return (f"{self.name:<14} | exact: {str(self.exact):5} | close: {str(self.close):5} "
                f"| max difference: {self.max_diff:.2e}")


def compare_grads(name: str, ours: torch.Tensor, autograd: torch.Tensor, rtol: float = 1e-5,
                  atol: float = 1e-8) -> GradComparison:
    """Compare a hand-derived gradient with autograd's: exact equality, closeness, max |difference|."""
    ours, autograd = torch.as_tensor(ours).detach(), torch.as_tensor(autograd).detach()
    if ours.shape != autograd.shape:
        raise ValueError(f"{name}: ours has shape {tuple(ours.shape)}, autograd {tuple(autograd.shape)}; they must match")
    diff = (ours.double() - autograd.double()).abs()
    return GradComparison(
        name=name,
        exact=bool(torch.equal(ours, autograd)),
        close=bool(torch.allclose(ours.double(), autograd.double(), rtol=rtol, atol=atol)),
        max_diff=float(diff.max()) if diff.numel() else 0.0,
        shape=tuple(ours.shape),
    )


def comparison_table(rows: Sequence[GradComparison]) -> str:
    """The rows as lines of text, one per tensor, in the order given."""
    return "\n".join(str(r) for r in rows)


def finite_difference_grads(f: Callable[[], torch.Tensor], params: Mapping[str, torch.Tensor],
                            eps: float = 1e-6) -> dict[str, torch.Tensor]:
    """Gradients of the scalar ``f()`` by central differences: (f(p + eps) - f(p - eps)) / (2 eps).

    ``f`` takes no arguments and reads ``params``; each entry is nudged in place and restored, one
    number at a time, so this costs two calls of ``f`` per parameter: only for tiny models. Use
    float64 parameters: in float32 the rounding error of f swamps the difference for small eps.
    """
    if not (isinstance(eps, (int, float)) and eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    grads = {}
    with torch.no_grad():
        for name, p in params.items():
            g = torch.zeros_like(p, dtype=torch.float64)
            flat, gflat = p.view(-1), g.view(-1)
            for i in range(flat.numel()):
                old = flat[i].item()
                flat[i] = old + eps
                up = float(f())
                flat[i] = old - eps
                down = float(f())
                flat[i] = old
                gflat[i] = (up - down) / (2 * eps)
            grads[name] = g
    return grads


def grad_check(f: Callable[[], torch.Tensor], params: Mapping[str, torch.Tensor], eps: float = 1e-6,
               rtol: float = 1e-5, atol: float = 1e-7) -> list[GradComparison]:
    """Autograd's gradient of ``f()`` against finite differences, one ``GradComparison`` per parameter.

    ``params`` maps names to leaf tensors with ``requires_grad=True`` (float64 recommended).
    "exact" is expected to be False here: finite differences are only ever close.
    """
    for name, p in params.items():
        if not p.requires_grad:
            raise ValueError(f"params[{name!r}] must have requires_grad=True to compare with autograd")
    names = list(params)
    auto = torch.autograd.grad(f(), [params[n] for n in names])
    numeric = finite_difference_grads(f, params, eps)
    return [compare_grads(n, a.double(), numeric[n], rtol=rtol, atol=atol) for n, a in zip(names, auto)]
