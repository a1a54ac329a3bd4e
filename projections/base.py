"""Shared machinery of read models: tables and tracking written in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.sql import SQL, Identifier

APPLICATION_NAME = "relais"


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
