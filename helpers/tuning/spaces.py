"""Search spaces written as data: validation, suggestion, grids, and refining a space around a study's best."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

PARAM_TYPES = ("float", "int", "categorical")


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
            if not isinstance(value, number) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"space[{name!r}]: {key} must be a{'n int' if kind == 'int' else ' finite number'}, "
                                 f"got {value!r}")
        if not low < high:
            raise ValueError(f"space[{name!r}]: low must be < high, got low={low!r}, high={high!r}")
        if not isinstance(log, bool):
            raise ValueError(f"space[{name!r}]: log must be True or False, got {log!r}")
        if log and low <= 0:
            raise ValueError(f"space[{name!r}]: log=True needs low > 0, got low={low!r}")
        if step is not None and (log or not isinstance(step, number) or isinstance(step, bool)
                                 or not 0 < step < math.inf):
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


def grid_axes(space: Mapping[str, Mapping[str, Any]], per_axis: int) -> dict[str, list]:
    """The values of each axis of an evenly spaced grid (log-spaced where ``log``), ``per_axis`` per
    numeric axis; Optuna's GridSampler takes them as they are (``helpers.experiments.grid_points``
    would list their combinations)."""
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
