"""A throwaway PostgreSQL server for tests: initdb into a temporary folder, pg_ctl start, and always clean up.

The server refuses to run as root, so as root it runs as the unprivileged ``postgres`` user that Debian's
``postgresql`` package creates. It listens on 127.0.0.1 on a free port and requires a password
(scram-sha-256), so that tests can exercise real authentication.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

USER, DATABASE = "course", "optuna"


def find_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    folder: Path
    port: int
    password: str
    bin: Path
    run_as: str | None

    @property
    def url(self) -> str:
        """The storage URL with the password in it (tests only; real workers take it from a file or variable)."""
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def url_without_password(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.folder)

    def stop(self) -> None:
        """Stop the server (immediately: nothing in it is worth a clean shutdown) and delete its folder."""
        try:
            if (self.folder / "data" / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def start() -> Server:
    """Create, start and return a server with user ``course`` and database ``optuna``; stop() removes it."""
    bin_dir = find_bin()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL's initdb/pg_ctl not found: apt-get install postgresql")
    run_as = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="course-pg-"))
    server = Server(folder, _free_port(), secrets.token_urlsafe(12), bin_dir, run_as)
    try:
        if run_as:
            user = pwd.getpwnam(run_as)
            os.chown(folder, user.pw_uid, user.pw_gid)
        pwfile = folder / "pw"
        pwfile.write_text(server.password + "\n")
        if run_as:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        pwfile.chmod(0o600)
        done = server._run("initdb", "-D", str(folder / "data"), "-U", USER, f"--pwfile={pwfile}",
                           "--auth=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C")
        pwfile.unlink()
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
        # the socket goes into our own folder (the system's /var/run/postgresql may not exist or be writable)
        options = f"-p {server.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        done = server._run("pg_ctl", "-D", str(folder / "data"), "-o", options, "-l", str(folder / "log"), "-w", "start")
        if done.returncode:
            log = (folder / "log").read_text() if (folder / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr[-2000:]}\n{log[-2000:]}")
        import psycopg

        deadline = time.time() + 30
        while True:
            try:
                with psycopg.connect(host="127.0.0.1", port=server.port, user=USER, password=server.password,
                                     dbname="postgres", autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"CREATE DATABASE {DATABASE}")
                break
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        return server
    except BaseException:
        server.stop()
        raise
