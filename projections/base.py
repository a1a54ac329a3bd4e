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

import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Generic, Self, TypeVar

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from psycopg import Connection, Cursor
from psycopg.abc import Params
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier, Literal
from psycopg_pool import ConnectionPool

APPLICATION_NAME = "relais"


def tracking_table(name: str) -> str:
    """The tracking table of the projection `name`, as eventsourcing names it."""
    return f"{name.lower()}_tracking"


class StalePositionError(RuntimeError):
    """Someone else moved this projection's position: the batch is dropped and the runner restarts."""


def fetch_one(curs: Cursor[DictRow]) -> DictRow:
    """The row of a query that always returns one (an aggregate without GROUP BY, a SELECT without FROM)."""
    row = curs.fetchone()
    if row is None:
        raise LookupError("no row where one was certain")
    return row


class PostgresView(PostgresTrackingRecorder):
    """A PostgreSQL read model: `ddl` creates its tables; each update commits with its tracking."""

    ddl: ClassVar[tuple[str, ...]] = ()
    tables: ClassVar[tuple[str, ...]] = ()
    # Bump when the tables change: at the next start the old ones are dropped with the tracking
    # position and the read model is rebuilt from the log (0: no check).
    schema_version: ClassVar[int] = 0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for statement in self.ddl:
            self.sql_create_statements.append(Composed([SQL(statement)]))

    def apply(self, tracking: Tracking, write: Callable[[Cursor[DictRow]], object] | None = None) -> None:
        """Runs `write` and records `tracking` in the same transaction (exactly once); what `write`
        returns is ignored (e.g. the cursor of `c.execute(…)` in a lambda)."""
        with self.datastore.transaction(commit=True) as curs:
            if write is not None:
                write(curs)
            self._insert_tracking(curs, tracking)

    def apply_batch(self, expected: int, tracking: Tracking, write: Callable[[Cursor[DictRow]], object]) -> None:
        """Runs `write` and records `tracking` in one transaction, if the position is still `expected`."""
        table = Identifier(self.tracking_table_name)
        lock = SQL("SELECT notification_id FROM {0} WHERE application_name = %s FOR UPDATE").format(table)
        with self.datastore.transaction(commit=True) as curs:
            # A read model is rebuilt from the log: after a server crash, batches committed in the
            # last few hundred milliseconds may be lost — rows and tracking together, so they are
            # processed again. Consistency holds; waiting for the disk at every batch is not needed.
            curs.execute("SET LOCAL synchronous_commit TO OFF")
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

    def create_table(self) -> None:
        if self.schema_version and self.tables and self._stored_schema() not in (None, self._schema_mark()):
            self._drop()
        super().create_table()
        if self.schema_version and self.tables:
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(SQL("COMMENT ON TABLE {0} IS {1}").format(
                    Identifier(self.tables[0]), Literal(self._schema_mark())
                ))

    def _schema_mark(self) -> str:
        return f"{type(self).__name__} schema {self.schema_version}"

    def _stored_schema(self) -> str | None:
        """The mark on the first table: None if it does not exist, '' if it has none (older code)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT to_regclass(%s) IS NOT NULL AS present, obj_description(to_regclass(%s), 'pg_class') AS mark",
                         (self.tables[0], self.tables[0]))
            row = fetch_one(curs)
        if not row["present"]:
            return None
        return row["mark"] or ""

    def _drop(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for table in self.tables:
                curs.execute(SQL("DROP TABLE IF EXISTS {0} CASCADE").format(Identifier(table)))
            curs.execute(
                SQL("DELETE FROM {0} WHERE application_name = %s").format(Identifier(self.tracking_table_name)),
                (APPLICATION_NAME,),
            )

    def analyze(self) -> None:
        """Refreshes the planner's statistics of the tables (after a rebuild: bulk loads leave them stale)."""
        with self.datastore.get_connection() as conn:
            for table in self.tables:
                conn.execute(SQL("ANALYZE {0}").format(Identifier(table)))

    def reset(self) -> None:
        """Drops the tables and the tracking position, then creates them again (rebuild)."""
        self._drop()
        self.create_table()

    def query(self, sql: str, params: Params = ()) -> list[DictRow]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(sql, params)
            return list(curs.fetchall())

    @classmethod
    def on_pool(cls, pool: ConnectionPool[Connection[DictRow]], name: str) -> Self:
        """This view read on an existing psycopg pool with rows as dicts (e.g. the web's), instead of
        a datastore of its own: no connection opened, no table made; `name` is its projection's."""
        return cls(PoolDatastore(pool), tracking_table_name=tracking_table(name))


class PoolDatastore:
    """A psycopg pool standing for the eventsourcing datastore of a view that is only read
    (`PostgresView.on_pool`). Closing it leaves the pool to whoever made it."""

    schema = "public"
    single_row_tracking = True

    def __init__(self, pool: ConnectionPool[Connection[DictRow]]):
        self.pool = pool

    def get_connection(self) -> AbstractContextManager[Connection[DictRow]]:
        return self.pool.connection()

    def close(self) -> None:
        pass


V = TypeVar("V", bound=PostgresView)


class BufferedProjection(Projection[V], Generic[V]):
    """A projection that folds events in memory and writes them in batches with their tracking.

    Subclasses map event classes to handlers in `handlers` (plain functions `(self, event)`, a
    dict lookup: faster than single dispatch on hot paths) that fold into `self.batch` (a fresh
    object from `new_batch()` for every batch, its class declared by the subclass's annotation
    `batch: …`), and write a batch in `write(cursor, batch)`.
    Events without a handler still advance the position.

    A writer thread writes the batches, in order, one transaction each, while the next batch is
    being folded: the database's share of the work overlaps with decoding and folding. A failed
    write stops everything (the error is raised to the runner, which starts again from the last
    committed position); nothing after it is written.
    """

    # Events per transaction at most. Only reached with a backlog (rebuild, catch-up, a follower
    # of an import): measured at the annex's scale, 5,000 rebuilds ~40 % faster than 1,000 and
    # as fast as 20,000 (bench/history_stats.py).
    batch_size: ClassVar[int] = 5000
    quiet_after: ClassVar[float] = 0.1  # seconds without a new event: the log is quiet, write now
    max_delay: ClassVar[float] = 1.0  # seconds an event may wait in memory, even under a steady trickle
    handlers: ClassVar[dict[type, Callable[[Any, Any], None]]] = {}

    def __init__(self, view: V):
        super().__init__(view)
        self.lock = threading.Lock()  # never taken twice by one thread: _hand_over runs under it
        self.committed = view.position()  # the position of what is in the database
        self.flushes = 0
        self.error: BaseException | None = None
        self.batch = self.new_batch()
        self._tracking: Tracking | None = None
        self._count = 0
        self._first_at = 0.0
        self._last_at = 0.0
        self._in_flight = 0
        self._counter = threading.Lock()  # _in_flight: changed by the folding and the writer threads
        # one batch waiting while one is written: (batch, its last event's tracking, its events); None: stop
        self._queue: queue.Queue[tuple[Any, Tracking, int] | None] = queue.Queue(maxsize=1)
        self._writer: threading.Thread | None = None

    # -------------------------------------------------------------- to write in subclasses

    def new_batch(self) -> Any:
        """An empty batch to fold events into (of the subclass's `batch` annotation)."""
        return None

    def write(self, curs: Cursor[DictRow], batch: Any) -> None:
        """Writes one batch (inside the transaction that records its tracking)."""

    # -------------------------------------------------------------- machinery

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        with self.lock:
            if self.error is not None:
                self.raise_error()
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
                self._hand_over()

    @property
    def pending(self) -> int:
        """Events processed but not committed yet (folding or being written)."""
        return self._count + self._in_flight

    @property
    def last_processed(self) -> int:
        """Position of the last event folded (committed or not)."""
        with self.lock:
            return self._tracking.notification_id if self._tracking is not None else self.committed

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def _hand_over(self) -> bool:
        """Gives the current batch to the writer (waits while the writer has one queued already)."""
        if self._tracking is None:
            return False
        item = (self.batch, self._tracking, self._count)
        with self._counter:
            self._in_flight += self._count
        self.batch, self._tracking, self._count = self.new_batch(), None, 0
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name=f"write-{self.name}", daemon=True)
            self._writer.start()
        self._queue.put(item)
        return True

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                batch, tracking, count = item
                written = False
                if self.error is None:  # after a failure, batches are dropped: never written out of order

                    def write_batch(curs: Cursor[DictRow], batch: Any = batch) -> None:
                        self.write(curs, batch)

                    try:
                        self.view.apply_batch(self.committed, tracking, write_batch)
                        written = True
                    except BaseException as e:
                        self.error = e
                with self._counter:
                    self._in_flight -= count
                if written:
                    self.committed = tracking.notification_id
                    self.flushes += 1
            finally:
                self._queue.task_done()

    def flush(self, wait: bool = True) -> bool:
        """Hands over what is folded; with `wait`, returns once everything handed over is
        committed (and raises the writer's error). False if there was nothing to hand over."""
        with self.lock:
            self.raise_error()
            handed = self._hand_over()
        if wait:
            self._queue.join()
            self.raise_error()
        return handed

    def flush_if_due(self) -> bool:
        """Hands over the batch when the log has gone quiet or its oldest event waited too long."""
        with self.lock:
            if not self._count or self.error is not None:
                return False
            now = time.monotonic()
            if now - self._last_at >= self.quiet_after or now - self._first_at >= self.max_delay:
                return self._hand_over()
            return False

    def close(self) -> None:
        """Stops the writer once the batches handed over are written (or dropped after an error)."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
