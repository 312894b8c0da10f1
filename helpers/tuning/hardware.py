"""Hardware limits of a search space, checked before any trial starts.

A search space is a box; its most expensive corner (the largest model at the largest batch) decides
whether every trial fits into memory. ``corner_memory`` counts one training step at each corner of
the memory-relevant axes, and ``fit_batch_size`` shrinks the batch-size range until every corner
fits, so a study never starts a trial that the machine would kill (or that would swap for minutes).

How a corner is counted (``helpers.memory.training_memory``): parameters, gradients and AdamW's two
moments from the parameter count, and the activations autograd saves, watched in one forward pass
at batch sizes 1 and 2 and extended along the line they define (each further window of a batch
saves the same tensors again). Only batches of one and two windows are run, so a corner that would not fit is never allocated.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from helpers.tuning.spaces import validate_space

# The axes that change the memory of a step; any other hyperparameter keeps its value at every corner.
MEMORY_AXES = ("n_layer", "n_embd", "batch_size")


def _heads(width: int) -> int:
    """The head count ``GPTObjective`` uses: up to 4 heads of at least 16 channels each."""
    heads = max(1, min(4, width // 16))
    while width % heads:
        heads -= 1
    return heads


def _line(n_layer: int, n_embd: int, vocab_size: int, block_size: int, optimizer: str) -> tuple[dict[str, int], int, int]:
    """Weights/gradients/optimizer bytes, and the activations as ``fixed + per_window * batch``,
    from forward passes at batch sizes 1 and 2 (the saved tensors grow exactly linearly in the batch)."""
    import torch

    from helpers.memory import training_memory
    from helpers.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=n_layer, n_head=_heads(n_embd),
                          n_embd=n_embd, dropout=0.0))
    acts = []
    for batch in (1, 2):
        x = torch.randint(0, vocab_size, (batch, block_size))  # (batch, T)
        report = training_memory(model, lambda x=x: model.loss(x, x), optimizer=optimizer, measure=False)
        acts.append(report.activations)
    states = {"parameters": report.parameters, "gradients": report.gradients, "optimizer_state": report.optimizer_state}
    per_window = acts[1] - acts[0]
    return states, acts[0] - per_window, per_window


def step_memory(n_layer: int, n_embd: int, batch_size: int, *, vocab_size: int, block_size: int,
                optimizer: str = "adamw") -> dict[str, int]:
    """Counted bytes of one training step of the course's GPT: ``parameters``, ``gradients``,
    ``optimizer_state``, ``activations`` (at ``batch_size`` windows) and their ``total``.
    Only batches of one and two windows are run."""
    for name, value in (("n_layer", n_layer), ("n_embd", n_embd), ("batch_size", batch_size),
                        ("vocab_size", vocab_size), ("block_size", block_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    states, fixed, per_window = _line(n_layer, n_embd, vocab_size, block_size, optimizer)
    row = {**states, "activations": fixed + per_window * batch_size}
    row["total"] = sum(row.values())
    return row


def _corners(space: Mapping[str, Mapping[str, Any]], fixed: Mapping[str, Any]) -> list[dict[str, int]]:
    axes = []
    for name in MEMORY_AXES:
        if name in space:
            axes.append([(name, space[name]["low"]), (name, space[name]["high"])])
        elif name in fixed:
            axes.append([(name, fixed[name])])
        else:
            raise ValueError(f"{name!r} is neither in the space nor in fixed; the memory of a step depends on it")
    return [dict(c) for c in itertools.product(*axes)]


def corner_memory(space: Mapping[str, Mapping[str, Any]], *, vocab_size: int, block_size: int,
                  limit_bytes: float, fixed: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per corner of ``space`` on the axes ``n_layer``, ``n_embd``, ``batch_size`` (values
    from ``fixed`` where an axis is not searched): the corner, its counted bytes and ``fits``
    (``total <= limit_bytes``). Sorted from the smallest to the largest step."""
    validate_space(space)
    if not isinstance(limit_bytes, (int, float)) or isinstance(limit_bytes, bool) or not 0 < limit_bytes < math.inf:
        raise ValueError(f"limit_bytes must be a positive finite number, got {limit_bytes!r}")
    fixed = dict(fixed or {})
    per_model: dict[tuple[int, int], tuple[dict[str, int], int, int]] = {}
    rows = []
    for corner in _corners(space, fixed):
        key = (corner["n_layer"], corner["n_embd"])
        if key not in per_model:  # one model per (layers, width); the batch only scales the activations
            per_model[key] = _line(*key, vocab_size, block_size, "adamw")
        states, base, per_window = per_model[key]
        acts = base + per_window * corner["batch_size"]
        total = sum(states.values()) + acts
        rows.append({**corner, "weights_grads_adam": sum(states.values()), "activations": acts, "total": total,
                     "fits": total <= limit_bytes})
    return sorted(rows, key=lambda r: r["total"])


def fit_batch_size(space: Mapping[str, Mapping[str, Any]], *, vocab_size: int, block_size: int,
                   limit_bytes: float) -> dict[str, dict[str, Any]]:
    """A copy of ``space`` whose ``batch_size`` range ends at the largest batch that fits
    ``limit_bytes`` at the space's largest model (``n_layer`` and ``n_embd`` at their highs).

    Raises ``ValueError`` when even the smallest batch does not fit: then the model range itself
    must shrink, which is a decision about what the search is for, not a bookkeeping step.
    """
    validate_space(space)
    if "batch_size" not in space:
        raise ValueError(f"space has no 'batch_size' to fit; its keys are {sorted(space)}")
    for name in ("n_layer", "n_embd"):
        if name not in space:
            raise ValueError(f"space has no {name!r}; fit_batch_size sizes the batch for the largest model")
    states, base, per_window = _line(space["n_layer"]["high"], space["n_embd"]["high"], vocab_size, block_size, "adamw")
    room = limit_bytes - sum(states.values()) - base  # what is left for the windows' activations
    largest = int(room // per_window)
    low = space["batch_size"]["low"]
    if largest < low:
        raise ValueError(f"even batch_size={low} does not fit limit_bytes={limit_bytes:.3g} at n_layer="
                         f"{space['n_layer']['high']}, n_embd={space['n_embd']['high']}; shrink the model range")
    fitted = {k: dict(v) for k, v in space.items()}
    fitted["batch_size"]["high"] = min(space["batch_size"]["high"], largest)
    return fitted
