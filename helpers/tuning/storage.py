"""Study storage from a URL: SQLite, PostgreSQL, MySQL or a journal file, with heartbeats."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import optuna


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
