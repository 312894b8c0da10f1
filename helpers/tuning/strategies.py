"""Strategies by name: Optuna samplers (random, grid, TPE, CMA-ES, NSGA-II) and pruners."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import optuna

from helpers.tuning.spaces import grid_axes

HAS_CMAES = importlib.util.find_spec("cmaes") is not None  # optuna's CmaEsSampler needs it


def make_sampler(name: str, seed: int | None = None, *, space: Mapping[str, Mapping[str, Any]] | None = None,
                 per_axis: int = 4, n_startup_trials: int = 10) -> optuna.samplers.BaseSampler:
    """A sampler by name: ``random``, ``grid`` (needs ``space``), ``tpe`` (Bayesian), ``cmaes``
    (evolutionary; needs the ``cmaes`` package) or ``nsga2`` (evolutionary, multi-objective)."""
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32):
        raise ValueError(f"seed must be None or an int in [0, 2**32) (NumPy's seed range), got {seed!r}")
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        if space is None:
            raise ValueError("sampler 'grid' needs space= to lay the grid on")
        return optuna.samplers.GridSampler(grid_axes(space, per_axis), seed=seed)
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
