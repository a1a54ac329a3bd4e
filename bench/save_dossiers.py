"""Write speed of the event store: new dossiers of 6 events saved one by one, then in batches.

Runs on a throw-away database `relais_bench_<pid>` of a PostgreSQL server (default: the local
one, user postgres, trust authentication), dropped at the end. Prints figures, asserts nothing
about time; exits non-zero only if the events stored are not the events saved.

    .venv/bin/python bench/save_dossiers.py                       # 10,000 dossiers, batches of 100
    .venv/bin/python bench/save_dossiers.py --dossiers 2000 --batch 500 --cipher
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
from eventsourcing.cryptography import AESCipher  # noqa: E402
from tqdm import tqdm  # noqa: E402

from adapters.settings import Settings  # noqa: E402
from domain.dossier import Dossier  # noqa: E402
from domain.values import Actor, Consent, ImagingSource, Urgency, Workflow, patient_identity  # noqa: E402
from entrypoints.bootstrap import build_app, upgrade  # noqa: E402

EVENTS_PER_DOSSIER = 6
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"

# One requester (Toulouse) and one recipient establishment (Montpellier): fixed, as in a real region.
REQUESTER = Actor(
    practitioner_id=str(uuid.UUID(int=1)), role="clinician", establishment_id=str(uuid.UUID(int=2)),
    service_ids=(str(uuid.UUID(int=3)),), name="Claire MARTIN",
)
RECIPIENT_ESTABLISHMENT = str(uuid.UUID(int=4))
RECIPIENT_SERVICE = str(uuid.UUID(int=5))
QUESTION = (
    "Patiente de 76 ans, déficit brachio-facial gauche depuis 1 h 40, NIHSS 14. Scanner et angio-scanner "
    "joints : occlusion M1 droite ? Indication de thrombectomie et transfert à discuter en urgence."
)
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def new_dossier(n: int) -> Dossier:
    """A stroke dossier, sent: Created, ConsentRecorded, DocumentAttached, ImagingAttached,
    RecipientAddressed, Sent — built through the aggregate's own commands (guards included)."""
    t = START + timedelta(seconds=n)
    d = Dossier(
        workflow=Workflow.STROKE_OPINION.value,
        requester={
            "establishment_id": REQUESTER.establishment_id, "practitioner_id": REQUESTER.practitioner_id,
            "service_id": REQUESTER.service_ids[0],
        },
        patient=patient_identity(
            birth_name="Dupont", first_names="Jeanne Marie", birth_date="1950-03-02", sex="F",
            birth_place_code="31555", today=t.date(),
        ),
        question=QUESTION,
        urgency=Urgency.STAT.value,
        consent=None,
        imaging_source=ImagingSource.DICOM_STORE.value,
        actor=REQUESTER.as_dict(),
        occurred_at=t,
        imported_from=None,
    )
    d.record_consent(status=Consent.GIVEN.value, note="consentement oral, famille présente", actor=REQUESTER, occurred_at=t)
    d.attach_document(
        document={
            "document_id": str(uuid.uuid4()), "filename": "courrier-urgences.pdf", "media_type": "application/pdf",
            "size": 183_402, "sha256": "0" * 64, "description": "Courrier des urgences",
        },
        actor=REQUESTER, occurred_at=t,
    )
    d.attach_imaging(
        study={
            "study_instance_uid": f"1.2.250.1.59.3.{n}", "source": ImagingSource.DICOM_STORE.value,
            "description": "ANGIOSCANNER TSA + CEREBRAL", "modalities": ["CT"], "study_date": "20260105",
            "series_count": 6, "instance_count": 1_412,
        },
        actor=REQUESTER, occurred_at=t,
    )
    d.address(
        recipient={
            "send_id": str(uuid.uuid4()), "establishment_id": RECIPIENT_ESTABLISHMENT, "service_id": RECIPIENT_SERVICE,
            "practitioner_id": None, "region": "OCC", "department": "34", "channel": None,
        },
        actor=REQUESTER, occurred_at=t,
    )
    d.send(actor=REQUESTER, occurred_at=t)
    return d


def build(count: int, offset: int, desc: str) -> list[Dossier]:
    return [new_dossier(offset + i) for i in tqdm(range(count), desc=desc, unit="dossier", leave=False)]


def load() -> str:
    """1-minute load average: other work on the machine skews the figures."""
    return f"{os.getloadavg()[0]:.2f}"


def count_events(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM relais_events").fetchone()[0]


def rate(n: float, seconds: float) -> str:
    return f"{n / seconds:>9,.0f}" if seconds > 0 else "        ∞"


def report(label: str, dossiers: int, seconds: float, latencies: list[float] | None = None) -> None:
    events = dossiers * EVENTS_PER_DOSSIER
    line = (
        f"{label:<22} {events:>9,} events in {seconds:7.2f} s  →  {rate(events, seconds)} events/s"
        f"  {rate(dossiers, seconds)} dossiers/s"
    )
    if latencies:
        ms = sorted(x * 1000 for x in latencies)
        line += f"   (per save: median {statistics.median(ms):.2f} ms, p99 {ms[int(len(ms) * 0.99) - 1]:.2f} ms)"
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dossiers", type=int, default=10_000, help="dossiers per phase (default 10000)")
    parser.add_argument("--batch", type=int, default=100, help="dossiers per app.save() in phase (b) (default 100)")
    parser.add_argument("--cipher", action="store_true", help="encrypt event payloads (AES-GCM, 256-bit key)")
    parser.add_argument("--server", default=DEFAULT_SERVER, help=f"PostgreSQL admin URL (default {DEFAULT_SERVER})")
    args = parser.parse_args(argv)
    if args.dossiers < 1 or args.batch < 1:
        parser.error("--dossiers and --batch must be positive")

    name = f"relais_bench_{os.getpid()}"
    base = args.server.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    cipher_key = AESCipher.create_key(32) if args.cipher else None
    settings = Settings(database_url=url, cipher_key=cipher_key)

    with psycopg.connect(args.server, autocommit=True) as admin:
        server_version = admin.execute("SHOW server_version").fetchone()[0]
        durability = ", ".join(
            f"{k}={admin.execute(f'SHOW {k}').fetchone()[0]}" for k in ("fsync", "synchronous_commit")
        )
        admin.execute(f'CREATE DATABASE "{name}"')
    app = None
    try:
        upgrade(settings)
        app = build_app(settings)
        print(
            f"Relais save benchmark — {args.dossiers:,} dossiers × {EVENTS_PER_DOSSIER} events per phase, "
            f"cipher {'AES-GCM on' if args.cipher else 'off'}\n"
            f"PostgreSQL {server_version.split()[0]} at {base.split('@')[-1]} ({durability}), database {name}; "
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {load()}, {time.strftime('%Y-%m-%d %H:%M')}",
            flush=True,
        )

        # (a) one dossier per save: one transaction (and one table lock) per dossier.
        t0 = time.perf_counter()
        dossiers = build(args.dossiers, 0, "building (a)")
        built = time.perf_counter() - t0
        latencies = []
        t0 = time.perf_counter()
        for d in tqdm(dossiers, desc="(a) one by one", unit="dossier", leave=False):
            s = time.perf_counter()
            app.save(d)
            latencies.append(time.perf_counter() - s)
        one_by_one = time.perf_counter() - t0
        stored_a = count_events(url)

        # (b) the same number of new dossiers, `--batch` per save (one transaction per batch).
        dossiers = build(args.dossiers, args.dossiers, "building (b)")
        t0 = time.perf_counter()
        with tqdm(total=len(dossiers), desc=f"(b) batches of {args.batch}", unit="dossier", leave=False) as bar:
            for i in range(0, len(dossiers), args.batch):
                batch = dossiers[i : i + args.batch]
                app.save(*batch)
                bar.update(len(batch))
        batched = time.perf_counter() - t0
        stored = count_events(url)

        report("(a) one by one", args.dossiers, one_by_one, latencies)
        report(f"(b) batches of {args.batch}", args.dossiers, batched)
        print(
            f"{'building aggregates':<22} {args.dossiers:>9,} dossiers in {built:7.2f} s  →  "
            f"{rate(args.dossiers, built)} dossiers/s (domain only, not included above)"
        )
        print(f"{'load average (1 min)':<22} {load():>9} at the end")
        expected = 2 * args.dossiers * EVENTS_PER_DOSSIER
        print(f"events stored          {stored:>9,} (after (a): {stored_a:,}; expected {expected:,})")
        if args.cipher:
            with psycopg.connect(url) as conn:
                state = bytes(conn.execute("SELECT state FROM relais_events LIMIT 1").fetchone()[0])
            clear = b"DUPONT" in state or b"stroke_opinion" in state
            print(f"payloads encrypted     {'NO — patient data in clear!' if clear else 'yes (no clear text in state)'}")
            if clear:
                return 1
        if stored != expected or stored_a != expected // 2:
            print("ERROR: the events stored are not the events saved", file=sys.stderr)
            return 1
        return 0
    finally:
        if app is not None:
            app.close()
        with psycopg.connect(args.server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
