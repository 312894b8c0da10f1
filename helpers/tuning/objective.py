"""Objectives: cheap synthetic ones for workers and tests, and training a small GPT per trial.

Torch and the trainer are imported lazily, so a worker with a synthetic objective starts in about
a second.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import optuna

from helpers.tuning.spaces import suggest, validate_space

if TYPE_CHECKING:
    from helpers.data import TokenSplits


# ----------------------------------------------------------------------------- synthetic objectives


def one_axis_loss(x: float, y: float, x_opt: float = 0.37, y_opt: float = 0.5, y_weight: float = 0.01) -> float:
    """A loss on [0, 1]^2 where only ``x`` matters much: ``(x - x_opt)^2 + y_weight * (y - y_opt)^2``.

    Many real problems look like this (the learning rate matters, the tenth knob hardly does),
    which is the situation where random search beats a grid.
    """
    return (x - x_opt) ** 2 + y_weight * (y - y_opt) ** 2


QUADRATIC_SPACE = {"x": {"type": "float", "low": -5.0, "high": 5.0}, "y": {"type": "float", "low": -5.0, "high": 5.0}}


def quadratic_objective(sleep: float = 0.0) -> Callable[[optuna.Trial], float]:
    """A cheap objective for workers and tests: ``(x - 1)^2 + (y + 2)^2``, optionally slowed down
    by ``sleep`` seconds per trial to stand in for training."""
    if not isinstance(sleep, (int, float)) or isinstance(sleep, bool) or not 0 <= sleep < math.inf:
        raise ValueError(f"sleep must be a finite number of seconds >= 0, got {sleep!r}")

    def objective(trial: optuna.Trial) -> float:
        p = suggest(trial, QUADRATIC_SPACE)
        trial.set_user_attr("worker", os.getpid())
        time.sleep(sleep)
        return (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2

    return objective

# ----------------------------------------------------------------------------- the GPT objective

_MODEL_KEYS = ("n_layer", "n_head", "n_embd", "dropout", "bias")
_COSTS = (None, "seconds", "parameters")


@dataclass
class GPTObjective:
    """Train a small GPT with the hyperparameters a trial suggests; return its validation loss.

    ``space`` names fields of ``GPTConfig`` (``n_layer``, ``n_embd``, ``dropout``, ...) or of
    ``TrainConfig`` (``lr``, ``batch_size``, ``warmup_steps``, ``weight_decay``, ...); ``fixed``
    sets any of them to one value for every trial. Every trial trains for ``steps`` steps from the
    same seed and is validated on the same ``eval_batches`` x ``eval_batch_size`` windows, whatever
    its own batch size, so two trials differ only in their hyperparameters. The validation loss at every
    evaluation is reported to Optuna, which may prune the trial (``optuna.TrialPruned``). A run
    that diverges is recorded as pruned with the user attribute ``diverged``. With ``cost``
    (``"seconds"`` or ``"parameters"``) the objective returns ``(val_loss, cost)`` for a
    two-objective study (pruning is then off: Optuna cannot prune multi-objective trials).
    Note that ``optuna.create_study`` prunes with a ``MedianPruner`` unless given another pruner.
    """

    data: TokenSplits
    vocab_size: int
    space: Mapping[str, Mapping[str, Any]]
    steps: int = 200
    block_size: int = 64
    fixed: Mapping[str, Any] = field(default_factory=dict)
    eval_every: int = 25
    eval_batches: int = 4
    eval_batch_size: int = 16
    seed: int = 0
    device: str | None = None
    cost: str | None = None

    def __post_init__(self) -> None:
        from helpers.train import TrainConfig

        validate_space(self.space)
        if self.cost not in _COSTS:
            raise ValueError(f"cost must be one of {_COSTS}, got {self.cost!r}")
        train_keys = {f.name for f in fields(TrainConfig)} - {"steps", "block_size", "eval_every", "eval_batches",
                                                               "eval_batch_size", "eval_seed", "seed", "device",
                                                               "progress", "patience"}
        allowed = set(_MODEL_KEYS) | train_keys
        for name in [*self.space, *self.fixed]:
            if name not in allowed:
                raise ValueError(f"hyperparameter {name!r} is neither a GPTConfig nor a TrainConfig field; "
                                 f"allowed: {sorted(allowed)}")
        both = set(self.space) & set(self.fixed)
        if both:
            raise ValueError(f"fixed and space both set {sorted(both)}; keep each name in one of them")

    def configs(self, params: Mapping[str, Any], seed: int | None = None) -> tuple[Any, Any]:
        """``(GPTConfig, TrainConfig)`` for one set of hyperparameters (``fixed`` filled in)."""
        from helpers.model import GPTConfig
        from helpers.train import TrainConfig

        p = {**self.fixed, **params}
        model_kw = {k: p.pop(k) for k in _MODEL_KEYS if k in p}
        if "n_head" not in model_kw:  # up to 4 heads of at least 16 channels each
            width = model_kw.get("n_embd", 128)
            heads = max(1, min(4, width // 16))
            while width % heads:
                heads -= 1
            model_kw["n_head"] = heads
        model = GPTConfig(block_size=self.block_size, vocab_size=self.vocab_size, **model_kw)
        if "warmup_steps" not in p:  # the default warmup may not fit into a short tuning run
            p["warmup_steps"] = min(TrainConfig.__dataclass_fields__["warmup_steps"].default, self.steps // 10)
        # every trial is validated on the same windows, whatever its own batch size and seed (see ``validate``)
        train = TrainConfig(steps=self.steps, block_size=self.block_size, eval_every=self.eval_every,
                            eval_batches=self.eval_batches, eval_batch_size=self.eval_batch_size,
                            eval_seed=self.seed + 1, seed=self.seed if seed is None else seed,
                            device=self.device, progress=False, **p)
        return model, train

    def validate(self, model: Any, tokens: Any = None) -> float:
        """Mean loss on the same windows of ``tokens`` (default: the validation split) for every trial."""
        from helpers.train import loss_on_fixed_windows

        tokens = self.data.val if tokens is None else tokens
        # seed + 1: the windows train() uses for the trials (``configs``), independent of a trial's seed
        return loss_on_fixed_windows(model, tokens, self.eval_batch_size, self.block_size, self.eval_batches,
                                     self.seed + 1, model.device)

    def train(self, params: Mapping[str, Any], seed: int | None = None,
              on_eval: Callable[[int, float], bool | None] | None = None) -> tuple[Any, Any]:
        """Build and train the model for ``params``; returns ``(model, History)``."""
        from helpers.model import GPT
        from helpers.runtime import seed_everything
        from helpers.train import train

        model_cfg, train_cfg = self.configs(params, seed)
        seed_everything(train_cfg.seed)  # the same initial weights for every trial
        model = GPT(model_cfg)
        return model, train(model, self.data, train_cfg, on_eval=on_eval)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        params = suggest(trial, self.space)
        single = self.cost is None  # Optuna prunes only single-objective trials
        pruned = []

        def on_eval(step: int, val_loss: float) -> bool:
            if single:
                trial.report(val_loss, step)
                if trial.should_prune():
                    pruned.append(step)
                    return True  # stop training; the trial is marked pruned below
            return False

        model, history = self.train(params, on_eval=on_eval)
        steps = len(history.step)  # forward + backward passes actually run: the compute spent
        trial.set_user_attr("steps_trained", steps)
        trial.set_user_attr("seconds", round(history.seconds, 3))
        trial.set_user_attr("parameters", model.num_parameters())
        val = history.final_val_loss
        if history.diverged or not math.isfinite(val):
            trial.set_user_attr("diverged", True)
            if single:  # worse than anything: samplers that learn from pruned trials avoid this region
                trial.report(math.inf, steps)
            raise optuna.TrialPruned(history.message or "training diverged")
        if pruned:
            raise optuna.TrialPruned(f"pruned at step {pruned[0]} with val loss {val:.3f}")
        if self.cost == "seconds":
            return val, history.seconds
        if self.cost == "parameters":
            return val, float(model.num_parameters())
        return val

    def test_loss(self, params: Mapping[str, Any], seed: int | None = None) -> dict[str, float]:
        """Retrain ``params`` (same seed, so the same model) and measure it once on the test split."""
        model, history = self.train(params, seed=seed)
        return {"val_loss": history.final_val_loss, "test_loss": self.validate(model, self.data.test)}


def gpt_objective(data: TokenSplits, vocab_size: int, space: Mapping[str, Mapping[str, Any]], **kw: Any) -> GPTObjective:
    """The objective factory: ``GPTObjective(data, vocab_size, space, **kw)`` (see its docstring)."""
    return GPTObjective(data, vocab_size, space, **kw)


def evaluate_on_test(study: optuna.Study, objective: GPTObjective,
                     trial: optuna.trial.FrozenTrial | None = None) -> dict[str, Any]:
    """Measure the study's best trial (or ``trial``) once on the held-out test split.

    The test split has played no part in choosing the hyperparameters, so this is the honest
    estimate; the best validation loss is biased low because it won a competition on that split.
    """
    if trial is None:
        if len(study.directions) > 1:
            raise ValueError("a multi-objective study has no single best trial; pass trial= (one of study.best_trials)")
        trial = study.best_trial
    result = objective.test_loss(trial.params)
    return {"number": trial.number, "params": dict(trial.params), "val_loss_in_study": trial.values[0], **result}
