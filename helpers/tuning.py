"""Hyperparameter optimisation with Optuna: search spaces as data, objectives, storage, workers.

The workflow the course teaches is: write the search space down (``SPACE``-style dicts), wrap
training in an objective that Optuna can call, pick a strategy (sampler + pruner), run, look at
the results, refine the space, and finally measure the winner once on the held-out test split.
Every study can live in a storage URL (SQLite for one machine, PostgreSQL for many), which is both
the experiment log and what lets several worker processes share one study:

    python -m helpers.tuning worker --study demo --storage sqlite:///demo.db --trials 40

Torch and the trainer are imported lazily, so a worker with a synthetic objective starts in about
a second.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from helpers.experiments import Table

if TYPE_CHECKING:
    from helpers.data import TokenSplits

PARAM_TYPES = ("float", "int", "categorical")
HAS_CMAES = importlib.util.find_spec("cmaes") is not None  # optuna's CmaEsSampler needs it
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# States that hold one of a worker pool's n_trials slots (failed trials give theirs back).
_SLOT_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


# ----------------------------------------------------------------------------- search spaces


def validate_space(space: Mapping[str, Mapping[str, Any]]) -> dict[str, BaseDistribution]:
    """Check a search space written as data and return it as Optuna distributions.

    A space maps each parameter name to a spec: ``{"type": "float", "low": 1e-4, "high": 1e-1,
    "log": True}``, ``{"type": "int", "low": 1, "high": 4}`` (optional ``"step"``, ``"log"``) or
    ``{"type": "categorical", "choices": [16, 32, 64]}``. Mistakes raise ``ValueError`` naming
    the parameter.
    """
    if not isinstance(space, Mapping) or not space:
        raise ValueError(f"space must be a non-empty dict name -> spec, got {space!r}")
    out: dict[str, BaseDistribution] = {}
    for name, spec in space.items():
        if not isinstance(spec, Mapping):
            raise ValueError(f"space[{name!r}] must be a dict with a 'type', got {spec!r}")
        kind = spec.get("type")
        if kind not in PARAM_TYPES:
            raise ValueError(f"space[{name!r}]: type must be one of {PARAM_TYPES}, got {kind!r}")
        allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "log", "step"}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"space[{name!r}]: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, (list, tuple)) or not choices:
                raise ValueError(f"space[{name!r}]: choices must be a non-empty list, got {choices!r}")
            if len(set(map(repr, choices))) != len(choices):
                raise ValueError(f"space[{name!r}]: choices must be distinct, got {list(choices)!r}")
            out[name] = CategoricalDistribution(list(choices))
            continue
        low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
        number = int if kind == "int" else (int, float)
        for key, value in (("low", low), ("high", high)):
            if not isinstance(value, number) or isinstance(value, bool):
                raise ValueError(f"space[{name!r}]: {key} must be a{'n int' if kind == 'int' else ' number'}, got {value!r}")
        if not low < high:
            raise ValueError(f"space[{name!r}]: low must be < high, got low={low!r}, high={high!r}")
        if not isinstance(log, bool):
            raise ValueError(f"space[{name!r}]: log must be True or False, got {log!r}")
        if log and low <= 0:
            raise ValueError(f"space[{name!r}]: log=True needs low > 0, got low={low!r}")
        if step is not None and (log or not isinstance(step, number) or isinstance(step, bool) or step <= 0):
            raise ValueError(f"space[{name!r}]: step must be a positive number and cannot go with log, got {step!r}")
        if kind == "int":
            out[name] = IntDistribution(low, high, log=log, step=step or 1)
        else:
            out[name] = FloatDistribution(float(low), float(high), log=log, step=step)
    return out


def suggest(trial: optuna.Trial, space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Ask ``trial`` for one value of every parameter in ``space``; returns ``{name: value}``."""
    return {name: _suggest_one(trial, name, dist) for name, dist in validate_space(space).items()}


def _suggest_one(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def grid_points(space: Mapping[str, Mapping[str, Any]], per_axis: int) -> dict[str, list]:
    """An evenly spaced grid (log-spaced where ``log``) with ``per_axis`` values per numeric axis."""
    if not isinstance(per_axis, int) or per_axis < 2:
        raise ValueError(f"per_axis must be an int >= 2, got {per_axis!r}")
    grid: dict[str, list] = {}
    for name, dist in validate_space(space).items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
            continue
        lo, hi = (math.log(dist.low), math.log(dist.high)) if dist.log else (dist.low, dist.high)
        values = [lo + (hi - lo) * i / (per_axis - 1) for i in range(per_axis)]
        values = [math.exp(v) for v in values] if dist.log else values
        values = [dist.low, *values[1:-1], dist.high]  # exact ends: exp(log(x)) may round past a bound
        if isinstance(dist, IntDistribution):
            values = sorted({int(round(v)) for v in values})
        grid[name] = values
    return grid


def edge_params(study: optuna.Study, space: Mapping[str, Mapping[str, Any]], tol: float = 0.05) -> list[str]:
    """Numeric parameters whose best value lies within ``tol`` (fraction of the range, in log units
    where ``log``) of a bound: a sign that the optimum may lie outside the space."""
    best = study.best_trial.params
    edges = []
    for name, dist in validate_space(space).items():
        if isinstance(dist, CategoricalDistribution) or name not in best:
            continue
        if isinstance(dist, IntDistribution) and (dist.high - dist.low) // dist.step < 2:
            continue  # with two possible values every choice is "at an edge"
        f = math.log if dist.log else float
        pos = (f(best[name]) - f(dist.low)) / (f(dist.high) - f(dist.low))
        if pos <= tol or pos >= 1 - tol:
            edges.append(name)
    return edges


def refine_space(space: Mapping[str, Mapping[str, Any]], study: optuna.Study, top_k: int = 5,
                 margin: float = 0.25) -> dict[str, dict[str, Any]]:
    """Coarse to fine: a new space around the ``top_k`` best finished trials.

    Numeric ranges span the top trials plus ``margin`` of that span on each side (in log units
    where ``log``; they may grow past the old bounds, which helps when the optimum was at an edge);
    categorical parameters keep the choices the top trials used.
    """
    validate_space(space)
    trials = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)[:top_k]
    if len(trials) < 2:
        raise ValueError(f"refine_space needs at least 2 completed trials, the study has {len(trials)}")
    new: dict[str, dict[str, Any]] = {}
    for name, spec in space.items():
        values = [t.params[name] for t in trials if name in t.params]
        if spec["type"] == "categorical":
            new[name] = {"type": "categorical", "choices": [c for c in spec["choices"] if c in values]}
            continue
        log = spec.get("log", False)
        f, g = (math.log, math.exp) if log else (float, float)
        lo, hi = f(min(values)), f(max(values))
        pad = margin * (hi - lo) if hi > lo else margin * abs(lo or 1.0)
        low, high = g(lo - pad), g(hi + pad)
        step = spec.get("step")
        if spec["type"] == "int":
            low, high = math.floor(low), math.ceil(high)
        if step:  # stay on the old grid of allowed values (e.g. widths in multiples of 16)
            low = spec["low"] + step * math.floor((low - spec["low"]) / step)
            high = spec["low"] + step * math.ceil((high - spec["low"]) / step)
        # keep the sign: a layer count stays >= 1, dropout or weight decay stays >= 0
        minimum = 1 if spec["type"] == "int" and spec["low"] >= 1 else None
        if minimum is None and spec["low"] >= 0 and not log:
            minimum = 0 if spec["type"] == "int" else 0.0
        if minimum is not None and low < minimum:
            low = low + step * math.ceil((minimum - low) / step) if step else minimum
        if spec["type"] == "int":
            high = max(high, low + (step or 1))
        new[name] = {"type": spec["type"], "low": low, "high": high, "log": log, **({"step": step} if step else {})}
    validate_space(new)
    return new


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
    if not isinstance(sleep, (int, float)) or sleep < 0:
        raise ValueError(f"sleep must be a number >= 0, got {sleep!r}")

    def objective(trial: optuna.Trial) -> float:
        p = suggest(trial, QUADRATIC_SPACE)
        trial.set_user_attr("worker", os.getpid())
        time.sleep(sleep)
        return (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2

    return objective


# ----------------------------------------------------------------------------- strategies


def make_sampler(name: str, seed: int | None = None, *, space: Mapping[str, Mapping[str, Any]] | None = None,
                 per_axis: int = 4, n_startup_trials: int = 10) -> optuna.samplers.BaseSampler:
    """A sampler by name: ``random``, ``grid`` (needs ``space``), ``tpe`` (Bayesian), ``cmaes``
    (evolutionary; needs the ``cmaes`` package) or ``nsga2`` (evolutionary, multi-objective)."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        if space is None:
            raise ValueError("sampler 'grid' needs space= to lay the grid on")
        return optuna.samplers.GridSampler(grid_points(space, per_axis), seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
    if name == "cmaes":
        if not HAS_CMAES:
            raise ImportError("sampler 'cmaes' needs the cmaes package: pip install cmaes")
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=n_startup_trials)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise ValueError(f"sampler must be one of random, grid, tpe, cmaes, nsga2, got {name!r}")


def make_pruner(name: str, *, min_steps: int = 1, max_steps: int | None = None,
                n_startup_trials: int = 4) -> optuna.pruners.BasePruner:
    """A pruner by name: ``none``, ``median`` (stop a trial below the median of earlier ones at the
    same step), ``halving`` (successive halving) or ``hyperband``; steps are training steps."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=min_steps)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_steps, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min_steps, max_resource=max_steps or "auto",
                                              reduction_factor=3)
    raise ValueError(f"pruner must be one of none, median, halving, hyperband, got {name!r}")


# ----------------------------------------------------------------------------- storage


def make_storage(url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 max_retry: int = 2) -> optuna.storages.BaseStorage:
    """Open the storage at ``url``, checked first: ``sqlite:///study.db`` (one machine),
    ``postgresql://user:pw@host/db`` or ``mysql://...`` (many machines), or ``journal:PATH`` (an
    append-only log file, safe on network file systems).

    With ``heartbeat_interval`` (seconds; database URLs only) every running trial writes a
    heartbeat; a trial whose worker died (no heartbeat for ``grace_period``) is marked failed and
    queued again with the same parameters, up to ``max_retry`` times.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"storage must be a URL such as sqlite:///study.db, got {url!r}")
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):].removeprefix("//"))
        if not path.name or not path.parent.is_dir():
            raise ValueError(f"storage {url!r}: the folder of journal file {str(path)!r} does not exist")
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError as err:
        raise ValueError(f"storage must be a database URL (sqlite:///file.db, postgresql://..., "
                         f"mysql://...) or journal:PATH, got {url!r}") from err
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql", "mysql"):
        raise ValueError(f"storage: database must be sqlite, postgresql or mysql, got {backend!r} in {url!r}")
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        db = parsed.database or ""
        if db in ("", ":memory:"):
            raise ValueError(f"storage {url!r}: give a file (sqlite:///study.db); an in-memory database "
                             "cannot be shared or resumed")
        if not Path(db).resolve().parent.is_dir():
            raise ValueError(f"storage {url!r}: folder {str(Path(db).resolve().parent)!r} does not exist")
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}  # wait for the other writers' locks
    for attempt in range(5):  # two processes creating the tables of a new file at once may collide
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; we rely on them
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                if heartbeat_interval is not None:
                    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry)
                    kwargs.update(heartbeat_interval=heartbeat_interval, heartbeat_stale_trial_callback=retry,
                                  grace_period=grace_period or 2 * heartbeat_interval)
                return optuna.storages.RDBStorage(url, **kwargs)
        except ImportError as err:
            raise ValueError(f"storage {url!r}: the database driver is not installed ({err})") from err
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError):
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- reading a study


def trial_rows(study: optuna.Study) -> Table:
    """The study's trials as tidy rows (what ``study.trials_dataframe()`` gives, without pandas)."""
    rows = Table()
    for t in study.trials:
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        if t.values is not None and len(t.values) > 1:
            row.update({f"value_{i}": v for i, v in enumerate(t.values)})
        else:
            row["value"] = t.value
        row.update({f"params_{k}": v for k, v in t.params.items()})
        row["duration_s"] = t.duration.total_seconds() if t.duration is not None else None
        row.update({f"user_attrs_{k}": v for k, v in t.user_attrs.items()})
        rows.append(row)
    return rows


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write rows (e.g. ``trial_rows(study)``) as a CSV file; columns are the union of the keys."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def best_so_far(values: Sequence[float | None], direction: str = "minimize") -> list[float]:
    """Running best of trial values in trial order; ``None`` (pruned/failed) keeps the last best."""
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    better = min if direction == "minimize" else max
    out, best = [], math.nan
    for v in values:
        if v is not None and math.isfinite(v):
            best = v if math.isnan(best) else better(best, v)
        out.append(best)
    return out


def pruning_savings(study: optuna.Study, full_steps: int) -> dict[str, float]:
    """Training steps the study spent vs. what every finished trial at ``full_steps`` would cost.

    Reads the ``steps_trained`` user attribute that the GPT objective records on each trial.
    """
    trials = [t for t in study.trials if t.state in FINISHED]
    spent = sum(int(t.user_attrs.get("steps_trained", full_steps)) for t in trials)
    full = full_steps * len(trials)
    return {"trials": len(trials), "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "steps_spent": spent, "steps_without_pruning": full, "saved_fraction": 1 - spent / full if full else 0.0}


def warm_start(study: optuna.Study, source: optuna.Study, top_k: int = 3) -> list[dict[str, Any]]:
    """Queue the parameters of ``source``'s ``top_k`` best completed trials as the first trials of
    ``study`` (run again, not copied: the objective may have changed). Returns the queued params."""
    done = [t for t in source.trials if t.state == TrialState.COMPLETE and t.values is not None]
    done.sort(key=lambda t: t.values[0], reverse=source.directions[0] == optuna.study.StudyDirection.MAXIMIZE)
    queued = [dict(t.params) for t in done[:top_k]]
    for params in queued:
        study.enqueue_trial(params, skip_if_exists=True)
    return queued


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
                                                               "seed", "device", "progress", "patience"}
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
        # train() evaluates with the trial's own batch size; we measure on fixed windows instead
        # (see ``validate``), so its own evaluation is kept to one batch
        train = TrainConfig(steps=self.steps, block_size=self.block_size, eval_every=self.eval_every,
                            eval_batches=1, seed=self.seed if seed is None else seed,
                            device=self.device, progress=False, **p)
        return model, train

    def validate(self, model: Any, tokens: Any = None) -> float:
        """Mean loss on the same windows of ``tokens`` (default: the validation split) for every trial."""
        import torch

        from helpers.train import evaluate

        tokens = self.data.val if tokens is None else tokens
        windows = torch.Generator().manual_seed(self.seed + 1)  # fixed: independent of the trial's seed
        return evaluate(model, tokens, self.eval_batch_size, self.block_size, self.eval_batches, windows, model.device)

    def train(self, params: Mapping[str, Any], seed: int | None = None,
              on_eval: Callable[[int, float], bool | None] | None = None) -> tuple[Any, Any]:
        """Build and train the model for ``params``; returns ``(model, History)``."""
        from helpers.model import GPT
        from helpers.runtime import seed_everything
        from helpers.train import train

        model_cfg, train_cfg = self.configs(params, seed)
        seed_everything(train_cfg.seed)  # the same initial weights for every trial
        model = GPT(model_cfg)
        curve: list[tuple[int, float]] = []

        def measured(step: int, _own_val_loss: float) -> bool | None:
            curve.append((step, self.validate(model)))
            return on_eval(step, curve[-1][1]) if on_eval is not None else None

        history = train(model, self.data, train_cfg, on_eval=measured)
        history.eval_step, history.val_loss = [s for s, _ in curve], [v for _, v in curve]
        if curve:
            history.best_step, history.best_val_loss = min(curve, key=lambda sv: sv[1])
        return model, history

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


# ----------------------------------------------------------------------------- workers


class _OverBudget(Exception):
    """Raised inside a trial that another worker's trial beat to the last slot."""


GPT_WORKER_SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
    "batch_size": {"type": "int", "low": 8, "high": 32, "log": True},
    "n_layer": {"type": "int", "low": 1, "high": 4},
    "n_embd": {"type": "int", "low": 32, "high": 128, "step": 32},
}


def _gpt_worker_objective(steps: int, seed: int, space_file: str | None) -> GPTObjective:
    from helpers.checkpoints import load_base_model
    from helpers.corpus import load_corpus
    from helpers.data import encode_splits

    space = GPT_WORKER_SPACE
    if space_file is not None:  # a search space is data, so it can travel as a JSON file
        try:
            space = json.loads(Path(space_file).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"space file {space_file!r} could not be read as JSON: {err}") from err
    _, tokenizer = load_base_model("cpu")
    data = encode_splits(load_corpus("english"), tokenizer, max_stories=2000)
    return GPTObjective(data, tokenizer.vocab_size, space, steps=steps, seed=seed)


def run_worker(study: str, storage: str, trials: int, objective: str = "quadratic", sampler: str = "tpe",
               seed: int | None = None, sleep: float = 0.0, steps: int = 200, heartbeat: int | None = 2,
               space_file: str | None = None) -> int:
    """Work on the shared study ``study`` in ``storage`` until it holds ``trials`` finished trials.

    Any number of workers may run this at once, on one machine or many (with a database server).
    Each trial takes a slot; a trial that lost a race for the last slot is marked failed with the
    user attribute ``over_budget`` and not run, so the study ends with exactly ``trials`` finished
    trials. With ``heartbeat`` (database storages), trials of a killed worker are retried, and a
    worker with nothing left to start waits for running trials until the study is complete.
    Returns how many trials this worker finished.
    """
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ValueError(f"trials must be a positive int, got {trials!r}")
    if objective not in ("quadratic", "gpt"):
        raise ValueError(f"objective must be 'quadratic' or 'gpt', got {objective!r}")
    journal = storage.startswith("journal:") if isinstance(storage, str) else False
    store = make_storage(storage, heartbeat_interval=None if journal else heartbeat)
    s = optuna.create_study(study_name=study, storage=store, load_if_exists=True,
                            sampler=make_sampler(sampler, seed, n_startup_trials=5))
    fn = quadratic_objective(sleep) if objective == "quadratic" else _gpt_worker_objective(steps, seed or 0, space_file)

    def guarded(trial: optuna.Trial) -> float | tuple[float, float]:
        ahead = [t for t in s.get_trials(deepcopy=False, states=_SLOT_STATES) if t.number < trial.number]
        if len(ahead) >= trials:
            trial.set_user_attr("over_budget", True)
            raise _OverBudget(f"the study already has {trials} trials")
        return fn(trial)

    states: list[TrialState] = []  # of the trials this worker ran
    while True:
        counts = {state: 0 for state in TrialState}
        for t in s.get_trials(deepcopy=False):
            counts[t.state] += 1
        if counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] >= trials:
            break
        taken = sum(counts[state] for state in _SLOT_STATES)
        if taken >= trials and not counts[TrialState.WAITING]:
            if journal or not heartbeat:  # nobody can tell a dead worker's trial from a slow one
                break
            time.sleep(heartbeat / 2)  # others still run trials; theirs may fail and come back
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(s)
            continue
        s.optimize(guarded, n_trials=1, catch=(_OverBudget,), callbacks=[lambda _, t: states.append(t.state)])
    return sum(state in FINISHED for state in states)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m helpers.tuning worker --study NAME --storage URL --trials N``."""
    parser = argparse.ArgumentParser(prog="python -m helpers.tuning", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run trials of a shared study until it has --trials finished trials")
    w.add_argument("--study", required=True, help="study name (created if missing)")
    w.add_argument("--storage", required=True, help="sqlite:///file.db, postgresql://user:pw@host/db or journal:PATH")
    w.add_argument("--trials", type=int, required=True, help="finished trials the whole study should reach")
    w.add_argument("--objective", choices=("quadratic", "gpt"), default="quadratic")
    w.add_argument("--sampler", choices=("random", "tpe", "cmaes"), default="tpe")
    w.add_argument("--seed", type=int, default=None, help="sampler seed (give each worker its own)")
    w.add_argument("--sleep", type=float, default=0.0, help="seconds each quadratic trial pretends to train")
    w.add_argument("--steps", type=int, default=200, help="training steps per gpt trial")
    w.add_argument("--space", default=None, help="JSON file with the gpt search space (default: GPT_WORKER_SPACE)")
    w.add_argument("--heartbeat", type=int, default=2, help="seconds between heartbeats (0 = off)")
    s = sub.add_parser("show", help="print the trials of a study")
    s.add_argument("--study", required=True)
    s.add_argument("--storage", required=True)
    args = parser.parse_args(argv)
    if args.command == "worker":
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        n = run_worker(args.study, args.storage, args.trials, args.objective, args.sampler, args.seed,
                       args.sleep, args.steps, args.heartbeat or None, args.space)
        print(f"worker {os.getpid()}: finished {n} trial(s) of study {args.study!r}")
    else:
        study = optuna.load_study(study_name=args.study, storage=make_storage(args.storage))
        for row in trial_rows(study):
            print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
