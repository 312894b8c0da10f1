"""Optuna workers on a real PostgreSQL server (started for these tests, removed afterwards).

Two `python -m helpers.tuning worker` processes share one study; a worker killed mid-trial loses nothing;
a wrong password or an unreachable server fails fast with a clear message; the password never shows.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import postgres_server
import pytest
from optuna.trial import TrialState

from helpers import tuning

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(request):
    missing = []
    if postgres_server.find_bin() is None:
        missing.append("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    if importlib.util.find_spec("psycopg") is None:
        missing.append("the driver psycopg is not installed (pip install -e '.[cluster]')")
    if missing:
        if os.environ.get("COURSE_REQUIRE_SERVICES") == "1":  # CI installs both: there a skip would hide a gap
            pytest.fail("; ".join(missing))
        pytest.skip("; ".join(missing))
    started = postgres_server.start()
    request.addfinalizer(started.stop)  # stopped and deleted even when a test fails
    return started


def _worker(study: str, trials: int, seed: int, sleep: float, storage: str | None, env: dict | None = None,
            heartbeat: int = 1, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "helpers.tuning", "worker", "--study", study, "--trials", str(trials),
           "--seed", str(seed), "--sleep", str(sleep), "--heartbeat", str(heartbeat), *extra]
    if storage is not None:
        cmd += ["--storage", storage]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, password: str, timeout: float = 90) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert password not in out + err
    return out


def _study(server, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=tuning.make_storage(server.url))


def _check_exactly(study: optuna.Study, n: int) -> list[optuna.trial.FrozenTrial]:
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == n
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len({(t.params["x"], t.params["y"]) for t in done}) == n  # no trial evaluated twice
    for t in done:  # each value belongs to its own parameters
        assert t.value == pytest.approx((t.params["x"] - 1) ** 2 + (t.params["y"] + 2) ** 2)
    return done


def test_two_workers_finish_exactly_the_requested_trials(server, tmp_path):
    # neither worker has the password on its command line: one reads the whole URL from COURSE_STORAGE,
    # the other gets a URL without password and finds it in PostgreSQL's password file
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{server.port}:{postgres_server.DATABASE}:{postgres_server.USER}:{server.password}\n")
    pgpass.chmod(0o600)  # libpq ignores a password file that others can read
    n = 10
    workers = [_worker("two", n, 1, 0.05, None, env={tuning.STORAGE_ENV: server.url}),
               _worker("two", n, 2, 0.05, server.url_without_password, env={"PGPASSFILE": str(pgpass)})]
    for w in workers:
        assert server.password not in " ".join(w.args)
    outputs = [_finish(w, server.password) for w in workers]
    done = _check_exactly(_study(server, "two"), n)
    assert {t.user_attrs["worker"] for t in done} == {w.pid for w in workers}, "both workers took part"
    assert sum(int(out.split("finished ")[1].split()[0]) for out in outputs) == n


def test_a_worker_killed_mid_trial_is_retried_and_nothing_completed_is_lost(server):
    n = 5
    victim = _worker("killed", n, 1, 1.0, server.url)  # each trial "trains" for 1 s: time to catch it mid-trial
    store = tuning.make_storage(server.url)  # one connection for all the polling below, also on a busy machine
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until it has finished two trials and "trains" the next one
        time.sleep(0.1)
        try:
            trials = optuna.load_study(study_name="killed", storage=store).trials
        except KeyError:  # the study does not exist yet
            continue
        # both parameters written: the kill falls into the training (the sleep), not into the trial's set-up
        if (sum(t.state == TrialState.COMPLETE for t in trials) >= 2 and trials[-1].state == TrialState.RUNNING
                and len(trials[-1].params) == 2):
            break
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    before = {t.number: t.value for t in _study(server, "killed").trials if t.state == TrialState.COMPLETE}
    killed = [t.number for t in _study(server, "killed").trials if t.state == TrialState.RUNNING]
    assert len(before) >= 2 and len(killed) == 1

    _finish(_worker("killed", n, 2, 0.0, server.url), server.password)
    study = _study(server, "killed")
    done = _check_exactly(study, n)
    assert {t.number: t.value for t in done if t.number in before} == before  # nothing lost or changed
    dead = study.trials[killed[0]]
    assert dead.state == TrialState.FAIL  # the heartbeat stopped, so the trial was failed ...
    retried = [t for t in done if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == dead.number]
    assert len(retried) == 1, [(t.number, t.state, t.system_attrs) for t in study.trials]
    assert retried[0].params == dead.params  # ... and run again with its parameters


def _failing_worker(storage: str, *extra: str) -> subprocess.CompletedProcess:
    # the timeout guards against a hang: a worker that cannot connect must give up by itself, fast
    return subprocess.run([sys.executable, "-m", "helpers.tuning", "worker", "--study", "x", "--trials", "1",
                           "--storage", storage, *extra], cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "PGPASSFILE": os.devnull})


def test_a_wrong_password_fails_fast_with_a_clear_message_and_never_shows_it(server):
    wrong = "not-the-" + server.password
    done = _failing_worker(server.url.replace(server.password, wrong))
    assert done.returncode != 0
    assert "password authentication failed" in done.stderr
    assert f"postgresql://{postgres_server.USER}:***@127.0.0.1:{server.port}" in done.stderr  # the masked URL
    assert wrong not in done.stdout + done.stderr and server.password not in done.stdout + done.stderr


def test_an_unreachable_server_fails_fast_with_a_clear_message(server):
    closed = postgres_server._free_port()  # nobody listens there
    done = _failing_worker(f"postgresql://course:secret-pw@127.0.0.1:{closed}/optuna")
    assert done.returncode != 0 and f"127.0.0.1:{closed}" in done.stderr and "cannot connect" in done.stderr
    assert "secret-pw" not in done.stderr
    # an address that never answers (TEST-NET-1, reserved for documentation): the connect timeout ends it
    done = _failing_worker("postgresql://course:secret-pw@192.0.2.1:5432/optuna", "--connect-timeout", "2")
    assert done.returncode != 0 and "192.0.2.1" in done.stderr and "cannot connect" in done.stderr
    assert "secret-pw" not in done.stderr


def test_storage_urls_are_checked_and_masked(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown storage scheme 'redis'"):
        tuning.make_storage("redis://localhost/0")
    with pytest.raises(ValueError, match=r"unknown storage scheme 'http'.*sqlite.*postgresql.*journal"):
        tuning.make_storage("http://user:pw@example.org/db")
    assert tuning.mask_url("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert tuning.mask_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert tuning.mask_url("journal:/tmp/x.log") == "journal:/tmp/x.log"
    monkeypatch.delenv(tuning.STORAGE_ENV, raising=False)
    with pytest.raises(ValueError, match=tuning.STORAGE_ENV):
        tuning.storage_url(None)
    monkeypatch.setenv(tuning.STORAGE_ENV, "sqlite:///from-env.db")
    assert tuning.storage_url(None) == "sqlite:///from-env.db"
    assert tuning.storage_url("sqlite:///given.db") == "sqlite:///given.db"
