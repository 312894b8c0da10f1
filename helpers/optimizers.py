"""The optimisers of the course, as one table: ``train`` builds them and ``memory`` counts their state.

Adding an optimiser means one entry in ``OPTIMIZER_STATES`` and one branch in ``build_optimizer``;
``TrainConfig`` and ``training_memory`` then accept it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

#: Each optimiser by name, with the state tensors it keeps per trainable parameter (each the
#: parameter's size): momentum is one, Adam's two moments are two, RMSprop's running mean of squared
#: gradients one. Scalar counters (Adam's step) are left out.
OPTIMIZER_STATES: dict[str, int] = {"sgd": 0, "sgd_momentum": 1, "rmsprop": 1, "adam": 2, "adamw": 2}
OPTIMIZERS = tuple(OPTIMIZER_STATES)


def check_optimizer(name: object) -> str:
    """``name`` if it is one of ``OPTIMIZERS``, else a ValueError listing them."""
    if name not in OPTIMIZER_STATES:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    return name  # type: ignore[return-value]


def build_optimizer(name: str, params: Iterable[Any], lr: float, momentum: float = 0.9,
                    betas: tuple[float, float] = (0.9, 0.95), **kw: Any) -> torch.optim.Optimizer:
    """The torch optimiser ``name`` over ``params`` (tensors or parameter groups); ``kw`` goes to it."""
    check_optimizer(name)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, **kw)
    if name == "sgd_momentum":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, **kw)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, **kw)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, **kw)
    return torch.optim.AdamW(params, lr=lr, betas=betas, **kw)


def make_optimizer(model: torch.nn.Module, name: str, lr: float, momentum: float = 0.9,
                   betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The optimiser ``name`` over the model's trainable parameters.

    Weight decay goes only to tensors with >= 2 dimensions (matrices and embeddings): shrinking
    biases and LayerNorm gains towards 0 would only hurt. "adamw" decays decoupled from the
    gradient; the others add ``weight_decay * w`` to the gradient (L2), as PyTorch defines them.
    """
    check_optimizer(name)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    # one fused call per operation for all tensors; PyTorch picks this itself only on CUDA
    kw = {"foreach": True} if all(p.device.type in ("cpu", "cuda") for p in params) else {}
    return build_optimizer(name, groups, lr, momentum, betas, **kw)
