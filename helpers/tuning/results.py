"""Reading a study: tidy rows, CSV, the running best, what pruning saved, warm starts."""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from helpers.experiments import Table

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


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
    """Write rows (e.g. ``trial_rows(study)``) as a CSV file; columns are the union of the keys.

    The file is written next to ``path`` and renamed into place, so an interrupted write leaves an
    earlier file of that name as it was.
    """
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
