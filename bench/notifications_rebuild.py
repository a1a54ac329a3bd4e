"""Rebuild of the notifications process manager: events/s, and nothing told twice.

On a throw-away database `relais_bench_notif_<pid>` (dropped unless --keep): the legacy history at
`--scale` of the annex (bench/generate_history.py, imported as `relais import-history` does: nobody is
told of it) plus `--live` dossiers of today, each sent, accepted and answered (told: received,
accepted, opinion_given). The projection follows once (timed: the first deployment), then is rebuilt
`--rounds` times (`relais projections rebuild notifications`: its state dropped, the log processed
from zero, the notifications, mails and due rows kept). Prints the events of its topics per second,
and checks that a rebuild wrote no notification, mail or due row.

    .venv/bin/python bench/notifications_rebuild.py [--scale 0.25] [--live 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from adapters.history_import import import_file, read_legacy_file  # noqa: E402
from adapters.settings import Settings  # noqa: E402
from bench.generate_history import generate  # noqa: E402
from domain.directory import establishment_id  # noqa: E402
from entrypoints.bootstrap import build_app, upgrade  # noqa: E402
from projections.notifications import NotificationsProjection  # noqa: E402
from projections.runner import catch_up, rebuild  # noqa: E402
from tests.conftest import PATIENT, rpps  # noqa: E402

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
TOPICS = list(NotificationsProjection.topics)


def counts(url: str) -> tuple[int, int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT (SELECT count(*) FROM relais_events WHERE topic = ANY(%s)), (SELECT count(*) FROM notifications),
                      (SELECT count(*) FROM notification_mails), (SELECT count(*) FROM deadline_due)""", (TOPICS,),
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.25, help="fraction of the annex's history")
    parser.add_argument("--live", type=int, default=2000, help="dossiers of today (told) besides the history")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    name = f"relais_bench_notif_{os.getpid()}"
    url = f"{args.server.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(args.server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        settings = Settings(database_url=url)
        env = settings.eventsourcing_env()
        upgrade(settings)
        app = build_app(settings)
        path = Path(tempfile.mkdtemp(prefix="relais-bench-")) / "legacy.csv"
        dossiers, _ = generate(path, scale=args.scale)
        t0 = time.perf_counter()
        report = import_file(app, read_legacy_file(path), batch_size=500)
        print(f"history: {report.imported:,} dossiers, {report.events:,} events imported in {time.perf_counter() - t0:.0f} s")
        toulouse, montpellier = str(establishment_id("310781406")), str(establishment_id("340780477"))  # imported CHUs
        neuro = app.add_service(establishment_id=montpellier, code="neuroradio", name="Neuroradiologie")
        requester = app.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire",
                                         establishment_id=toulouse, roles=["clinician"], email="claire@example.org")
        recipient = app.add_practitioner(rpps=rpps(2), family_name="Durand", given_name="Paul", establishment_id=montpellier,
                                         roles=["clinician"], service_ids=[neuro], email="paul@example.org")
        t0 = time.perf_counter()
        for _ in range(args.live):
            did = app.create_dossier(actor_id=requester, workflow="generic_opinion", question="Q", urgency="routine",
                                     consent="given", **PATIENT)
            sid = app.address_recipient(dossier_id=did, actor_id=requester, establishment_id=montpellier, service_id=neuro)
            app.send_dossier(dossier_id=did, actor_id=requester)
            app.accept(dossier_id=did, send_id=sid, actor_id=recipient)
            app.give_opinion(dossier_id=did, send_id=sid, actor_id=recipient, report="R", conclusion="C")
        print(f"live: {args.live:,} dossiers sent, accepted, answered in {time.perf_counter() - t0:.0f} s")
        catch_up("directory", env, app, timeout=3600)
        events = counts(url)[0]
        t0 = time.perf_counter()
        catch_up("notifications", env, app, timeout=3600)
        first = time.perf_counter() - t0
        _, told, mails, due = counts(url)
        print(f"log: {events:,} events of the projection's topics; first pass {first:.1f} s → {events / first:,.0f} events/s; "
              f"{told:,} notifications, {mails:,} mails, {due:,} due rows")
        for round_ in range(1, args.rounds + 1):
            t0 = time.perf_counter()
            rebuild("notifications", env, app, timeout=3600)
            took = time.perf_counter() - t0
            after = counts(url)
            print(f"rebuild {round_}: {took:.1f} s → {events / took:,.0f} events/s; "
                  f"notifications {after[1]:,}, mails {after[2]:,}, due rows {after[3]:,} "
                  f"({'nothing written twice' if after[1:] == (told, mails, due) else 'DIFFERENT'}); "
                  f"load {os.getloadavg()[0]:.1f}")
        app.close()
        print(f"(history generated: {dossiers:,} dossiers)")
    finally:
        if args.keep:
            print(f"database kept: {url}")
        else:
            with psycopg.connect(args.server, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
