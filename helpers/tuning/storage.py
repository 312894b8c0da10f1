"""Study storage from a URL: SQLite, PostgreSQL, MySQL or a journal file, with heartbeats.

A URL with a password is a secret: anyone on the machine can read a process's command line. So the URL
can also come from the environment variable ``COURSE_STORAGE``, and a PostgreSQL URL may leave the
password out altogether: the driver (libpq, through ``psycopg``) then takes it from ``PGPASSWORD`` or
from PostgreSQL's password file (``~/.pgpass``, or the file ``PGPASSFILE`` names). Passwords are masked
(``***``) in every message this module writes.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sqlite3
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna

#: the environment variable a worker reads its storage URL from when none is given
STORAGE_ENV = "COURSE_STORAGE"
SCHEMES = ("sqlite", "postgresql", "mysql", "journal")


def storage_url(url: str | None) -> str:
    """``url`` itself, or (when it is ``None`` or empty) the value of ``$COURSE_STORAGE``."""
    if url:
        return url
    from_env = os.environ.get(STORAGE_ENV, "")
    if not from_env.strip():
        raise ValueError(f"storage: give a URL (--storage sqlite:///study.db) or set the environment variable "
                         f"{STORAGE_ENV}; got neither")
    return from_env


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and error messages)."""
    if not isinstance(url, str) or "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, sep, host = rest.rpartition("@")
    if ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***{sep}{host}"


def _scrub(text: str, url: str) -> str:
    """``text`` without the password of ``url`` anywhere in it."""
    masked = mask_url(url)
    if masked == url:
        return text
    password = url.split("://", 1)[1].rpartition("@")[0].split(":", 1)[1]
    return text.replace(url, masked).replace(password, "***") if password else text


def _check_connection(engine_url: Any, connect_args: dict[str, Any], url: str) -> None:
    """Connect once, so that a wrong password or an unreachable server is a clear error in seconds."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(engine_url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.OperationalError as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()
        reason = " ".join(line.strip() for line in reason if line.strip())
        raise ConnectionError(_scrub(f"storage {mask_url(url)}: cannot connect to the database server: {reason}",
                                     url)) from None
    finally:
        engine.dispose()


def sqlite_lock(path: str | Path) -> str | None:
    """Which lock another process holds on the SQLite file ``path``, found without waiting: None (none
    that stops us), ``"RESERVED"`` (a write transaction is open: reading works, writing waits) or
    ``"EXCLUSIVE"`` (a commit is under way, or a transaction took the whole file: even reading waits)."""
    if not Path(path).is_file():
        return None
    con = sqlite3.connect(str(path), timeout=0, isolation_level=None)
    try:
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):
                return "EXCLUSIVE"
            raise
        try:
            con.execute("BEGIN IMMEDIATE")  # asks for the RESERVED lock that every writer needs
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):
                return "RESERVED"
            raise
        con.execute("ROLLBACK")
        return None
    finally:
        con.close()


def _locked_message(url: str, db: str, lock: str, waited: float | None) -> str:
    what = ("a write transaction is open (a RESERVED lock): reading works, writing must wait"
            if lock == "RESERVED" else "a commit is under way or a transaction holds the whole file "
            "(an EXCLUSIVE lock): even reading must wait")
    head = f"storage {url!r}: the SQLite file {db!r} is locked by another process; {what}"
    if waited is None:
        return head
    return (f"{head}. Still locked after {waited:g} s (lock_timeout / --lock-timeout): stop the process that "
            f"holds it (on Linux and macOS `fuser {db}` or `lsof {db}` names it), or wait longer")


def _wait_for_unlock(url: str, db: str, lock_timeout: float) -> None:
    """Return once no other process holds a lock on ``db``; report a lock at once, give up after ``lock_timeout``."""
    lock = sqlite_lock(db)
    if lock is None:
        return
    print(_locked_message(url, db, lock, None) + f"; waiting up to {lock_timeout:g} s", file=sys.stderr, flush=True)
    deadline = time.monotonic() + lock_timeout
    while lock is not None:
        if time.monotonic() >= deadline:
            raise ValueError(_locked_message(url, db, lock, lock_timeout))
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        lock = sqlite_lock(db)
    print(f"storage {url!r}: the lock is gone; going on", file=sys.stderr, flush=True)


def make_storage(url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 max_retry: int = 2, connect_timeout: float = 10,
                 lock_timeout: float = 30.0) -> optuna.storages.BaseStorage:
    """Open the storage at ``url``, checked first: ``sqlite:///study.db`` (one machine),
    ``postgresql://user:pw@host/db`` or ``mysql://...`` (many machines), or ``journal:PATH`` (an
    append-only log file, safe on network file systems).

    With ``heartbeat_interval`` (seconds; database URLs only) every running trial writes a
    heartbeat; a trial whose worker died (no heartbeat for ``grace_period``) is marked failed and
    queued again with the same parameters, up to ``max_retry`` times.

    ``lock_timeout`` (seconds) bounds every wait for a SQLite file that another process holds
    locked. A file that is locked when the storage opens is reported at once on stderr (with the
    kind of lock), and after ``lock_timeout`` seconds still locked raises a ``ValueError`` that says
    so, instead of a silent wait of minutes.

    ``postgresql://`` uses the ``psycopg`` (version 3) driver when it is installed. A database server is
    contacted once right away: a wrong password or a server that does not answer within
    ``connect_timeout`` seconds raises ``ConnectionError``. Messages never contain the password.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"storage must be a URL such as sqlite:///study.db, got {url!r}")
    if not isinstance(lock_timeout, (int, float)) or isinstance(lock_timeout, bool) or not 0 <= lock_timeout < math.inf:
        raise ValueError(f"lock_timeout must be a finite number of seconds >= 0, got {lock_timeout!r}")
    if not isinstance(connect_timeout, (int, float)) or isinstance(connect_timeout, bool) or connect_timeout <= 0:
        raise ValueError(f"connect_timeout must be a number of seconds > 0, got {connect_timeout!r}")
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if ":" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown storage scheme {scheme!r} in {mask_url(url)!r}; use sqlite:///FILE.db, "
                         "postgresql://USER@HOST/DB, mysql://USER@HOST/DB or journal:PATH")
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):].removeprefix("//"))
        if not path.name or not path.parent.is_dir():
            raise ValueError(f"storage {url!r}: the folder of journal file {str(path)!r} does not exist")
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ValueError(f"storage must be a database URL (sqlite:///file.db, postgresql://..., "
                         f"mysql://...) or journal:PATH, got {mask_url(url)!r}") from None
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend in ("postgresql", "mysql"):
        if backend == "postgresql" and "+" not in parsed.drivername and importlib.util.find_spec("psycopg"):
            parsed = parsed.set(drivername="postgresql+psycopg")  # SQLAlchemy's default would be psycopg2
        connect_args = {"connect_timeout": max(1, round(connect_timeout))}  # both drivers take whole seconds
        try:
            _check_connection(parsed, connect_args, url)
        except ImportError as err:
            raise ValueError(f"storage {mask_url(url)}: the database driver is not installed ({err}); "
                             "for PostgreSQL: pip install 'psycopg[binary]'") from None
        kwargs["engine_kwargs"] = {"connect_args": connect_args}
    if backend == "sqlite":
        db = parsed.database or ""
        if db in ("", ":memory:"):
            raise ValueError(f"storage {url!r}: give a file (sqlite:///study.db); an in-memory database "
                             "cannot be shared or resumed")
        if not Path(db).resolve().parent.is_dir():
            raise ValueError(f"storage {url!r}: folder {str(Path(db).resolve().parent)!r} does not exist")
        # each statement waits up to lock_timeout for the other writers' locks (SQLite's busy timeout)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": lock_timeout}}
        _wait_for_unlock(url, db, lock_timeout)
    deadline = time.monotonic() + lock_timeout
    for attempt in range(5):  # two processes creating the tables of a new file at once may collide
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; we rely on them
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                if heartbeat_interval is not None:
                    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry)
                    kwargs.update(heartbeat_interval=heartbeat_interval, heartbeat_stale_trial_callback=retry,
                                  grace_period=grace_period or 2 * heartbeat_interval)
                return optuna.storages.RDBStorage(parsed.render_as_string(hide_password=False), **kwargs)
        except ImportError as err:
            raise ValueError(f"storage {mask_url(url)}: the database driver is not installed ({err})") from None
        # PostgreSQL reports the same collision as "relation already exists" (a ProgrammingError)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as err:
            locked = backend == "sqlite" and "locked" in str(err)
            if locked and (attempt == 4 or time.monotonic() >= deadline):
                lock = sqlite_lock(parsed.database or "") or "EXCLUSIVE"
                raise ValueError(_locked_message(url, parsed.database or "", lock, lock_timeout)) from err
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
