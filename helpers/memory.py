"""Memory, all of it in one place: bytes of parameters, gradients, optimiser state and activations.

From a parameter count alone: ``weight_bytes`` per number format, ``training_bytes`` for AdamW
training, ``memory_table`` for a list of models. Held by a real model: ``model_size_bytes`` (weights
and buffers), ``measured_training_bytes`` (weights, gradients, optimiser state after a step). The
optimisers and their state counts come from ``helpers.optimizers``, the table ``train`` uses.

How much memory one training step needs, counted tensor by tensor and measured:

Training holds four kinds of tensors:

- parameters: every weight, trainable or frozen (they all take part in the forward pass);
- gradients: one per *trainable* parameter, same size;
- optimizer state: AdamW keeps two running moments per trainable parameter (SGD with momentum one);
- activations saved for backward: the intermediate results autograd keeps from the forward pass
  until backward has used them. They grow with batch size x sequence length, not with the
  number of trainable parameters.

``training_memory`` reports both views:

- **counted**: parameters, gradients and optimizer state from the parameters' sizes, and the
  activations by *watching* one forward pass with ``torch.autograd.graph.saved_tensors_hooks``,
  which sees every tensor autograd keeps (each storage once; parameters are not counted again).
  ``total`` is their sum: what a step would hold if all of it were alive at one moment. It is not
  exactly the peak: backward frees each saved activation once it has used it while the gradients
  appear, so full training peaks lower than the sum, and the workspace of the largest operation
  (never saved) can push a step above it.
- **measured** (``peak``): two real training steps with ``lr = 0`` (the weights stay as they are).
  On CUDA, ``torch.cuda.max_memory_allocated``. Elsewhere PyTorch keeps no peak counter, so
  ``LiveTensorBytes`` (a ``TorchDispatchMode``, the mechanism PyTorch's own memory trackers use)
  sees every tensor each operation creates, adds its bytes while the storage lives and keeps the
  highest sum. Parameters and buffers, which exist before the step, are added to it. Process-level
  figures (RSS) also include the allocator's caching, so they are rougher than either.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from helpers.optimizers import OPTIMIZER_STATES, build_optimizer


@dataclass
class MemoryReport:
    """Bytes that one training step holds, by kind (counted), and its measured peak."""

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    peak: int | None = None  # measured over real steps; None when not measured
    peak_source: str | None = None  # "cuda allocator" or "live tensors"

    @property
    def total(self) -> int:
        """The counted sum of the four kinds."""
        return self.parameters + self.gradients + self.optimizer_state + self.activations

    def as_row(self) -> dict[str, float]:
        """The report in MB (10**6 bytes), for tables."""
        row = {k: getattr(self, k) / 1e6 for k in ("parameters", "gradients", "optimizer_state", "activations", "total")}
        if self.peak is not None:
            row["peak"] = self.peak / 1e6
        return row


class LiveTensorBytes(TorchDispatchMode):
    """Inside ``with LiveTensorBytes() as t:``, ``t.current`` is the bytes of the tensor storage
    created in the block and still alive, and ``t.peak`` the highest value it reached.

    Views share their input's storage and count nothing; a storage counts until it is freed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._alive: set[int] = set()

    def _freed(self, key: int, nbytes: int) -> None:
        self.current -= nbytes
        self._alive.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # outputs that share an input's storage are views: nothing new was allocated
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or key in inputs or key in self._alive:
                continue
            self._alive.add(key)
            self.current += nbytes
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._freed, key, nbytes)  # runs when the storage is freed
        return out


def peak_tensor_bytes(fn: Callable[..., object], *args: object) -> tuple[object, int]:
    """Run ``fn(*args)``; return its result and the peak bytes of tensors it had alive at once."""
    tracker = LiveTensorBytes()
    with tracker:
        result = fn(*args)
    return result, tracker.peak


def _storage_key(t: torch.Tensor) -> tuple:
    s = t.untyped_storage()
    return (t.device, s.data_ptr())


def saved_activation_bytes(loss_fn: Callable[[], torch.Tensor], exclude: list[torch.Tensor] = ()) -> int:
    """Bytes of the distinct storages autograd saves while ``loss_fn()`` runs its forward pass.

    Storages of the ``exclude`` tensors (the parameters) are left out; the graph is discarded.
    Under activation checkpointing the checkpointed regions save nothing here (they recompute).
    """
    skip = {_storage_key(t) for t in exclude}
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in skip:
            seen[key] = t.untyped_storage().nbytes()
        # Not ``t`` itself: an operation that saves its own output (a view, GELU, softmax) would then hold
        # that output through its saved value, and the output holds the operation as its grad_fn. That loop
        # runs through C++, where Python's garbage collector cannot see it, so the whole graph with every
        # activation would stay in memory after ``del loss``. A detached alias shares the storage (the
        # bytes are the same) without pointing back at the graph.
        return t.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    del loss  # frees the graph; nothing was trained
    return sum(seen.values())


# -- memory from parameter counts, and held by a model and its optimiser ----------------------------

#: Bytes per parameter of each number format (int4 packs two weights into a byte).
BYTES_PER_PARAMETER: dict[str, float] = {"fp32": 4.0, "bf16": 2.0, "int8": 1.0, "int4": 0.5}

#: Bytes per parameter for AdamW training, by component. Activations come on top (they grow with
#: batch size and sequence length, not with the parameter count alone).
TRAINING_BYTES: dict[str, dict[str, float]] = {
    # everything in fp32: what helpers.train does (its bf16 autocast only changes activations)
    "fp32": {"weights": 4, "grads": 4, "adam_m": 4, "adam_v": 4},
    # mixed precision as in large-scale training: bf16 weights and grads for the matmuls, plus an
    # fp32 master copy of the weights that the optimizer updates -> no saving on parameter memory
    "mixed": {"weights": 2, "grads": 2, "master_weights": 4, "adam_m": 4, "adam_v": 4},
    # everything in bf16 (no master copy): half the memory, but small updates get rounded away
    "bf16": {"weights": 2, "grads": 2, "adam_m": 2, "adam_v": 2},
}


def weight_bytes(n_params: int, fmt: str = "fp32") -> float:
    """Bytes to hold ``n_params`` weights in number format ``fmt`` (one of ``BYTES_PER_PARAMETER``)."""
    if fmt not in BYTES_PER_PARAMETER:
        raise ValueError(f"fmt must be one of {sorted(BYTES_PER_PARAMETER)}, got {fmt!r}")
    if not isinstance(n_params, int) or n_params < 0:
        raise ValueError(f"n_params must be an int >= 0, got {n_params!r}")
    return n_params * BYTES_PER_PARAMETER[fmt]


def training_bytes(n_params: int, precision: str = "fp32") -> dict[str, float]:
    """Bytes of weights, gradients and AdamW's two moments (plus "total") for ``n_params`` parameters."""
    if precision not in TRAINING_BYTES:
        raise ValueError(f"precision must be one of {sorted(TRAINING_BYTES)}, got {precision!r}")
    if not isinstance(n_params, int) or n_params < 0:
        raise ValueError(f"n_params must be an int >= 0, got {n_params!r}")
    parts = {k: n_params * v for k, v in TRAINING_BYTES[precision].items()}
    parts["total"] = sum(parts.values())
    return parts


def memory_table(counts: dict[str, int]) -> list[dict]:
    """One row per model: parameters, weight memory in each format, AdamW training memory (bytes)."""
    rows = []
    for name, n in counts.items():
        row = {"model": name, "parameters": n}
        row.update({fmt: weight_bytes(n, fmt) for fmt in BYTES_PER_PARAMETER})
        row.update({f"train_{p}": training_bytes(n, p)["total"] for p in TRAINING_BYTES})
        rows.append(row)
    return rows


def format_bytes(n: float) -> str:
    """Bytes in decimal units (1 GB = 10**9 bytes), e.g. ``498.0 MB``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def measured_training_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes actually held by the parameters, their gradients and the optimizer's state tensors.

    Call after at least one ``optimizer.step()`` (AdamW creates its moments lazily). Scalars such
    as AdamW's step counter are left out; tied tensors are counted once.
    """
    params = list(model.parameters())  # parameters() yields a tied tensor once
    out = {"weights": sum(p.numel() * p.element_size() for p in params),
           "grads": sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None),
           "optimizer_state": 0}
    for p in params:
        for t in optimizer.state.get(p, {}).values():
            if isinstance(t, torch.Tensor) and t.dim() > 0:
                out["optimizer_state"] += t.numel() * t.element_size()
    out["total"] = sum(out.values())
    return out

def model_size_bytes(model: nn.Module) -> int:
    """Bytes of all parameters and buffers, each shared tensor counted once."""
    seen, total = set(), 0
    for t in (*model.parameters(), *model.buffers()):
        key = (t.device, t.data_ptr(), t.numel(), t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


# -- one training step, counted and measured ----------------------------------------------------------


def training_memory(model: nn.Module, loss_fn: Callable[[], torch.Tensor], optimizer: str = "adamw",
                    measure: bool = True) -> MemoryReport:
    """Count, and with ``measure`` also measure, the memory of a training step of ``model``.

    ``loss_fn`` must run a forward pass of ``model`` (e.g. ``lambda: model.loss(x, y)``). The
    model's weights are not changed and its ``.grad`` fields are cleared. See the module docstring
    for what is counted and measured.
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
    if measure:
        if params[0].device.type == "cuda":
            report.peak, report.peak_source = _cuda_peak(model, loss_fn, optimizer), "cuda allocator"
        else:
            report.peak, report.peak_source = report.parameters + _live_peak(model, loss_fn, optimizer), "live tensors"
    return report


def _still_optimizer(model: nn.Module, optimizer: str) -> torch.optim.Optimizer:
    """The optimizer with lr=0: it builds its state like a real one but leaves the weights alone."""
    return build_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad], lr=0.0)


def _live_peak(model: nn.Module, loss_fn: Callable[[], torch.Tensor], optimizer: str) -> int:
    """Peak bytes of the tensors two real steps create (gradients, optimizer state, activations,
    workspace), tracked by ``LiveTensorBytes``."""
    opt = _still_optimizer(model, optimizer)
    model.zero_grad(set_to_none=True)
    tracker = LiveTensorBytes()
    with tracker:
        for _ in range(2):  # the first step creates the optimizer state, the second runs with it
            loss_fn().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    del opt
    return tracker.peak


def _cuda_peak(model: nn.Module, loss_fn: Callable[[], torch.Tensor], optimizer: str) -> int:
    """Measured CUDA bytes of a real step: parameters + the peak of the second of two steps."""
    device = next(model.parameters()).device
    opt = _still_optimizer(model, optimizer)
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
