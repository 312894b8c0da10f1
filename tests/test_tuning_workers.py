"""Several `python -m helpers.tuning worker` processes share one study; a killed worker loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from helpers import tuning

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
ROOT = Path(__file__).resolve().parents[1]


def _worker(url: str, trials: int, seed: int, sleep: float, heartbeat: int = 1) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "helpers.tuning", "worker", "--study", "shared", "--storage", url,
           "--trials", str(trials), "--seed", str(seed), "--sleep", str(sleep), "--heartbeat", str(heartbeat)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def _study(url: str) -> optuna.Study:
    return optuna.load_study(study_name="shared", storage=tuning.make_storage(url))


def _check_exactly(study: optuna.Study, n: int) -> list[optuna.trial.FrozenTrial]:
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == n
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len({t.number for t in done}) == n
    assert len({(t.params["x"], t.params["y"]) for t in done}) == n  # no trial evaluated twice
    for t in done:  # each value belongs to its own parameters
        assert t.value == pytest.approx((t.params["x"] - 1) ** 2 + (t.params["y"] + 2) ** 2)
    return done


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_workers_complete_exactly_the_requested_trials(tmp_path, kind):
    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'study.log'}"
    n = 8
    workers = [_worker(url, n, seed, sleep=0.05) for seed in (1, 2)]  # started together on a new file
    outputs = [_finish(w) for w in workers]
    done = _check_exactly(_study(url), n)
    # each worker's own count matches the trials that carry its pid (one that started late may have
    # found nothing left to do: whether both take part is a race, not part of the contract)
    for w, out in zip(workers, outputs):
        finished = int(out.split("finished ")[1].split()[0])
        assert finished == sum(t.user_attrs["worker"] == w.pid for t in done), out
    assert {t.user_attrs["worker"] for t in done} <= {w.pid for w in workers}


def test_a_killed_worker_loses_no_trial_and_the_study_resumes(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    n = 5
    victim = _worker(url, n, seed=1, sleep=0.3)
    deadline = time.time() + 30
    while time.time() < deadline:  # wait until it has finished a few trials and runs the next one
        time.sleep(0.2)
        try:
            trials = _study(url).trials
        except KeyError:  # the study does not exist yet
            continue
        if sum(t.state == TrialState.COMPLETE for t in trials) >= 2 and trials[-1].state == TrialState.RUNNING:
            break
    else:
        victim.kill()
        pytest.fail("the worker never reached the state to kill it in (two trials done, one running) within 30 s")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    before = {t.number: t.value for t in _study(url).trials if t.state == TrialState.COMPLETE}
    killed = [t.number for t in _study(url).trials if t.state == TrialState.RUNNING]
    assert len(before) >= 2 and len(killed) == 1

    _finish(_worker(url, n, seed=2, sleep=0.0))
    study = _study(url)
    done = _check_exactly(study, n)
    assert {t.number: t.value for t in done if t.number in before} == before  # nothing lost or changed
    dead = study.trials[killed[0]]
    assert dead.state == TrialState.FAIL  # the heartbeat stopped, so the trial was failed ...
    retried = [t for t in done if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == dead.number]
    assert len(retried) == 1  # ... and run again with the params it had drawn; a trial killed before it
    # drew all of them (or any) draws the rest anew, so the retry holds the dead trial's params and perhaps more
    assert {k: retried[0].params.get(k) for k in dead.params} == dead.params


def test_worker_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="storage"):
        tuning.main(["worker", "--study", "s", "--storage", "nonsense", "--trials", "3"])
    with pytest.raises(ValueError, match="trials must be a positive int"):
        tuning.run_worker("s", f"sqlite:///{tmp_path / 'x.db'}", 0)
    with pytest.raises(ValueError, match="objective"):
        tuning.run_worker("s", f"sqlite:///{tmp_path / 'x.db'}", 3, objective="rosenbrock")


def test_worker_rejects_non_finite_sleep_and_bad_heartbeat(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    for bad in ("nan", "inf", "-1"):
        with pytest.raises(ValueError, match=rf"sleep must be a finite number of seconds >= 0, got {bad.lstrip('-')}|got -1"):
            tuning.main(["worker", "--study", "s", "--storage", url, "--trials", "1", "--sleep", bad])
    with pytest.raises(ValueError, match="heartbeat must be None .* got -2"):
        tuning.run_worker("s", url, 1, heartbeat=-2)
    with pytest.raises(ValueError, match="lock_timeout must be a finite number of seconds >= 0, got nan"):
        tuning.make_storage(url, lock_timeout=float("nan"))


def test_journal_worker_killed_mid_trial_is_failed_and_retried(tmp_path):
    """Optuna's journal storage has no heartbeats: a killed worker's trial used to stay RUNNING forever,
    and a fresh worker stopped one trial short of the count."""
    url = f"journal:{tmp_path / 'study.log'}"
    n = 4
    victim = _worker(url, n, seed=1, sleep=0.5)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until it has finished a trial and runs the next one
        time.sleep(0.2)
        try:
            trials = _study(url).trials
        except KeyError:
            continue
        if sum(t.state == TrialState.COMPLETE for t in trials) >= 1 and trials[-1].state == TrialState.RUNNING:
            break
    else:
        victim.kill()
        pytest.fail("the worker never reached the state to kill it in (a trial done, one running) within 60 s")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed = [t.number for t in _study(url).trials if t.state == TrialState.RUNNING]
    assert len(killed) == 1

    _finish(_worker(url, n, seed=2, sleep=0.0))
    study = _study(url)
    _check_exactly(study, n)
    dead = study.trials[killed[0]]
    assert dead.state == TrialState.FAIL
    retried = [t for t in study.trials
               if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == dead.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    if dead.params:  # (killed before it drew its parameters, the retry draws its own)
        assert retried[0].params == dead.params


_HOLD_LOCK = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("CREATE TABLE IF NOT EXISTS t (x)")
con.execute("BEGIN " + sys.argv[2])
con.execute("INSERT INTO t VALUES (1)")
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("kind,lock", [("EXCLUSIVE", "EXCLUSIVE"), ("IMMEDIATE", "RESERVED")])
def test_locked_sqlite_file_is_reported_at_once_and_the_wait_is_bounded(tmp_path, kind, lock):
    db = tmp_path / "study.db"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(db), kind], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert tuning.storage.sqlite_lock(db) == lock
        cmd = [sys.executable, "-m", "helpers.tuning", "worker", "--study", "s", "--storage", f"sqlite:///{db}",
               "--trials", "1", "--lock-timeout", "1"]
        # (the subprocess timeout only keeps a regression from hanging the suite; nothing is timed)
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode != 0
        first = done.stderr.splitlines()[0]
        assert "is locked by another process" in first and f"({'an' if lock == 'EXCLUSIVE' else 'a'} {lock} lock)" in first
        assert "waiting up to 1 s" in first
        assert "Still locked after 1 s (lock_timeout / --lock-timeout)" in done.stderr
    finally:
        holder.kill()
        holder.wait()
    assert tuning.storage.sqlite_lock(db) is None  # the lock died with its process
    tuning.make_storage(f"sqlite:///{db}", lock_timeout=1)
