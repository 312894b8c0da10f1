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

from helpers.tuning.hardware import corner_memory, fit_batch_size, step_memory
from helpers.tuning.objective import (
    _COSTS,
    _MODEL_KEYS,
    QUADRATIC_SPACE,
    GPTObjective,
    evaluate_on_test,
    gpt_objective,
    one_axis_loss,
    quadratic_objective,
)
from helpers.tuning.results import FINISHED, best_so_far, pruning_savings, trial_rows, warm_start, write_csv
from helpers.tuning.spaces import (
    PARAM_TYPES,
    _suggest_one,
    edge_params,
    grid_axes,
    refine_space,
    suggest,
    validate_space,
)
from helpers.tuning.storage import STORAGE_ENV, make_storage, mask_url, storage_url
from helpers.tuning.strategies import HAS_CMAES, make_pruner, make_sampler
from helpers.tuning.worker import (
    _SLOT_STATES,
    GPT_WORKER_SPACE,
    _gpt_worker_objective,
    _OverBudget,
    main,
    run_worker,
)

__all__ = [
    "FINISHED", "GPT_WORKER_SPACE", "HAS_CMAES", "PARAM_TYPES", "QUADRATIC_SPACE", "GPTObjective",
    "_COSTS", "_MODEL_KEYS", "_OverBudget", "_SLOT_STATES", "_gpt_worker_objective", "_suggest_one",
    "best_so_far", "corner_memory", "edge_params", "fit_batch_size", "evaluate_on_test", "gpt_objective", "grid_axes", "main", "make_pruner",
    "make_sampler", "make_storage", "mask_url", "storage_url", "STORAGE_ENV", "one_axis_loss", "pruning_savings", "quadratic_objective", "refine_space",
    "run_worker", "step_memory", "suggest", "trial_rows", "validate_space", "warm_start", "write_csv",
]
