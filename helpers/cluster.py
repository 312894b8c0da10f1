"""Hyperparameter search on a Ray cluster: Ray Tune with Optuna's TPE and the ASHA scheduler.

The same search space (as data, see ``helpers.tuning``) and the same objective as a plain Optuna study,
run under ``ray.tune``: Ray starts every trial as a task on some machine of the cluster, Optuna's TPE
(``OptunaSearch``) proposes the parameters and ASHA (asynchronous successive halving) stops trials
that are behind at a rung. On one machine ``start_ray()`` starts a local Ray instance; on a cluster
(``ray start --head`` on one machine, ``ray start --address=HEAD:6379`` on the others)
``start_ray("HEAD:6379")`` joins it, and the code below runs unchanged.

Ray is optional: ``pip install "llm-params-course[cluster]"`` (or ``pip install "ray[tune]"``).
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import optuna

from helpers.experiments import Table
from helpers.runtime import release_memory
from helpers.tuning import suggest, validate_space

HAS_RAY = importlib.util.find_spec("ray") is not None
INSTALL_HINT = 'Ray Tune is not installed: pip install "ray[tune]" (or the course\'s extra: pip install -e ".[cluster]")'


def _require_ray() -> None:
    if not HAS_RAY:
        raise ImportError(INSTALL_HINT)


def check_address(address: str, timeout: float = 5.0) -> tuple[str, int]:
    """Parse ``HOST:PORT`` or ``ray://HOST:PORT`` and check within ``timeout`` seconds that something
    listens there; a clear ``ConnectionError`` naming the address instead of Ray's long retries."""
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"address must be 'HOST:PORT' or 'ray://HOST:PORT', got {address!r}")
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address must be 'HOST:PORT' or 'ray://HOST:PORT' (e.g. 'head-node:6379'), got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ConnectionError(f"cannot reach the Ray cluster at {address!r} within {timeout:g} s ({err}); is "
                              f"`ray start --head` running there and the port open?") from None
    return host, int(port)


def start_ray(address: str | None = None, num_cpus: int = 2, timeout: float = 5.0) -> Any:
    """Start a local Ray instance with ``num_cpus`` CPUs (``address=None``) or join the cluster at
    ``address`` (``HOST:PORT`` of the head node, or ``ray://HOST:10001`` for Ray Client).

    An address is checked first (see ``check_address``), so a wrong one fails in seconds.
    """
    _require_ray()
    if not isinstance(num_cpus, int) or isinstance(num_cpus, bool) or num_cpus < 1:
        raise ValueError(f"num_cpus must be a positive int, got {num_cpus!r}")
    if address is not None:
        check_address(address, timeout)
    release_memory()  # the notebook's freed memory back to the system before Ray's processes start beside it
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report (there is no network anyway)
    if ray.is_initialized():
        return ray
    if address is not None:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
        return ray
    for attempt in range(3):
        try:
            # "local": always a new instance of our own, never one that another process on this machine runs
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            return ray
        except Exception as err:  # Ray gives a busy machine 30 s to start its processes, then gives up
            ray.shutdown()
            if "timed out during startup" not in str(err) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def stop_ray() -> None:
    """Shut down the Ray instance this process started (or leave the cluster it joined)."""
    if HAS_RAY:
        import ray

        ray.shutdown()


def toy_trainable(steps: int = 9) -> Callable[[Mapping[str, Any]], None]:
    """A cheap stand-in for training on ``tuning.QUADRATIC_SPACE``: reports ``(x-1)^2 + (y+2)^2 + 1/step``
    at steps 1..``steps`` (a learning curve that falls towards the final value)."""

    def trainable(config: Mapping[str, Any]) -> None:
        from ray import tune

        final = (config["x"] - 1.0) ** 2 + (config["y"] + 2.0) ** 2
        for step in range(1, steps + 1):
            tune.report({"loss": final + 1.0 / step, "step": step})

    return trainable


def toy_value(params: Mapping[str, float], steps: int = 9) -> float:
    """What ``toy_trainable`` reports at its last step, for a plain Optuna study on the same problem."""
    return (params["x"] - 1.0) ** 2 + (params["y"] + 2.0) ** 2 + 1.0 / steps


def gpt_trainable(objective: Any) -> Callable[[Mapping[str, Any]], None]:
    """Ray Tune's form of a ``tuning.GPTObjective``: train with the trial's ``config`` and report the
    validation loss at every evaluation (as ``loss``), which is what ASHA compares at its rungs."""

    def trainable(config: Mapping[str, Any]) -> None:
        from ray import tune

        def on_eval(step: int, val_loss: float) -> None:
            tune.report({"loss": val_loss if math.isfinite(val_loss) else 1e9, "step": step})

        objective.train(dict(config), on_eval=on_eval)

    return trainable


def tune_search(trainable: Callable[[Mapping[str, Any]], None], space: Mapping[str, Mapping[str, Any]],
                num_samples: int, *, max_t: int, grace_period: int = 1, reduction_factor: int = 3, seed: int = 0,
                n_startup_trials: int = 5, max_concurrent: int = 2, cpus_per_trial: float = 1) -> Table:
    """Run ``num_samples`` trials of ``trainable`` under ``ray.tune`` with Optuna's TPE and ASHA; minimises
    the reported ``loss``. ``max_t`` is the most reports (rungs are counted in reports) a trial may make.

    Returns one row per trial in the order TPE proposed them: the parameters, the last reported
    ``loss``, the number of reports (fewer than ``max_t``: ASHA stopped it) and the final ``step``.
    Call ``start_ray()`` first.
    """
    _require_ray()
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    if not ray.is_initialized():
        raise RuntimeError("start Ray first: helpers.cluster.start_ray() (local) or start_ray('HEAD:6379')")
    for name, value in (("num_samples", num_samples), ("max_t", max_t), ("max_concurrent", max_concurrent)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
    search = OptunaSearch(validate_space(space), metric="loss", mode="min", sampler=sampler)
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=grace_period,
                              reduction_factor=reduction_factor)
    folder = tempfile.mkdtemp(prefix="course-ray-")  # Ray's per-trial logs; we keep only the results
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": cpus_per_trial}),
            tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=num_samples,
                                        metric="loss", mode="min", max_concurrent_trials=max_concurrent,
                                        reuse_actors=True),
            run_config=tune.RunConfig(storage_path=folder, name="search", verbose=0),
        )
        grid = tuner.fit()
        rows = Table()
        for result in grid:
            if result.error is not None:
                raise RuntimeError(f"a Ray Tune trial failed: {result.error}")
            m = result.metrics
            rows.append({**{k: result.config[k] for k in space}, "loss": m["loss"],
                         "reports": m["training_iteration"], "step": m.get("step"), "trial_id": m["trial_id"]})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def optuna_search(value: Callable[[Mapping[str, Any]], float], space: Mapping[str, Mapping[str, Any]],
                  num_samples: int, seed: int = 0, n_startup_trials: int = 5) -> optuna.Study:
    """The plain Optuna study on the same budget: TPE with the same seed and start-up trials, one process."""
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials))
    study.optimize(lambda trial: value(suggest(trial, space)), n_trials=num_samples)
    return study
