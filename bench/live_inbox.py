"""Live inbox recovery: N open streams, the web's LISTEN backend killed R times (pg_terminate_backend);
time from the kill to the `resync` on every stream, and from a notification sent then to its arrival
on every stream. Also the steady-state delivery to N streams.

    .venv/bin/python bench/live_inbox.py [--streams 100] [--rounds 5]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust); makes and drops its own database.
Prints figures, asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from adapters.credentials import Credentials  # noqa: E402
from adapters.settings import Settings  # noqa: E402
from entrypoints.bootstrap import build_app, build_pool, build_web_app, upgrade  # noqa: E402
from projections.inbox import CHANNEL  # noqa: E402
from tests.conftest import SERVER_URL, rpps  # noqa: E402
from tests.web.conftest import PASSWORD  # noqa: E402
from tests.web.sse import Stream, serve, signed_in  # noqa: E402

LISTENER = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'relais-live'"


def notify(conn: psycopg.Connection, establishment: str) -> str:
    dossier = str(uuid.uuid4())
    payload = {"dossier": dossier, "version": 2, "event": "Sent", "establishments": [establishment]}
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(payload)))
    return dossier


async def arrival(stream: Stream, dossier: str) -> float:
    while True:
        event = await stream.next("inbox", timeout=30, skip=("ping", "resync", "down"))
        if json.loads(event.data)["dossier"] == dossier:
            return event.at


async def measure(base: str, url: str, establishment: str, streams: int, rounds: int) -> None:
    client = await signed_in(base, rpps(2))
    admin = await asyncio.to_thread(psycopg.connect, url, autocommit=True)
    try:
        pages = [Stream(client) for _ in range(streams)]
        for page in pages:
            await page.next("ready", timeout=60)
        steady = []
        for _ in range(rounds):
            sent = time.monotonic()
            dossier = notify(admin, establishment)
            steady.append(max([await arrival(page, dossier) for page in pages]) - sent)
        resync, after = [], []
        for _ in range(rounds):
            [pid] = [r[0] for r in admin.execute(LISTENER).fetchall()]
            killed = time.monotonic()
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            notify(admin, establishment)  # heard by nobody: the resync stands for it
            resync.append(max([(await page.next("resync", timeout=30, skip=("ping", "down", "inbox"))).at for page in pages]) - killed)
            dossier = notify(admin, establishment)
            after.append(max([await arrival(page, dossier) for page in pages]) - killed)
        for page in pages:
            await page.close()
    finally:
        admin.close()
        await client.aclose()

    def ms(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"

    print(f"{streams} open streams, {rounds} rounds")
    print(f"  notification → on every stream (steady state):            {ms(steady)}")
    print(f"  listener backend killed → resync on every stream:         {ms(resync)}")
    print(f"  listener backend killed → next notification on every one: {ms(after)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    name = f"relais_bench_live_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = SERVER_URL.rsplit("/", 1)[0] + "/" + name
    try:
        settings = Settings(database_url=url)
        upgrade(settings)
        relais = build_app(settings)
        pool = build_pool(settings, max_size=1)
        montpellier = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
        recipient = relais.add_practitioner(rpps=rpps(2), family_name="Durand", given_name="Paul",
                                            establishment_id=montpellier, roles=["clinician"])
        Credentials(pool).set_password(recipient, PASSWORD)
        pool.close()
        relais.close()
        with serve(build_web_app(settings)) as base:
            asyncio.run(measure(base, url, str(montpellier), args.streams, args.rounds))
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
