"""How much memory one training step needs, counted tensor by tensor.

Training holds four kinds of tensors at once:

- parameters: every weight, trainable or frozen (they all take part in the forward pass);
- gradients: one per *trainable* parameter, same size;
- optimizer state: AdamW keeps two running moments per trainable parameter (SGD with momentum one);
- activations saved for backward: the intermediate results autograd keeps from the forward pass
  until backward has used them. They grow with batch size x sequence length, not with the
  number of trainable parameters.

On a CPU, process-level numbers (RSS) mix all of this with the allocator's caching and whatever
else the process did, so ``training_memory`` counts instead: parameters, gradients and optimizer
state from the parameters' sizes, and activations by *watching* the forward pass with
``torch.autograd.graph.saved_tensors_hooks``, which sees every tensor autograd keeps. Each storage
is counted once (views share one), and storages that belong to parameters are not counted again.
Temporary workspace that dies inside one operation is not included, so this is the floor a step
cannot go below. On CUDA the same function also runs two real steps (with lr=0, so the weights
stay as they are) and reports ``torch.cuda.max_memory_allocated`` (``cuda_peak``), which includes
that workspace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

#: Optimizer state tensors kept per trainable parameter.
OPTIMIZER_STATES = {"adamw": 2, "adam": 2, "sgd": 0, "sgd_momentum": 1}


@dataclass
class MemoryReport:
    """Bytes that one training step holds at once, by kind."""

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    cuda_peak: int | None = None  # measured on CUDA (max_memory_allocated), else None

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.activations

    def as_row(self) -> dict[str, float]:
        """The report in MB (10**6 bytes), for tables."""
        row = {k: getattr(self, k) / 1e6 for k in ("parameters", "gradients", "optimizer_state", "activations", "total")}
        if self.cuda_peak is not None:
            row["cuda_peak"] = self.cuda_peak / 1e6
        return row


def _storage_key(t: torch.Tensor) -> tuple:
    s = t.untyped_storage()
    return (t.device, s.data_ptr())


def saved_activation_bytes(loss_fn: Callable[[], torch.Tensor], exclude: list[torch.Tensor] = ()) -> int:
    """Bytes of the distinct storages autograd saves while ``loss_fn()`` runs its forward pass.

    Storages of the ``exclude`` tensors (the parameters) are left out; the graph is discarded.
    """
    skip = {_storage_key(t) for t in exclude}
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in skip:
            seen[key] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    del loss  # frees the graph; nothing was trained
    return sum(seen.values())


def training_memory(model: nn.Module, loss_fn: Callable[[], torch.Tensor], optimizer: str = "adamw") -> MemoryReport:
    """Count the memory of one training step of ``model`` whose loss ``loss_fn()`` computes.

    ``loss_fn`` must run a forward pass of ``model`` (e.g. ``lambda: model.loss(x, y)``). The model's
    weights are not changed (on CUDA its ``.grad`` fields are cleared). See the module docstring for what is counted and why.
    """
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZER_STATES)}, got {optimizer!r}")
    params = list(model.parameters())  # tied tensors once
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("model has no trainable parameters (requires_grad=True); nothing would train")
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)
    report = MemoryReport(
        parameters=nbytes(params) + nbytes(list(model.buffers())),
        gradients=nbytes(trainable),
        optimizer_state=OPTIMIZER_STATES[optimizer] * nbytes(trainable),
        activations=saved_activation_bytes(loss_fn, exclude=params + list(model.buffers())),
    )
    device = params[0].device
    if device.type == "cuda":
        report.cuda_peak = _cuda_peak(model, loss_fn, optimizer)
    return report


def _cuda_peak(model: nn.Module, loss_fn: Callable[[], torch.Tensor], optimizer: str) -> int:
    """Measured CUDA bytes of a real step: parameters + the peak of the second of two steps.

    The optimizer runs with lr=0, so the weights do not change; gradients are cleared afterwards.
    The first step creates the optimizer state, the second is measured (its peak includes it).
    """
    device = next(model.parameters()).device
    trainable = [p for p in model.parameters() if p.requires_grad]
    if optimizer in ("adamw", "adam"):
        opt = torch.optim.AdamW(trainable, lr=0.0)
    else:
        opt = torch.optim.SGD(trainable, lr=0.0, momentum=0.9 if optimizer == "sgd_momentum" else 0.0)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)  # parameters, inputs, anything else already there
    for step in range(2):
        if step == 1:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        loss_fn().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before + param_bytes
    del opt
    return peak
