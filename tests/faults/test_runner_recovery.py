"""The projection runner follows again within seconds of its database coming right, however many
failures it has been through: the wait between restarts goes back to its minimum once a restarted
follower makes progress, and never exceeds MAX_BACKOFF (it doubled for the process's whole life,
up to 30 s, so the fifth incident left a read model stale for 16 s after the database was fine)."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import psycopg
import pytest

from adapters.demo import _finess
from adapters.settings import Settings
from entrypoints.bootstrap import build_app, upgrade
from projections.runner import run
from tests.faults.servers import wait_until

FOLLOWING_AGAIN = 10.0  # seconds: the platform's target for every process after a database incident


def test_the_runner_follows_again_quickly_after_each_of_several_incidents(postgres, caplog: pytest.LogCaptureFixture):
    url = postgres.create_database(f"runner_{uuid.uuid4().hex[:8]}")
    upgrade(Settings(database_url=url))
    settings = Settings(database_url=url, tables_ready=True)
    app = build_app(settings)
    stop = threading.Event()
    runner = threading.Thread(target=run, args=(["directory"], settings.eventsourcing_env(), stop), daemon=True)
    caplog.set_level(logging.ERROR, logger="relais.projections")
    runner.start()
    recoveries = []
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for incident in range(5):
                def errors() -> int:
                    return sum("projection directory en erreur" in r.getMessage() for r in caplog.records)
                before = errors()
                # an incident: the read model's table is unreachable while an event comes
                conn.execute("ALTER TABLE dir_establishments RENAME TO dir_establishments_away")
                app.add_establishment(finess=_finess(f"3100{incident:04d}"), name=f"Incident {incident}", department="31")
                wait_until(lambda: errors() > before, 30, "the follower failing on the missing table")  # noqa: B023
                conn.execute("ALTER TABLE dir_establishments_away RENAME TO dir_establishments")
                repaired = time.monotonic()
                wait_until(lambda: conn.execute("SELECT 1 FROM dir_establishments WHERE name = %s",  # noqa: B023
                                                (f"Incident {incident}",)).fetchone(),
                           FOLLOWING_AGAIN, f"incident {incident}: the read model written again")
                recoveries.append(time.monotonic() - repaired)
    finally:
        stop.set()
        runner.join(30)
        app.close()
    print(f"\n[faults] projection runner following again after each incident: {', '.join(f'{r:.1f} s' for r in recoveries)}")
