"""Reminder lateness: how long after its due time each deadline step is fired (target p99 < 5 s).

On a throw-away database `relais_bench_reminders_<pid>` (dropped at the end unless --keep), as in
production: `relais projections run directory notifications` and `relais scheduler` run as their own
processes. A neuroradiology service whose stroke delays are overridden to 1 min (accept) and 2 min
(answer) receives `--sends` dossiers sent evenly over `--spread` seconds, so its due rows (reminder at
50 % of each delay, escalation to the on-call pool at the accept deadline, reminder and missed deadline
at the answer deadline) fall due spread over that minute and the next two. Lateness is what the
scheduler records for each row: `late_ms` = fired − due (its clock, the same as the application's).
Prints p50 / p99 / max per step and overall, and the outcomes.

    .venv/bin/python bench/reminders.py [--sends 300] [--spread 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from adapters.settings import Settings  # noqa: E402
from entrypoints.bootstrap import build_app, upgrade  # noqa: E402
from tests.conftest import PATIENT, rpps  # noqa: E402

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def pct(values: list[int], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=300, help="dossiers sent (4 due rows each)")
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which they are sent")
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    name = f"relais_bench_reminders_{os.getpid()}"
    url = f"{args.server.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(args.server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    children: list[subprocess.Popen[bytes]] = []
    try:
        settings = Settings(database_url=url)
        upgrade(settings)
        app = build_app(settings)
        toulouse = app.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
        montpellier = app.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
        neuro = app.add_service(establishment_id=montpellier, code="neuroradio", name="Neuroradiologie")
        pool = app.add_service(establishment_id=montpellier, code="astreinte", name="Astreinte", kind="on_call_pool")
        app.set_service_deadline(establishment_id=montpellier, service_code="neuroradio", workflow="stroke_opinion",
                                 urgency="stat", accept_minutes=1, answer_minutes=2)
        requester = app.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire",
                                         establishment_id=toulouse, roles=["clinician"], email="claire@example.org")
        for i in range(5):
            app.add_practitioner(rpps=rpps(10 + i), family_name=f"Neuro{i}", given_name="Paul", establishment_id=montpellier,
                                 roles=["clinician"], service_ids=[neuro], email=f"neuro{i}@example.org")
            app.add_practitioner(rpps=rpps(20 + i), family_name=f"Garde{i}", given_name="Léa", establishment_id=montpellier,
                                 roles=["clinician"], service_ids=[pool], email=f"garde{i}@example.org")
        data_dir = Path(tempfile.mkdtemp(prefix="relais-bench-reminders-"))  # the outbox: no SMTP server configured
        env = {**os.environ, "RELAIS_DATABASE_URL": url, "RELAIS_LOG_LEVEL": "WARNING", "RELAIS_DATA_DIR": str(data_dir)}
        for name_ in ("RELAIS_REDIS_URL", "RELAIS_SMTP_URL"):  # the in-process path (the scheduler fires), the outbox
            env.pop(name_, None)
        for cmd in (["projections", "run", "directory", "notifications"], ["scheduler"]):
            children.append(subprocess.Popen([sys.executable, "-m", "entrypoints.cli.main", *cmd], cwd=ROOT, env=env))
        print(f"{args.sends} stroke dossiers sent over {args.spread:.0f} s (accept 1 min, answer 2 min) …", flush=True)
        t0 = time.monotonic()
        for i in range(args.sends):
            time.sleep(max(0.0, t0 + i * args.spread / args.sends - time.monotonic()))
            did = app.create_dossier(actor_id=requester, workflow="stroke_opinion", question="Q", urgency="stat",
                                     consent="given", **PATIENT)
            app.address_recipient(dossier_id=did, actor_id=requester, establishment_id=montpellier, service_id=neuro)
            app.send_dossier(dossier_id=did, actor_id=requester)
        expected = 4 * args.sends
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            deadline = time.monotonic() + 300 + args.spread
            while True:
                row = conn.execute("SELECT count(*) FILTER (WHERE fired_at IS NOT NULL) AS fired, count(*) AS due "
                                   "FROM deadline_due").fetchone()
                assert row is not None
                if row["fired"] >= expected:
                    break
                if time.monotonic() > deadline or any(c.poll() is not None for c in children):
                    print(f"stopped waiting: {row['fired']} of {expected} fired ({row['due']} due rows)")
                    break
                time.sleep(1)
            fired = conn.execute("SELECT step, outcome, late_ms FROM deadline_due WHERE fired_at IS NOT NULL").fetchall()
            told = conn.execute("SELECT kind, count(*) AS n FROM notifications GROUP BY kind ORDER BY kind").fetchall()
            mailed = conn.execute("SELECT state, count(*) AS n FROM notification_mails GROUP BY state ORDER BY state").fetchall()
        app.close()
        steps = sorted({r["step"] for r in fired})
        for step in [*steps, "all"]:
            late = [r["late_ms"] for r in fired if step in (r["step"], "all")]
            if late:
                print(f"{step:12} {len(late):5} fired   lateness p50 {pct(late, 50):.3f} s · p99 {pct(late, 99):.3f} s · "
                      f"max {max(late) / 1000:.3f} s · mean {statistics.mean(late) / 1000:.3f} s")
        outcomes: dict[str, int] = {}
        for r in fired:
            outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        print("outcomes:", ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
        print("notifications:", ", ".join(f"{r['kind']} {r['n']}" for r in told))
        print("mails:", ", ".join(f"{r['state']} {r['n']}" for r in mailed),
              f"({len(list(data_dir.rglob('*.eml')))} .eml files in the outbox)")
        print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        if args.keep:
            print(f"database kept: {url}")
        else:
            with psycopg.connect(args.server, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
