"""Shared machinery of read models: tables and tracking written in one transaction.

Two kinds of projection share it:

- simple ones (e.g. the directory) write each event in its own transaction with
  `PostgresView.apply(tracking, write)`;
- `BufferedProjection`s fold many events in memory and write the whole batch with the last
  event's tracking in one transaction (`flush`), when the batch is full, or when the log goes
  quiet (`flush_if_due`, called by the runner's flusher thread, see projections/runner.py).

Either way a write and its tracking position commit together: exactly once, restartable at
any point. A buffered flush also checks, under a row lock, that the tracking position is still
the one its batch started from, so two processes following the same projection (a runner and
a `catch_up` from the command line) never apply the same events twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from psycopg import Cursor
from psycopg.sql import SQL, Identifier

APPLICATION_NAME = "relais"


class StalePositionError(RuntimeError):
    """Someone else moved this projection's position: the batch is dropped and the runner restarts."""


class PostgresView(PostgresTrackingRecorder):
    """A PostgreSQL read model: `ddl` creates its tables; each update commits with its tracking."""

    ddl: ClassVar[tuple[str, ...]] = ()
    tables: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for statement in self.ddl:
            self.sql_create_statements.append(SQL(statement))  # type: ignore[arg-type]

    def apply(self, tracking: Tracking, write: Callable[[Cursor], None] | None = None) -> None:
        """Runs `write` and records `tracking` in the same transaction (exactly once)."""
        with self.datastore.transaction(commit=True) as curs:
            if write is not None:
                write(curs)
            self._insert_tracking(curs, tracking)

    def apply_batch(self, expected: int, tracking: Tracking, write: Callable[[Cursor], None]) -> None:
        """Runs `write` and records `tracking` in one transaction, if the position is still `expected`."""
        table = Identifier(self.tracking_table_name)
        lock = SQL("SELECT notification_id FROM {0} WHERE application_name = %s FOR UPDATE").format(table)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(lock, (APPLICATION_NAME,))
            row = curs.fetchone()
            if row is None:  # first batch ever: a row to lock, so that two first batches queue up
                curs.execute(
                    SQL("INSERT INTO {0} VALUES (%s, 0) ON CONFLICT (application_name) DO NOTHING").format(table),
                    (APPLICATION_NAME,),
                )
                curs.execute(lock, (APPLICATION_NAME,))
                row = curs.fetchone()
            current = row["notification_id"] if row else 0
            if current != expected:
                raise StalePositionError(
                    f"{self.tracking_table_name}: position {current} in the database, {expected} expected"
                )
            write(curs)
            self._insert_tracking(curs, tracking)

    def position(self) -> int:
        return self.max_tracking_id(APPLICATION_NAME) or 0

    def reset(self) -> None:
        """Drops the tables and the tracking position, then creates them again (rebuild)."""
        with self.datastore.transaction(commit=True) as curs:
            for table in self.tables:
                curs.execute(SQL("DROP TABLE IF EXISTS {0} CASCADE").format(Identifier(table)))
            curs.execute(
                SQL("DELETE FROM {0} WHERE application_name = %s").format(Identifier(self.tracking_table_name)),
                (APPLICATION_NAME,),
            )
        self.create_table()

    def query(self, sql: str, params: tuple | dict = ()) -> list[dict]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(sql, params)  # type: ignore[arg-type]
            return list(curs.fetchall())


V = TypeVar("V", bound=PostgresView)


class BufferedProjection(Projection[V], Generic[V]):
    """A projection that folds events in memory and writes them in batches with their tracking.

    Subclasses map event classes to handlers in `handlers` (plain functions `(self, event)`,
    a dict lookup: faster than single dispatch on hot paths), keep what they fold in
    attributes set by `clear()`, and write it in `write(cursor)`. Events without a handler
    still advance the position.
    """

    batch_size: ClassVar[int] = 1000  # events per transaction at most
    quiet_after: ClassVar[float] = 0.1  # seconds without a new event: the log is quiet, write now
    max_delay: ClassVar[float] = 1.0  # seconds an event may wait in memory, even under a steady trickle
    handlers: ClassVar[dict[type, Callable[[Any, Any], None]]] = {}

    def __init__(self, view: V):
        super().__init__(view)
        self.lock = threading.RLock()
        self.committed = view.position()  # the position of what is in the database
        self.flushes = 0
        self._tracking: Tracking | None = None
        self._count = 0
        self._first_at = 0.0
        self._last_at = 0.0
        self.clear()

    # -------------------------------------------------------------- to write in subclasses

    def clear(self) -> None:
        """Forgets everything folded since the last flush."""

    def write(self, curs: Cursor) -> None:
        """Writes everything folded since the last flush (inside the flush's transaction)."""

    # -------------------------------------------------------------- machinery

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:  # type: ignore[override]
        with self.lock:
            handler = self.handlers.get(type(domain_event))
            if handler is not None:
                handler(self, domain_event)
            self._tracking = tracking
            now = time.monotonic()
            if not self._count:
                self._first_at = now
            self._last_at = now
            self._count += 1
            if self._count >= self.batch_size:
                self.flush()

    @property
    def pending(self) -> int:
        """Events processed but not written yet."""
        return self._count

    def flush(self) -> bool:
        """Writes what is buffered with the last tracking, in one transaction. False if nothing was."""
        with self.lock:
            if self._tracking is None:
                return False
            tracking = self._tracking
            self.view.apply_batch(self.committed, tracking, self.write)  # type: ignore[attr-defined]
            self.committed = tracking.notification_id
            self.flushes += 1
            self._tracking = None
            self._count = 0
            self.clear()
            return True

    def flush_if_due(self) -> bool:
        """Flushes when the log has gone quiet or the oldest buffered event waited too long."""
        with self.lock:
            if not self._count:
                return False
            now = time.monotonic()
            if now - self._last_at >= self.quiet_after or now - self._first_at >= self.max_delay:
                return self.flush()
            return False
