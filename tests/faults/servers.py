"""Private PostgreSQL and Redis servers for the fault suite, started and stopped by PID on free loopback ports.

The machine's shared servers (5432, 6379) serve other test sessions: the faults are done to
servers of our own (a cluster made by initdb in a temporary folder, a redis-server without persistence).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.peers import free_port, stop, wait_port


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(name)
    return path


def _as_postgres() -> dict:
    """initdb and postgres refuse to run as root: drop to the `postgres` system user when we are root."""
    if os.getuid() != 0:
        return {}
    import pwd

    user = pwd.getpwnam("postgres")
    return {"user": user.pw_uid, "group": user.pw_gid}


class PrivatePostgres:
    """A PostgreSQL cluster of our own (trust authentication, loopback only, fsync on)."""

    def __init__(self) -> None:
        # its own folder under /tmp: the cluster's owner (`postgres` when we are root) must reach it,
        # which a pytest tmp_path (mode 0700, owned by us) does not allow
        self.folder = Path(tempfile.mkdtemp(prefix="relais-faults-pg-"))
        self.folder.chmod(0o755)
        self.pgdata = self.folder / "pgdata"
        self.port = free_port()
        self.log = self.folder / "postgres.log"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(args, check=True, capture_output=True, timeout=timeout, **_as_postgres())

    def init(self) -> PrivatePostgres:
        if os.getuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.folder}'\n"
                       "max_connections = 200\nshared_buffers = 32MB\nfsync = on\n")
        return self.start()

    def start(self) -> PrivatePostgres:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log), "-w", "-t", "60", "start")
        wait_port(self.port, 30)
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "-t", "60", "stop")

    def pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        return int(pidfile.read_text().splitlines()[0]) if pidfile.exists() else None

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        pid = self.pid()
        if pid is not None:
            try:
                self.stop("immediate")
            except (subprocess.SubprocessError, OSError):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivateRedis:
    """A redis-server of our own, without persistence: stopping it loses what it held."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=log, stderr=subprocess.STDOUT,
        )
        wait_port(self.port, 20, self.proc)
        return self

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None


def wait_until(predicate, timeout: float, what: str, every: float = 0.1):  # type: ignore[no-untyped-def]
    """Polls `predicate` until it returns a true value (returned), or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - the predicate may fail while the fault lasts
            last = e
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s" + (f" (last error: {last!r})" if last else ""))
