"""The training loop of the course: one ``train()`` for every experiment with training hyperparameters.

``TrainConfig`` holds the knobs (learning rate, schedule, batch size, optimiser, clipping,
accumulation, evaluation, early stopping); ``train`` returns a ``History`` with everything measured
on the way, so notebooks plot and assert on what really happened.

Divergence, precisely: a run *diverges* at the first step whose training loss is NaN or infinite,
or larger than ``diverge_factor`` times the loss of the first step (default 3: a model that does
three times worse than at initialisation, where it guesses about uniformly, is not learning). The
run then stops cleanly before applying that step's update: ``history.diverged`` is True and
``history.message`` names the step, the learning rate and the loss. No exception is raised.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from helpers.data import TokenSplits, get_batch, to_device
from helpers.interface import LanguageModel
from helpers.memory import measured_training_bytes, saved_activation_bytes
from helpers.optimizers import OPTIMIZERS, check_optimizer, make_optimizer
from helpers.runtime import (
    MAX_SEED,
    autocast,
    evaluating,
    pick_device,
    release_memory,
    seed_everything,
    synchronize,
)
from helpers.schedules import SCHEDULES, lr_at

# OPTIMIZERS and make_optimizer live in helpers.optimizers; they stay importable from here
__all__ = ["OPTIMIZERS", "History", "TrainConfig", "accumulate_gradients", "backward_step", "evaluate",
           "loss_on_fixed_windows", "make_optimizer", "train", "train_fresh"]


def _positive_int(name: str, value: object, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _is_number(value: object) -> bool:
    """A real, finite int or float; True/False are not numbers here (a slip for 1/0, never meant)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class TrainConfig:
    """Training hyperparameters. ``batch_size`` is the micro-batch that is in memory at once; each
    optimiser step sees ``batch_size * grad_accum`` windows of ``block_size`` tokens."""

    steps: int = 200
    batch_size: int = 16
    block_size: int | None = None  # None: the model's context window
    lr: float = 3e-3  # the peak learning rate; the schedule scales it per step
    optimizer: str = "adamw"  # one of OPTIMIZERS
    momentum: float = 0.9  # used by "sgd_momentum"
    betas: tuple[float, float] = (0.9, 0.95)  # used by "adam" and "adamw"
    weight_decay: float = 0.1  # only on >= 2-D tensors; decoupled for "adamw", an L2 term otherwise
    schedule: str = "warmup_cosine"  # one of helpers.schedules.SCHEDULES
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    grad_clip: float | None = 1.0  # max global gradient norm; None or 0 = no clipping
    grad_accum: int = 1
    eval_every: int | None = 50  # evaluate every N steps and after the last one; None or 0 = never
    eval_batches: int = 10
    eval_batch_size: int | None = None  # windows per evaluation batch; None: batch_size
    eval_seed: int | None = None  # seed of the (fixed) evaluation windows; None: seed + 1
    patience: int | None = None  # early stopping after this many evaluations without improvement
    diverge_factor: float | None = 3.0  # see the module docstring; None = only NaN/inf count
    seed: int = 0
    device: str | None = None  # None: pick_device()
    progress: bool = True  # a tqdm bar with loss, LR and tokens/s
    amp: bool = True  # bf16 autocast on CUDA (no effect elsewhere)

    def __post_init__(self) -> None:
        _positive_int("steps", self.steps)
        _positive_int("batch_size", self.batch_size)
        _positive_int("grad_accum", self.grad_accum)
        _positive_int("eval_batches", self.eval_batches)
        _positive_int("warmup_steps", self.warmup_steps, minimum=0)
        _positive_int("seed", self.seed, minimum=0)
        if self.eval_batch_size is not None:
            _positive_int("eval_batch_size", self.eval_batch_size)
        if self.eval_seed is not None:
            _positive_int("eval_seed", self.eval_seed, minimum=0)
        if self.block_size is not None:
            _positive_int("block_size", self.block_size)
        if self.eval_every is not None:
            _positive_int("eval_every", self.eval_every, minimum=0)
        if self.patience is not None:
            _positive_int("patience", self.patience)
            if not self.eval_every:
                raise ValueError(f"patience={self.patience} needs evaluations: set eval_every >= 1, got {self.eval_every!r}")
        if self.seed > MAX_SEED:
            raise ValueError(f"seed must be an int in 0..{MAX_SEED} (2**63 - 1), got {self.seed!r}")
        if not _is_number(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        check_optimizer(self.optimizer)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.schedule == "warmup_cosine" and self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps must be < steps={self.steps} for warmup_cosine, got {self.warmup_steps} "
                             "(lower warmup_steps or pick another schedule)")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if not _is_number(self.momentum) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1), got {self.momentum!r}")
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2 or not all(
                _is_number(b) and 0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if not _is_number(self.min_lr_ratio) or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be a number in [0, 1], got {self.min_lr_ratio!r}")
        if self.grad_clip is not None and (not _is_number(self.grad_clip) or self.grad_clip < 0):
            raise ValueError(f"grad_clip must be None, 0 (off) or a finite positive number, got {self.grad_clip!r}")
        if self.diverge_factor is not None and (not _is_number(self.diverge_factor) or self.diverge_factor <= 1):
            raise ValueError(f"diverge_factor must be None or a finite number > 1, got {self.diverge_factor!r}")
        for name in ("progress", "amp"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.device is not None and not isinstance(self.device, (str, torch.device)):
            raise ValueError(f"device must be None or a device name such as 'cpu' or 'cuda', got {self.device!r}")


@dataclass
class History:
    """What happened during ``train``: per step (1-based: step k = the k-th update) and per evaluation.

    ``peak_memory_bytes``: on CUDA ``torch.cuda.max_memory_allocated`` during the run. Elsewhere a
    measured estimate, since PyTorch's CPU allocator keeps no peak counter: the bytes of parameters,
    gradients and optimiser state plus the activations autograd saved for the backward pass of one
    micro-batch (counted on the first step). ``memory_source`` says which of the two it is.
    """

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)  # global L2 norm before clipping
    tokens_per_s: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    diverged: bool = False
    stopped_early: bool = False
    restored_best: bool = False
    message: str = ""
    best_val_loss: float = math.inf
    best_step: int | None = None
    seconds: float = 0.0
    tokens_seen: int = 0
    tokens_per_step: int = 0  # batch_size * grad_accum * block_size
    peak_memory_bytes: int | None = None
    memory_source: str = ""

    @property
    def final_train_loss(self) -> float:
        """Mean training loss of the last 10 steps (single batches are noisy); ``inf`` if diverged."""
        if self.diverged or not self.train_loss:
            return math.inf
        tail = self.train_loss[-10:]
        return sum(tail) / len(tail)

    @property
    def final_val_loss(self) -> float:
        """The last validation loss (``inf`` if diverged, ``nan`` if never evaluated)."""
        if self.diverged:
            return math.inf
        return self.val_loss[-1] if self.val_loss else math.nan

    def summary(self) -> dict:
        """The scalar results of the run, one dict (a row of a sweep)."""
        tps = sorted(self.tokens_per_s[1:] or self.tokens_per_s)  # the first step includes warm-up
        return {
            "final_train_loss": self.final_train_loss,
            "final_val_loss": self.final_val_loss,
            "best_val_loss": self.best_val_loss,
            "best_step": self.best_step,
            "diverged": self.diverged,
            "stopped_early": self.stopped_early,
            "steps_run": len(self.step),
            "tokens_seen": self.tokens_seen,
            "tokens_per_s": tps[len(tps) // 2] if tps else math.nan,  # median
            "seconds": self.seconds,
            "peak_memory_bytes": self.peak_memory_bytes,
        }

    def to_rows(self) -> list[dict]:
        """One dict per step (``val_loss`` where an evaluation ran after that step, else None)."""
        val = dict(zip(self.eval_step, self.val_loss))
        return [
            {"step": s, "train_loss": loss, "lr": lr, "grad_norm": g, "tokens_per_s": t, "val_loss": val.get(s)}
            for s, loss, lr, g, t in zip(self.step, self.train_loss, self.lr, self.grad_norm, self.tokens_per_s)
        ]


def accumulate_gradients(model: LanguageModel, x: torch.Tensor, y: torch.Tensor, grad_accum: int = 1,
                         amp: bool = True) -> torch.Tensor:
    """Forward and backward ``x, y`` ``(B, T)`` in ``grad_accum`` equal micro-batches, adding up the
    gradients; returns the mean loss as a detached tensor (no sync with the device).

    Each micro-batch loss is divided by ``grad_accum``, so the summed gradient equals the gradient
    of the mean loss over the whole batch: accumulation changes memory use, not the result.
    """
    if x.shape[0] % grad_accum:
        raise ValueError(f"the batch of {x.shape[0]} windows must split into grad_accum={grad_accum} equal parts")
    device = model.device
    total = torch.zeros((), device=device)
    for xb, yb in zip(x.chunk(grad_accum), y.chunk(grad_accum)):
        xb, yb = to_device(xb, device), to_device(yb, device)
        with autocast(device, amp):
            loss = model.loss(xb, yb) / grad_accum
        loss.backward()
        total += loss.detach()
    return total


def _grad_norm(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """The global L2 norm of all gradients, as a tensor (no sync with the device)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6
        return torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def _clip(params: list[torch.nn.Parameter], max_norm: float, norm: torch.Tensor) -> None:
    """Rescale the gradients to at most ``max_norm``, reusing the norm already computed when possible."""
    if hasattr(torch.nn.utils, "clip_grads_with_norm_"):  # torch >= 2.6
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    else:
        torch.nn.utils.clip_grad_norm_(params, max_norm)


@torch.no_grad()
def evaluate(model: LanguageModel, tokens: torch.Tensor, batch_size: int, block_size: int, batches: int,
             generator: torch.Generator, device: torch.device | str | None = None, amp: bool = True) -> float:
    """Mean loss over ``batches`` random windows of ``tokens``, in eval mode (dropout off); the
    model's train/eval mode is restored afterwards."""
    device = model.device if device is None else torch.device(device)
    total = torch.zeros((), device=device)
    with evaluating(model):
        for _ in range(batches):
            x, y = get_batch(tokens, batch_size, block_size, generator, device)
            with autocast(device, amp):
                total += model.loss(x, y).float()
    return total.item() / batches


def loss_on_fixed_windows(model: LanguageModel, tokens: torch.Tensor, batch_size: int, block_size: int | None = None,
                          batches: int = 10, seed: int = 0, device: torch.device | str | None = None,
                          amp: bool = True) -> float:
    """``evaluate`` on windows drawn from a fixed ``seed``: the same windows at every call, so that
    losses of different models, or of one model before and after a change, compare on the same text.
    ``block_size`` defaults to the model's context length."""
    block_size = model.config.block_size if block_size is None else block_size
    return evaluate(model, tokens, batch_size, block_size, batches, torch.Generator().manual_seed(seed), device, amp)


def train_fresh(make_model: Callable[[], LanguageModel], data: TokenSplits, seed: int = 0,
                **config: Any) -> tuple[LanguageModel, History]:
    """Seed everything with ``seed``, build a model with ``make_model()`` and train it quietly with
    ``TrainConfig(seed=seed, progress=False, **config)``: the same initial weights, batches and
    dropout masks at every call with the same arguments. Returns ``(model, history)``."""
    seed_everything(seed)
    model = make_model()
    return model, train(model, data, TrainConfig(**{"seed": seed, "progress": False, **config}))


def _saved_activation_bytes(model: LanguageModel, x: torch.Tensor, y: torch.Tensor, amp: bool) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one forward (not parameters)."""
    # fork_rng: this extra forward must not shift the dropout masks of the real steps
    with torch.random.fork_rng(devices=[]), autocast(model.device, amp):
        return saved_activation_bytes(lambda: model.loss(to_device(x, model.device), to_device(y, model.device)),
                                      exclude=list(model.parameters()))


def backward_step(model: LanguageModel, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                  lr: float, grad_accum: int = 1, amp: bool = True, grad_clip: float | None = None,
                  params: list[torch.nn.Parameter] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A training step up to the update: set the learning rate, clear the gradients, forward and
    backward ``x, y`` (B, T) in ``grad_accum`` micro-batches, take the global gradient norm and clip
    it to ``grad_clip``. Returns ``(loss, grad_norm)`` as tensors (no sync with the device).

    The caller looks at the loss and then applies the update with ``optimizer.step()``, or not:
    ``train`` leaves a diverged step unapplied. ``params``: the trainable parameters, if known.
    """
    params = [p for p in model.parameters() if p.requires_grad] if params is None else params
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss = accumulate_gradients(model, x, y, grad_accum, amp)
    norm = _grad_norm(params)
    if grad_clip:
        _clip(params, grad_clip, norm)
    return loss, norm


# A full garbage collection takes a few tenths of a second in a notebook's kernel (every live Python object is
# visited). Before a small model's run it costs more than the run and frees nothing that matters for the peak.
RELEASE_ABOVE_BYTES = 32 * 2**20


def train(model: LanguageModel, data: TokenSplits, config: TrainConfig | None = None,
          on_eval: Callable[[int, float], bool | None] | None = None) -> History:
    """Train ``model`` in place on ``data.train``, evaluating on ``data.val``; returns a ``History``.

    ``on_eval(step, val_loss)`` is called after every evaluation; returning True stops the run
    (Optuna's pruning uses this). With ``patience`` set, training stops after ``patience``
    evaluations without a new best validation loss, and the model ends with its best weights.
    """
    if sum(p.numel() * p.element_size() for p in model.parameters()) >= RELEASE_ABOVE_BYTES:
        release_memory()  # what earlier runs freed goes back to the system before this large run allocates
    config = config or TrainConfig()
    if not isinstance(data, TokenSplits):
        raise ValueError(f"data must be a TokenSplits, got {type(data).__name__}")
    block_size = config.block_size or model.config.block_size
    if block_size > model.config.block_size:
        raise ValueError(f"block_size must be <= the model's block_size={model.config.block_size}, got {block_size}")
    device = pick_device(config.device)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(model, config.optimizer, config.lr, config.momentum, config.betas, config.weight_decay)
    torch.manual_seed(config.seed)  # dropout masks
    batch_gen = torch.Generator().manual_seed(config.seed)
    windows_per_step = config.batch_size * config.grad_accum
    tokens_per_step = windows_per_step * block_size
    eval_every = config.eval_every or 0
    eval_batch_size = config.eval_batch_size or config.batch_size
    eval_seed = config.seed + 1 if config.eval_seed is None else config.eval_seed
    hist = History(tokens_per_step=tokens_per_step)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    activation_bytes = 0
    best_state = None
    bad_evals = 0
    first_loss = None
    bar = tqdm(total=config.steps, disable=not config.progress, desc="train", leave=False)
    start = time.perf_counter()
    try:
        for k in range(1, config.steps + 1):
            t0 = time.perf_counter()
            lr = lr_at(k - 1, config.steps, config.lr, config.schedule, config.warmup_steps, config.min_lr_ratio)
            # all windows of the step are drawn at once, so accumulation sees the same windows
            x, y = get_batch(data.train, windows_per_step, block_size, batch_gen, "cpu")  # (B*accum, T)
            if k == 1 and device.type != "cuda":
                activation_bytes = _saved_activation_bytes(model, x[: config.batch_size], y[: config.batch_size],
                                                           config.amp)
            loss_t, norm_t = backward_step(model, opt, x, y, lr, config.grad_accum, config.amp, config.grad_clip, params)
            norm_t = norm_t.to(loss_t.device)
            loss, norm = torch.stack([loss_t.float(), norm_t.float()]).tolist()  # the step's one sync
            first_loss = loss if first_loss is None else first_loss
            hist.step.append(k)
            hist.train_loss.append(loss)
            hist.lr.append(lr)
            hist.grad_norm.append(norm)
            limit = config.diverge_factor * first_loss if config.diverge_factor else math.inf
            if not math.isfinite(loss) or loss > limit:
                hist.tokens_per_s.append(tokens_per_step / max(time.perf_counter() - t0, 1e-9))
                hist.diverged = True
                why = "is not finite" if not math.isfinite(loss) else f"> {config.diverge_factor:g} x first loss {first_loss:.3f}"
                hist.message = f"diverged at step {k} (lr {lr:.2e}): loss {loss:.4g} {why}"
                break
            opt.step()
            hist.tokens_seen += tokens_per_step
            dt = time.perf_counter() - t0
            hist.tokens_per_s.append(tokens_per_step / max(dt, 1e-9))
            bar.update(1)
            if k % 10 == 0 or k == config.steps:
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.1e}", tok_s=f"{hist.tokens_per_s[-1]:,.0f}", refresh=False)
            if eval_every and (k % eval_every == 0 or k == config.steps):
                val = loss_on_fixed_windows(model, data.val, eval_batch_size, block_size, config.eval_batches,
                                            eval_seed, device, config.amp)  # the same windows every time
                hist.eval_step.append(k)
                hist.val_loss.append(val)
                if val < hist.best_val_loss:
                    hist.best_val_loss, hist.best_step, bad_evals = val, k, 0
                    if config.patience is not None:
                        best_state = copy.deepcopy(model.state_dict())
                else:
                    bad_evals += 1
                if config.patience is not None and bad_evals >= config.patience:
                    hist.stopped_early = True
                    hist.message = (f"stopped early at step {k}: no better validation loss for {bad_evals} "
                                    f"evaluations (best {hist.best_val_loss:.4f} at step {hist.best_step})")
                    break
                if on_eval is not None and on_eval(k, val):
                    hist.message = f"stopped at step {k} by on_eval"
                    break
    finally:
        bar.close()
    if best_state is not None and not hist.diverged:
        model.load_state_dict(best_state)
        hist.restored_best = True
        hist.message += ("; " if hist.message else "") + f"restored the best weights (step {hist.best_step})"
    synchronize(device)
    hist.seconds = time.perf_counter() - start
    if device.type == "cuda":
        hist.peak_memory_bytes = torch.cuda.max_memory_allocated(device)
        hist.memory_source = "torch.cuda.max_memory_allocated"
    else:
        hist.peak_memory_bytes = measured_training_bytes(model, opt)["total"] + activation_bytes
        hist.memory_source = "estimate: parameters + gradients + optimiser state + saved activations"
    if not hist.message:
        hist.message = f"finished {len(hist.step)} steps"
    return hist
