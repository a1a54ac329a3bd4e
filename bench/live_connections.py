"""Live connections: N open live streams (`/live`, the one stream of every clinician's page) on ONE web
process (`relais serve`, a real process), and the time from a committed change to its arrival on every
page: p50/p99 over every (event, page) pair.

Two kinds of change, as PostgreSQL delivers them to the web's two live feeds:
- an inbox change (NOTIFY relais_inbox, the inbox projection's payload): every page of the establishment
  gets `inbox` — no database query per page;
- a notification (NOTIFY relais_notifications, the notifications projection's payload) telling every
  signed-in practitioner: every page gets `notify` with its unread count — three small queries per page
  (unread count, preferences, the notification's title), the expensive case.

    .venv/bin/python bench/live_connections.py [--streams 1000] [--users 20] [--events 20] [--every 0.5] [--clients 4]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust); makes and drops its own database. The pages
are read by --clients processes (asyncio + httpx) sharing the machine with the server: their own delay
is in the figures.
Prints figures, asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import resource
import signal
import statistics
import sys
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from adapters.credentials import Credentials  # noqa: E402
from adapters.settings import Settings  # noqa: E402
from entrypoints.bootstrap import build_app, build_pool, upgrade  # noqa: E402
from projections.inbox import CHANNEL as INBOX  # noqa: E402
from projections.notification_centre import CHANNEL as NOTIFICATIONS  # noqa: E402
from tests.conftest import SERVER_URL, rpps  # noqa: E402
from tests.peers import free_port, wait_port  # noqa: E402
from tests.processes import RelaisProcess  # noqa: E402

PASSWORD = "live connections bench 2026"
CSRF_INPUT = re.compile(r'name="_csrf_token" value="([^"]+)"')


class Page:
    """One open `/live` stream; `seen[dossier]` = when the event naming it arrived (monotonic)."""

    def __init__(self, client: httpx.AsyncClient):
        self.seen: dict[str, float] = {}
        self.ready = asyncio.Event()
        self.failed: str | None = None
        self.task = asyncio.create_task(self._read(client))

    async def _read(self, client: httpx.AsyncClient) -> None:
        try:
            async with client.stream("GET", "/live") as response:
                if response.status_code != 200:
                    self.failed = f"HTTP {response.status_code}"
                    self.ready.set()
                    return
                name = ""
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        data = line[5:].strip()
                        if name == "ready":
                            self.ready.set()
                        elif name in ("inbox", "notify"):
                            self.seen.setdefault(json.loads(data)["dossier"], time.monotonic())
        except (httpx.HTTPError, asyncio.CancelledError) as e:
            self.failed = self.failed or type(e).__name__
            self.ready.set()


async def sign_in(base: str, login: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections + 10, max_keepalive_connections=connections + 10)
    client = httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(60, read=None), limits=limits)
    page = await client.get("/login")
    token = CSRF_INPUT.search(page.text)
    assert token, "no CSRF input in the login page"
    r = await client.post("/login", data={"login": login, "password": PASSWORD, "_csrf_token": token.group(1)})
    assert r.status_code == 303, r.text
    return client


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def client_side(base: str, logins: list[str], streams: int, conn: Connection) -> None:
    """One client process's share of the pages: opens them, reports, then reports arrivals on demand."""
    per_login = -(-streams // len(logins))
    clients = [await sign_in(base, login, per_login) for login in logins]
    pages: list[Page] = []
    while len(pages) < streams:  # in batches: each start reads the inbox position and the bell
        batch = [Page(clients[(len(pages) + i) % len(clients)]) for i in range(min(25, streams - len(pages)))]
        await asyncio.gather(*(p.ready.wait() for p in batch))
        pages += batch
    live = [p for p in pages if not p.failed]
    conn.send((len(live), [p.failed for p in pages if p.failed]))
    while True:
        wanted = await asyncio.to_thread(conn.recv)
        if wanted is None:
            break
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(d in p.seen for p in live for d in wanted):
            await asyncio.sleep(0.1)
        conn.send([[p.seen.get(d) for d in wanted] for p in live])
    for p in pages:
        p.task.cancel()
    await asyncio.gather(*(p.task for p in pages), return_exceptions=True)
    for c in clients:
        await c.aclose()


def client_process(base: str, logins: list[str], streams: int, conn: Connection) -> None:
    asyncio.run(client_side(base, logins, streams, conn))


def measure(base: str, url: str, world: dict, streams: int, events: int, every: float, processes: int) -> None:
    """The pages are read by `processes` client processes (one asyncio process reading 1,000 streams
    was itself the bottleneck); arrival times are CLOCK_MONOTONIC, the same in every process."""
    users, logins = world["users"], world["logins"]
    parts = []
    opened = time.monotonic()
    for i in range(processes):
        mine, theirs = multiprocessing.Pipe()
        share = streams // processes + (1 if i < streams % processes else 0)
        proc = multiprocessing.Process(target=client_process, args=(base, logins[i::processes], share, theirs), daemon=True)
        proc.start()
        parts.append((proc, mine))
    reports = [conn.recv() for _, conn in parts]
    open_s = time.monotonic() - opened
    live = sum(n for n, _ in reports)
    failed = [f for _, fs in reports for f in fs]
    print(f"{live} live streams open on one `relais serve` ({len(users)} users, read by {processes} client processes) "
          f"in {open_s:.1f} s" + (f"; {len(failed)} failed: {sorted(set(failed))}" if failed else ""))
    with psycopg.connect(url, autocommit=True) as admin:
        for kind in ("inbox", "notify"):
            sent: dict[str, float] = {}
            for _ in range(events):
                dossier = str(uuid.uuid4())
                if kind == "inbox":
                    payload = {"dossier": dossier, "version": 2, "event": "Sent", "establishments": [world["montpellier"]]}
                    channel = INBOX
                else:
                    payload = {"practitioners": users, "dossier": dossier, "kind": "received", "urgency": "stat"}
                    channel = NOTIFICATIONS
                sent[dossier] = time.monotonic()
                admin.execute("SELECT pg_notify(%s, %s)", (channel, json.dumps(payload)))
                time.sleep(every)
            wanted = list(sent)
            for _, conn in parts:
                conn.send(wanted)
            delays, missing = [], 0
            for _, conn in parts:
                for seen in conn.recv():
                    for d, at in zip(wanted, seen, strict=True):
                        if at is None:
                            missing += 1
                        else:
                            delays.append(at - sent[d])
            print(f"  {kind:6} event → page ({len(sent)} events × {live} pages, one every {every} s): "
                  f"p50 {statistics.median(delays) * 1000:.0f} ms, p99 {percentile(delays, 99) * 1000:.0f} ms, "
                  f"max {max(delays) * 1000:.0f} ms" + (f", {missing} not delivered within 60 s" if missing else ""))
    for proc, conn in parts:
        conn.send(None)
        proc.join(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between events")
    parser.add_argument("--clients", type=int, default=4, help="client processes reading the pages")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.streams + 1024)), hard))
    name = f"relais_bench_conn_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = SERVER_URL.rsplit("/", 1)[0] + "/" + name
    server = None
    try:
        settings = Settings(database_url=url)
        upgrade(settings)
        relais = build_app(settings)
        pool = build_pool(settings, max_size=1)
        montpellier = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
        users = [relais.add_practitioner(rpps=rpps(100 + i), family_name="Durand", given_name="Paul",
                                         establishment_id=montpellier, roles=["clinician"]) for i in range(args.users)]
        for pid in users:
            Credentials(pool).set_password(pid, PASSWORD)
        pool.close()
        relais.close()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
        env.update(RELAIS_DATABASE_URL=url, RELAIS_HTTP_PORT=str(port), RELAIS_TABLES_READY="1",
                   RELAIS_SECRET_KEY="live-connections-bench-secret-0123456789", RELAIS_LOG_LEVEL="WARNING",
                   RELAIS_DATA_DIR=str(Path("/tmp") / name))
        server = RelaisProcess(["serve"], env)
        wait_port(port, timeout=60, proc=server.process)
        measure(f"http://127.0.0.1:{port}", url,
                {"montpellier": str(montpellier), "users": users, "logins": [rpps(100 + i) for i in range(args.users)]},
                args.streams, args.events, args.every, args.clients)
    finally:
        if server is not None and server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(timeout=60)
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
