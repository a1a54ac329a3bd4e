"""psycopg's pipeline `sync()` made to send everything it queued before waiting for the answers.

psycopg 3.3.9 (`Pipeline._sync_gen`): after queuing a Sync it tries once to flush libpq's output
buffer (`pipeline_communicate` stops at the first `PQflush` once its command queue is empty,
whatever the flush returned) and then waits for results. When the statements queued are larger
than the socket's buffer (≈ 200 kB on a Unix socket, a few MB over TCP), the rest of the query
stays in the client's buffer: the client waits for results, the server for the end of the query
(`ClientRead`), forever. eventsourcing's `insert_events` calls `pipeline.sync()` after the INSERT
of the new events, so a save of a few hundred kB (a batch of received DICOM instances, imported
dossiers) hung on the embedded PostgreSQL, reached through a Unix socket. Leaving a pipeline
(`_exit_gen`) does flush completely, which is why the same statements work outside `sync()`.

`FlushingPipeline` finishes the flush (psycopg's own `send` generator: writes until the buffer is
empty, reading what the server sends meanwhile) before fetching. Installed once per process by
`install()`, from `adapters/__init__.py`; tests/adapters/test_pgpipeline.py reproduces the hang.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import connection as _connection
from psycopg._pipeline import Pipeline
from psycopg.generators import send

FIXED_FOR = "3.3.9"  # the version this was written against (requirements.lock)


class FlushingPipeline(Pipeline):
    def _sync_gen(self) -> Any:
        self._enqueue_sync()
        yield from self._communicate_gen()
        yield from send(self.pgconn)  # the whole query reaches the server before we wait for its results
        yield from self._fetch_gen(flush=False)


def install() -> None:
    """Every psycopg connection of this process opens its pipelines as `FlushingPipeline`s."""
    # psycopg.connection imports Pipeline privately and looks it up when a pipeline opens: replaced there
    vars(_connection)["Pipeline"] = FlushingPipeline


__all__ = ["FIXED_FOR", "FlushingPipeline", "install", "psycopg"]
