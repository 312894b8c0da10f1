"""Workers sharing one study, and the command line ``python -m helpers.tuning worker|show``."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import optuna
from optuna.trial import TrialState

from helpers.tuning.objective import GPTObjective, quadratic_objective
from helpers.tuning.results import FINISHED, trial_rows
from helpers.tuning.storage import STORAGE_ENV, make_storage, storage_url
from helpers.tuning.strategies import make_sampler

_DESCRIPTION = "Hyperparameter optimisation with Optuna: search spaces as data, objectives, storage, workers."
# States that hold one of a worker pool's n_trials slots (failed trials give theirs back).
_SLOT_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


# Optuna's journal storage has no heartbeats; the workers keep their own, as a system attribute of
# each running trial, so that a trial whose worker was killed is recognised, failed and retried.
_BEAT = "journal_heartbeat"
_GRACE = 3  # a running trial with no heartbeat for this many intervals counts as abandoned


class _OverBudget(Exception):
    """Raised inside a trial that another worker's trial beat to the last slot."""


@contextlib.contextmanager
def _journal_heartbeat(storage: optuna.storages.BaseStorage, trial_id: int, interval: float) -> Iterator[None]:
    """Write the time into the trial every ``interval`` seconds while the block runs (a daemon thread)."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.set_trial_system_attr(trial_id, _BEAT, time.time())
            except Exception:  # the trial finished (or was failed by another worker): stop beating
                return
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _fail_stale_journal_trials(study: optuna.Study, interval: float, max_retry: int = 2) -> list[int]:
    """Fail every running trial whose worker stopped beating, and queue it again with the same
    parameters (as Optuna's database heartbeats do); returns the numbers of the failed trials."""
    storage, now, failed = study._storage, time.time(), []
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = t.datetime_start.timestamp() if t.datetime_start is not None else now
        if now - max(t.system_attrs.get(_BEAT, 0.0), started) <= _GRACE * interval:
            continue
        try:
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished after all, or another worker failed it first
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry(study, storage.get_trial(t._trial_id))
        failed.append(t.number)
    return failed


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


def run_worker(study: str, storage: str | None, trials: int, objective: str = "quadratic", sampler: str = "tpe",
               seed: int | None = None, sleep: float = 0.0, steps: int = 200, heartbeat: int | None = 2,
               space_file: str | None = None, lock_timeout: float = 30.0, connect_timeout: float = 10) -> int:
    """Work on the shared study ``study`` in ``storage`` until it holds ``trials`` finished trials.

    Any number of workers may run this at once, on one machine or many (with a database server).
    Each trial takes a slot; a trial that lost a race for the last slot is marked failed with the
    user attribute ``over_budget`` and not run, so the study ends with exactly ``trials`` finished
    trials. With ``heartbeat`` (seconds), trials of a killed worker are failed and retried with the
    same parameters, and a worker with nothing left to start waits for running trials until the
    study is complete: Optuna's heartbeats for databases, the workers' own for a journal file
    (``journal:PATH``). Without heartbeats a killed worker's trial stays RUNNING and holds its slot,
    so the study ends one trial short. ``lock_timeout``: how long to wait for a locked SQLite file;
    ``connect_timeout``: how long to wait for a database server (see ``make_storage``).
    ``storage=None`` reads the URL from ``$COURSE_STORAGE`` (see ``helpers.tuning.storage``).
    Returns how many trials this worker finished.
    """
    storage = storage_url(storage)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ValueError(f"trials must be a positive int, got {trials!r}")
    if objective not in ("quadratic", "gpt"):
        raise ValueError(f"objective must be 'quadratic' or 'gpt', got {objective!r}")
    if not isinstance(sleep, (int, float)) or isinstance(sleep, bool) or not 0 <= sleep < math.inf:
        raise ValueError(f"sleep must be a finite number of seconds >= 0, got {sleep!r}")
    if heartbeat is not None and (not isinstance(heartbeat, int) or isinstance(heartbeat, bool) or heartbeat < 1):
        raise ValueError(f"heartbeat must be None (off) or an int >= 1 (seconds), got {heartbeat!r}")
    journal = storage.startswith("journal:") if isinstance(storage, str) else False
    store = make_storage(storage, heartbeat_interval=None if journal else heartbeat, lock_timeout=lock_timeout,
                         connect_timeout=connect_timeout)
    s = optuna.create_study(study_name=study, storage=store, load_if_exists=True,
                            sampler=make_sampler(sampler, seed, n_startup_trials=5))
    fn = quadratic_objective(sleep) if objective == "quadratic" else _gpt_worker_objective(steps, seed or 0, space_file)

    def guarded(trial: optuna.Trial) -> float | tuple[float, float]:
        ahead = [t for t in s.get_trials(deepcopy=False, states=_SLOT_STATES) if t.number < trial.number]
        if len(ahead) >= trials:
            trial.set_user_attr("over_budget", True)
            raise _OverBudget(f"the study already has {trials} trials")
        if journal and heartbeat:
            with _journal_heartbeat(store, trial._trial_id, heartbeat):
                return fn(trial)
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
            if not heartbeat:  # nobody can tell a dead worker's trial from a slow one
                break
            if journal:
                if _fail_stale_journal_trials(s, heartbeat):
                    continue  # a retry is waiting now
                time.sleep(heartbeat / 2)
                continue
            time.sleep(heartbeat / 2)  # others still run trials; theirs may fail and come back
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(s)
            continue
        s.optimize(guarded, n_trials=1, catch=(_OverBudget,), callbacks=[lambda _, t: states.append(t.state)])
    return sum(state in FINISHED for state in states)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m helpers.tuning worker --study NAME --storage URL --trials N``."""
    parser = argparse.ArgumentParser(prog="python -m helpers.tuning", description=_DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run trials of a shared study until it has --trials finished trials")
    w.add_argument("--study", required=True, help="study name (created if missing)")
    storage_help = (f"sqlite:///file.db, postgresql://user@host/db or journal:PATH (default: ${STORAGE_ENV}); "
                    "keep passwords off the command line: in $COURSE_STORAGE, $PGPASSWORD or ~/.pgpass")
    w.add_argument("--storage", default=None, help=storage_help)
    w.add_argument("--trials", type=int, required=True, help="finished trials the whole study should reach")
    w.add_argument("--objective", choices=("quadratic", "gpt"), default="quadratic")
    w.add_argument("--sampler", choices=("random", "tpe", "cmaes"), default="tpe")
    w.add_argument("--seed", type=int, default=None, help="sampler seed (give each worker its own)")
    w.add_argument("--sleep", type=float, default=0.0, help="seconds each quadratic trial pretends to train")
    w.add_argument("--steps", type=int, default=200, help="training steps per gpt trial")
    w.add_argument("--space", default=None, help="JSON file with the gpt search space (default: GPT_WORKER_SPACE)")
    w.add_argument("--heartbeat", type=int, default=2, help="seconds between heartbeats (0 = off)")
    w.add_argument("--lock-timeout", type=float, default=30.0,
                   help="seconds to wait for a SQLite file that another process holds locked (default 30)")
    w.add_argument("--connect-timeout", type=float, default=10, help="seconds to wait for a database server")
    s = sub.add_parser("show", help="print the trials of a study")
    s.add_argument("--study", required=True)
    s.add_argument("--storage", default=None, help=storage_help)
    s.add_argument("--lock-timeout", type=float, default=30.0, help="as for worker")
    s.add_argument("--connect-timeout", type=float, default=10, help="as for worker")
    args = parser.parse_args(argv)
    if args.command == "worker":
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        n = run_worker(args.study, args.storage, args.trials, args.objective, args.sampler, args.seed,
                       args.sleep, args.steps, args.heartbeat or None, args.space,
                       lock_timeout=args.lock_timeout, connect_timeout=args.connect_timeout)
        print(f"worker {os.getpid()}: finished {n} trial(s) of study {args.study!r}")
    else:
        study = optuna.load_study(study_name=args.study, storage=make_storage(
            storage_url(args.storage), lock_timeout=args.lock_timeout, connect_timeout=args.connect_timeout))
        for row in trial_rows(study):
            print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))

