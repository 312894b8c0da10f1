"""Expected values of the notebooks' exercises, derived from the objects a notebook defines.

A check that wrote its expected value into the notebook (``expected=4 * 8 * 64``) would hand the learner the
answer. The checks call these functions instead: each derives the value from the learner's own inputs (a
configuration, a run's history, a layer, a tensor) through the course's code, so the notebook shows the
question and the inputs, never the arithmetic that answers it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from helpers.data import get_batch
from helpers.lora import LoRALinear
from helpers.quantize import quantize_tensor
from helpers.sampling import SamplingParams, process_logits
from helpers.schedules import lr_at
from helpers.train import History, TrainConfig


def linear_parameter_count(n_in: int, n_out: int) -> int:
    """Parameters (weights and biases) of a ``torch.nn.Linear(n_in, n_out)``, counted on a real layer."""
    layer = torch.nn.Linear(n_in, n_out, device="meta")  # no memory: only the shapes are needed
    return sum(p.numel() for p in layer.parameters())


def sampling_probabilities(logits: Sequence[float], params: SamplingParams) -> list[float]:
    """The distribution the course's sampler draws from for one row of ``logits`` under ``params``."""
    row = torch.tensor([list(logits)], dtype=torch.float64)  # (1, V)
    return process_logits(row, params)[0].softmax(-1).tolist()


def token_count(tokenizer: Any, text: str) -> int:
    """How many tokens ``tokenizer`` turns ``text`` into."""
    return len(tokenizer.encode(text))


def tokens_per_step(config: TrainConfig, tokens: torch.Tensor) -> int:
    """Tokens one optimiser step learns from: one micro-batch drawn as the trainer draws it, times accumulation."""
    if config.block_size is None:
        raise ValueError("config.block_size is None: give the window length explicitly")
    x, _ = get_batch(tokens, config.batch_size, config.block_size, torch.Generator().manual_seed(0))  # (B, T)
    return x.numel() * config.grad_accum


def scaled_lr(lr: float, batch_size: int, new_batch_size: int, rule: str) -> float:
    """The learning rate for ``new_batch_size`` by the ``"linear"`` or ``"sqrt"`` scaling rule."""
    ratio = new_batch_size / batch_size
    if rule == "linear":
        return lr * ratio
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    raise ValueError(f"rule must be 'linear' or 'sqrt', got {rule!r}")


def first_step_reaching(fraction: float, total_steps: int, base_lr: float, schedule: str, warmup_steps: int) -> int:
    """The first 0-based step at which ``schedule``'s learning rate reaches ``fraction`` of ``base_lr``."""
    for step in range(total_steps):
        if lr_at(step, total_steps, base_lr, schedule, warmup_steps=warmup_steps) >= fraction * base_lr * (1 - 1e-12):
            return step
    raise ValueError(f"the schedule never reaches fraction={fraction} of base_lr in {total_steps} steps")


def is_exponential_decay(f: Callable[[int, int, float, float], float]) -> bool:
    """Whether ``f(step, total_steps, base_lr, min_lr_ratio)`` is an exponential decay: ``base_lr`` at step 0,
    ``base_lr * min_lr_ratio`` at the last step, and the same factor from every step to the next.

    Checked as properties on several runs, so no expected learning rate is written anywhere.
    """
    for total, base, ratio in ((11, 0.1, 0.01), (50, 3e-3, 0.1), (2, 1.0, 0.5), (7, 2.0, 1.0)):
        lrs = [float(f(s, total, base, ratio)) for s in range(total)]
        if not (math.isclose(lrs[0], base, rel_tol=1e-9) and math.isclose(lrs[-1], base * ratio, rel_tol=1e-9)):
            return False
        factors = [b / a for a, b in zip(lrs, lrs[1:])]
        if not all(math.isclose(q, factors[0], rel_tol=1e-9) for q in factors):
            return False
    return True


def runs_within(final_losses: Sequence[float], margin: float) -> int:
    """How many runs ended within ``margin`` of the best final loss (the best run included)."""
    finite = [v for v in final_losses if math.isfinite(v)]
    best = min(finite)
    return sum(v <= best + margin for v in finite)


def gap_to_best(final_losses: Mapping[str, float], name: str) -> float:
    """How much higher ``name``'s final loss is than the lowest of all."""
    return final_losses[name] - min(final_losses.values())


def generalisation_gap(history: History) -> float:
    """Last validation loss minus the final training loss of a run."""
    return history.val_loss[-1] - history.final_train_loss


def steps_saved(full: History, stopped: History) -> int:
    """Training steps a stopped run did not need, compared with the full run."""
    return len(full.step) - len(stopped.step)


def evaluations_until_stop(val_losses: Sequence[float], patience: int) -> int:
    """The number of evaluations after which early stopping with ``patience`` ends training.

    The trainer's rule: stop once ``patience`` evaluations in a row brought no new best. If that never
    happens, every evaluation runs.
    """
    best, bad = math.inf, 0
    for i, loss in enumerate(val_losses, start=1):
        if loss < best:
            best, bad = loss, 0
        else:
            bad += 1
            if bad >= patience:
                return i
    return len(val_losses)


def lora_trainable(layer: torch.nn.Module, rank: int) -> int:
    """Trainable numbers of a rank-``rank`` LoRA adapter on ``layer``, counted on a real adapter (layer copied)."""
    adapter = LoRALinear(copy.deepcopy(layer), rank=rank, alpha=float(rank))
    return sum(p.numel() for name, p in adapter.named_parameters() if name.startswith("lora_"))


def bits_per_weight(w: torch.Tensor, bits: int, group_size: int) -> float:
    """Storage per weight of group-wise quantisation, scales and zero points included, from the real encoding."""
    q = quantize_tensor(w, bits=bits, scheme="group", group_size=group_size)
    return 8 * q.nbytes / w.numel()


def pareto_numbers(study: Any) -> list[int]:
    """Sorted trial numbers of a multi-objective Optuna study's Pareto front (Optuna's own computation)."""
    return sorted(t.number for t in study.best_trials)
