"""Event → mail accepted by the SMTP server, at a steady rate: the whole pipeline.

Each event is a dossier sent to a service (`Relais.send_dossier`, committed); the notifications
projection (followed as `relais projections` does) writes the notification and its mail row and
NOTIFYs relais_mail; the delivery loop (`build_mail_delivery`, as `relais scheduler` runs it, attempts
in-process: no Redis) sends it over SMTP with STARTTLS and AUTH to aiosmtpd on loopback. Measured
from the command's return to the server's acceptance of the DATA (the message handed to the handler).

    .venv/bin/python bench/notification_mail.py [--rate 20] [--seconds 30]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust); makes and drops its own database.
Prints figures, asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from adapters.settings import Settings  # noqa: E402
from entrypoints.bootstrap import build_app, build_mail_delivery, upgrade  # noqa: E402
from projections import runner  # noqa: E402
from tests.conftest import PATIENT, SERVER_URL, rpps  # noqa: E402
from tests.mailserver import Received, SmtpServer  # noqa: E402

LINK = re.compile(r"/dossiers/([0-9a-f-]{36})")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    name = f"relais_bench_mail_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = SERVER_URL.rsplit("/", 1)[0] + "/" + name
    folder = Path(tempfile.mkdtemp(prefix="relais-bench-mail-"))
    server = SmtpServer(folder).start()
    sent_at: dict[str, float] = {}
    accepted: dict[str, float] = {}

    def on_message(item: Received) -> None:
        body = item.message.get_body(("plain",))
        match = LINK.search(body.get_content()) if body is not None else None
        if match:
            accepted.setdefault(match.group(1), item.at)

    server.recorder.on_message = on_message
    stop = threading.Event()
    try:
        settings = Settings(database_url=url, data_dir=folder / "var", smtp_url=server.url, smtp_ca_file=server.cert,
                            mail_from="Relais <relais@bench.example>")
        upgrade(settings)
        relais = build_app(settings)
        toulouse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
        montpellier = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
        neuro = relais.add_service(establishment_id=montpellier, code="neuroradio", name="Neuroradiologie")
        requester = relais.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire",
                                            establishment_id=toulouse, roles=["clinician"])
        relais.add_practitioner(rpps=rpps(2), family_name="Durand", given_name="Paul", establishment_id=montpellier,
                                roles=["clinician"], service_ids=[neuro], email="paul.durand@bench.example")
        print(f"preparing {count} addressed drafts…", flush=True)
        drafts = []
        for _ in range(count):
            did = relais.create_dossier(actor_id=requester, workflow="stroke_opinion", question="Q ?", urgency="stat",
                                        consent="given", **PATIENT)
            relais.address_recipient(dossier_id=did, actor_id=requester, establishment_id=montpellier, service_id=neuro)
            drafts.append(str(did))
        env = settings.eventsourcing_env()
        runner.catch_up("directory", env, relais)
        runner.catch_up("notifications", env, relais)
        projections = threading.Thread(target=runner.run, args=(["directory", "notifications"], env, stop), daemon=True)
        projections.start()
        delivery = build_mail_delivery(settings)
        loop_stop = asyncio.Event()
        ready = threading.Event()
        holder: dict[str, asyncio.AbstractEventLoop] = {}

        def deliver() -> None:
            async def go() -> None:
                holder["loop"] = asyncio.get_running_loop()
                ready.set()
                await delivery.run(loop_stop)

            asyncio.run(go())

        mailer = threading.Thread(target=deliver, daemon=True)
        mailer.start()
        ready.wait(10)
        time.sleep(1.0)  # the loop listens
        print(f"sending {count} dossiers at {args.rate:g}/s…", flush=True)
        start = time.monotonic()
        late = 0
        for i, did in enumerate(drafts):
            due = start + i / args.rate
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            elif now - due > 0.05:
                late += 1
            relais.send_dossier(dossier_id=did, actor_id=requester)
            sent_at[did] = time.time()
        elapsed = time.monotonic() - start
        deadline = time.monotonic() + 60
        while len(accepted) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        holder["loop"].call_soon_threadsafe(loop_stop.set)
        mailer.join(30)
        delivery.close()
        stop.set()
        projections.join(30)
        relais.close()
        delays = [(accepted[d] - sent_at[d]) * 1000 for d in drafts if d in accepted]
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT n.dossier_id::text, extract(epoch FROM m.created_at) FROM notification_mails m "
                "JOIN notifications n ON n.id = m.id").fetchall()
        projected = {d: float(t) for d, t in rows}
        to_row = [(projected[d] - sent_at[d]) * 1000 for d in drafts if d in projected]
        to_mail = [(accepted[d] - projected[d]) * 1000 for d in drafts if d in projected and d in accepted]
        print(f"events: {count} in {elapsed:.1f} s ({count / elapsed:.1f}/s; {late} sent > 50 ms behind schedule)")
        print(f"mails accepted by the SMTP server: {len(delays)} (each once: {len(server.recorder.received)} received)")
        if delays:
            print(f"event → mail accepted: p50 {statistics.median(delays):.0f} ms, p99 {percentile(delays, 99):.0f} ms, "
                  f"max {max(delays):.0f} ms")
            print(f"  of which event → mail row written by the projection: p50 {statistics.median(to_row):.0f} ms, "
                  f"p99 {percentile(to_row, 99):.0f} ms")
            print(f"  and mail row → accepted by the server: p50 {statistics.median(to_mail):.0f} ms, "
                  f"p99 {percentile(to_mail, 99):.0f} ms")
    finally:
        stop.set()
        server.stop()
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
