"""The LR range test: train with a learning rate growing step by step and watch where the loss turns.

Built on the trainer's own step (``helpers.train.backward_step``), so the test trains exactly as
``train`` does; ``helpers.schedules.suggest_lr`` reads a learning rate off its curve.
"""

from __future__ import annotations

import copy
import math

import torch

from helpers.data import TokenSplits, get_batch
from helpers.interface import LanguageModel
from helpers.optimizers import make_optimizer
from helpers.runtime import pick_device
from helpers.train import backward_step


def lr_range_test(
    model: LanguageModel,
    data: TokenSplits,
    start_lr: float = 1e-6,
    end_lr: float = 1.0,
    steps: int = 100,
    batch_size: int = 16,
    block_size: int | None = None,
    optimizer: str = "adamw",
    weight_decay: float = 0.0,
    stop_factor: float = 4.0,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[list[float], list[float]]:
    """Train with a learning rate growing exponentially from ``start_lr`` to ``end_lr``, one batch
    per step, and record the loss at every LR. Returns ``(lrs, losses)``.

    The test stops early when the loss is NaN/inf or exceeds ``stop_factor`` times the lowest loss
    seen so far (the LR is then clearly too large). The model's weights and train/eval mode are
    restored afterwards, so the test leaves no trace on the model.
    """
    if not (isinstance(start_lr, (int, float)) and start_lr > 0):
        raise ValueError(f"start_lr must be a positive number, got {start_lr!r}")
    if not (isinstance(end_lr, (int, float)) and end_lr > start_lr):
        raise ValueError(f"end_lr must be a number > start_lr={start_lr}, got {end_lr!r}")
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2, got {steps!r}")
    if not (isinstance(stop_factor, (int, float)) and stop_factor > 1):
        raise ValueError(f"stop_factor must be a number > 1, got {stop_factor!r}")
    device = pick_device(device)
    block_size = block_size or model.config.block_size
    saved_state = copy.deepcopy(model.state_dict())
    was_training = model.training
    moved_from = model.device
    model.to(device).train()
    opt = make_optimizer(model, optimizer, start_lr, weight_decay=weight_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(seed)
    lrs: list[float] = []
    losses: list[float] = []
    best = math.inf
    try:
        for i in range(steps):
            lr = start_lr * (end_lr / start_lr) ** (i / (steps - 1))  # exponential ramp
            x, y = get_batch(data.train, batch_size, block_size, generator, "cpu")
            loss = backward_step(model, opt, x, y, lr, params=params)[0].item()  # the trainer's step
            lrs.append(lr)
            losses.append(loss)
            if not math.isfinite(loss) or loss > stop_factor * best:
                break
            best = min(best, loss)
            opt.step()
    finally:
        model.load_state_dict(saved_state)
        model.to(moved_from).train(was_training)
    return lrs, losses
