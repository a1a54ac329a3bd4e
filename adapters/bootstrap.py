"""Composition helpers: build the application, pools and stores from resolved Settings."""

from __future__ import annotations

from dataclasses import replace

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from adapters.credentials import Credentials
from adapters.settings import Settings, conninfo
from application import Relais
from projections.runner import PROJECTIONS, open_view


def build_app(settings: Settings) -> Relais:
    """The Relais application on the configured store (tables created if missing)."""
    return Relais(env=settings.eventsourcing_env())


def build_pool(settings: Settings, max_size: int = 10) -> ConnectionPool:
    """A psycopg pool for read models and credentials (rows as dicts)."""
    assert settings.database_url
    pool = ConnectionPool(
        conninfo(settings.database_url), min_size=1, max_size=max_size, open=True,
        kwargs={"autocommit": True, "row_factory": dict_row}, name="relais",
    )
    return pool


def upgrade(settings: Settings) -> list[str]:
    """Creates every table (events, snapshots, read models, tracking, credentials). Idempotent."""
    settings = replace(settings, tables_ready=False)  # whatever RELAIS_TABLES_READY says
    app = build_app(settings)
    done = ["relais_events", "relais_snapshots"]
    env = settings.eventsourcing_env()
    for name in PROJECTIONS:
        view = open_view(name, env)
        view.create_table()
        view.datastore.close()
        done.append(f"{name} (+ {name}_tracking)")
    pool = build_pool(settings, max_size=1)
    try:
        Credentials(pool).create_table()
        with pool.connection() as conn:
            # Per-topic head and lag of the projections (status on every /health call).
            conn.execute(
                "CREATE INDEX IF NOT EXISTS relais_events_topic_idx ON relais_events (topic, notification_id)"
            )
    finally:
        pool.close()
    done.append("relais_credentials")
    done.append("relais_events_topic_idx")
    app.close()
    return done
