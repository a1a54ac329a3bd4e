"""Time to make an opinion report PDF (HTML render + WeasyPrint) and to issue it (store + record).

Runs on a throw-away database `relais_bench_<pid>` of a PostgreSQL server (default: the local one,
user postgres, trust authentication) and a temporary data folder, both removed at the end. Each
dossier is a stroke request with its form answered, two documents, a thread of `--messages`
messages and an opinion. Prints p50/p95/max; asserts nothing about time; exits non-zero only if a
stored PDF's SHA-256 is not the recorded one.

    .venv/bin/python bench/report_pdf.py                  # 30 reports, 6 messages each
    .venv/bin/python bench/report_pdf.py --reports 100 --messages 40
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from adapters.blobs import BlobStore  # noqa: E402
from adapters.report.issuer import ReportIssuer  # noqa: E402
from adapters.settings import Settings  # noqa: E402
from application import Relais  # noqa: E402
from entrypoints.bootstrap import build_app, upgrade  # noqa: E402
from tests.application.test_forms import stroke_raw  # noqa: E402
from tests.conftest import PATIENT, rpps  # noqa: E402
from web import report_html  # noqa: E402

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
QUESTION = ("Patiente de 76 ans, déficit brachio-facial gauche depuis 1 h 40, NIHSS 9. Scanner et angio-scanner joints : "
            "occlusion M1 droite ? Indication de thrombectomie et transfert à discuter en urgence.")


def world(app: Relais) -> dict[str, str]:
    toulouse = app.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    montpellier = app.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
    neuro = app.add_service(establishment_id=montpellier, code="neuroradio", name="Neuroradiologie")
    requester = app.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire", establishment_id=toulouse,
                                     roles=["clinician"])
    recipient = app.add_practitioner(rpps=rpps(2), family_name="Durand", given_name="Paul", establishment_id=montpellier,
                                     roles=["clinician"], service_ids=[neuro])
    return {"montpellier": montpellier, "neuro": neuro, "requester": requester, "recipient": recipient}


def answered_dossier(app: Relais, w: dict[str, str], n: int, messages: int) -> tuple[str, str]:
    did = app.create_dossier(actor_id=w["requester"], workflow="stroke_opinion", question=QUESTION, urgency="stat",
                             consent="given", imaging_source="none", **PATIENT)
    app.answer_form(dossier_id=did, actor_id=w["requester"], raw=stroke_raw())
    for k in range(2):
        app.attach_document(dossier_id=did, actor_id=w["requester"], filename=f"compte-rendu-{n}-{k}.pdf",
                            media_type="application/pdf", size=120_000, sha256=hashlib.sha256(f"{n}:{k}".encode()).hexdigest())
    sid = app.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                                service_id=w["neuro"])
    app.send_dossier(dossier_id=did, actor_id=w["requester"])
    app.accept(dossier_id=did, actor_id=w["recipient"], send_id=sid)
    for k in range(messages):
        who = w["recipient"] if k % 2 == 0 else w["requester"]
        app.post_message(dossier_id=did, actor_id=who, send_id=sid, message=f"Message {k} : " + "précision clinique " * 8)
    app.give_opinion(dossier_id=did, actor_id=w["recipient"], send_id=sid, report="Occlusion M1 droite. " * 20,
                     conclusion="Thrombectomie indiquée", recommendations="Transfert immédiat", follow_up="immediate")
    return did, sid


def figures(label: str, seconds: list[float]) -> None:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    print(f"  {label:<34} p50 {statistics.median(ms):7.0f} ms   p95 {p95:7.0f} ms   max {ms[-1]:7.0f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=30, help="reports to make (default 30)")
    parser.add_argument("--messages", type=int, default=6, help="messages in each send's thread (default 6)")
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL (a database is created there)")
    args = parser.parse_args(argv)
    name = f"relais_bench_{os.getpid()}"
    url = f"{args.server.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(args.server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    app = None
    bad = 0
    try:
        with tempfile.TemporaryDirectory(prefix="relais-bench-report-") as data:
            settings = Settings(database_url=url, data_dir=Path(data))
            upgrade(settings)
            app = build_app(settings)
            w = world(app)
            dossiers = [answered_dossier(app, w, n, args.messages) for n in range(args.reports)]
            issuer = ReportIssuer(app, BlobStore(settings.data_dir), report_html.render)
            issuer.make(app.report_material(dossier_id=dossiers[0][0], send_id=dossiers[0][1]))  # loads Pango, fonts
            render, make, issue, sizes = [], [], [], []
            for did, sid in dossiers:
                material = app.report_material(dossier_id=did, send_id=sid)
                start = time.perf_counter()
                report_html.render(material)
                render.append(time.perf_counter() - start)
                _, seconds = issuer.make(material)
                make.append(seconds)
                start = time.perf_counter()
                report = issuer.issue(did, sid)
                issue.append(time.perf_counter() - start)
                stored = issuer.blobs.path(report["sha256"]).read_bytes()
                bad += hashlib.sha256(stored).hexdigest() != report["sha256"]
                sizes.append(report["size"])
            print(f"Relais report PDF — {args.reports} reports, {args.messages} messages each, "
                  f"Python {platform.python_version()}, {os.cpu_count()} CPU")
            figures("HTML render (Jinja)", render)
            figures("HTML + PDF (WeasyPrint)", make)
            figures("issue: read + PDF + store + record", issue)
            print(f"  PDF size: median {statistics.median(sizes) / 1024:.0f} KiB; SHA-256 mismatches: {bad}")
    finally:
        if app is not None:
            app.close()
        with psycopg.connect(args.server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
