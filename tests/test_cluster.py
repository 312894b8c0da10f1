"""Ray Tune with Optuna's TPE and ASHA on a local Ray instance, against a plain Optuna study on the same budget."""

from __future__ import annotations

import os
import socket

import numpy as np
import optuna
import pytest

from helpers import cluster, tuning

optuna.logging.set_verbosity(optuna.logging.WARNING)
N_TRIALS, MAX_T = 20, 9


@pytest.fixture(scope="module")
def ray_instance(request):
    if not cluster.HAS_RAY:
        if os.environ.get("COURSE_REQUIRE_SERVICES") == "1":  # CI installs the [cluster] extra: never skip there
            pytest.fail(cluster.INSTALL_HINT)
        pytest.skip(cluster.INSTALL_HINT)
    ray = cluster.start_ray(num_cpus=2)
    request.addfinalizer(cluster.stop_ray)
    return ray


def _random_search_median_best(n_trials: int, runs: int = 4000) -> float:
    """Median over many random searches of the best toy value found in ``n_trials`` uniform draws."""
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-5, 5, (2, runs, n_trials))
    return float(np.median(((x - 1) ** 2 + (y + 2) ** 2).min(axis=1))) + 1.0 / MAX_T


def test_ray_tune_with_tpe_and_asha_is_as_good_as_the_plain_optuna_study(ray_instance):
    space = tuning.QUADRATIC_SPACE
    rows = cluster.tune_search(cluster.toy_trainable(MAX_T), space, N_TRIALS, max_t=MAX_T, seed=0)
    study = cluster.optuna_search(lambda p: cluster.toy_value(p, MAX_T), space, N_TRIALS, seed=0)
    assert len(rows) == N_TRIALS == len(study.trials)
    for r in rows:  # every reported value belongs to its own parameters and its own step
        assert r["loss"] == pytest.approx((r["x"] - 1) ** 2 + (r["y"] + 2) ** 2 + 1 / r["step"])
        assert r["reports"] == r["step"]
    stopped = [r for r in rows if r["reports"] < MAX_T]
    assert stopped, "ASHA stopped no trial early"
    finished = [r["loss"] for r in rows if r["reports"] == MAX_T]
    ray_best, optuna_best = min(finished), study.best_value
    random_best = _random_search_median_best(N_TRIALS)  # an independent baseline: what random search gets
    # the optimum is 1/MAX_T; both searches with TPE must beat the typical random search of the same budget
    print(f"best: ray {ray_best:.3f}, optuna {optuna_best:.3f}, random median {random_best:.3f}; stopped {len(stopped)}")
    assert ray_best < random_best and optuna_best < random_best, (ray_best, optuna_best, random_best)
    assert abs(ray_best - optuna_best) < random_best - 1 / MAX_T, "comparable: closer than random search's typical miss"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_ray_address_fails_fast_and_names_it():
    port = _closed_port()
    with pytest.raises(ConnectionError, match=rf"'127.0.0.1:{port}'"):
        cluster.check_address(f"127.0.0.1:{port}")
    with pytest.raises(ConnectionError, match=r"'ray://192.0.2.1:10001'"):  # TEST-NET-1: nothing answers there
        cluster.check_address("ray://192.0.2.1:10001", timeout=1)
    for bad in ("head-node", "head:port", "", "ray://:6379"):
        with pytest.raises(ValueError, match="address must be"):
            cluster.check_address(bad)
    if cluster.HAS_RAY:
        with pytest.raises(ConnectionError, match=str(port)):
            cluster.start_ray(f"127.0.0.1:{port}")
