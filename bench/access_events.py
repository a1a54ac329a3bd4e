"""How fast the event store takes Access events, one per read, as an uncoalesced image read would record them.

Each `record_access` is one new aggregate (its own stream) committed alone, as a web request does.
Prints accesses/s, the latency of one record (median, p99), the events stored, and what recording
one per request would cost a viewer fetching one CT series frame by frame (`--frames`). Fresh
database `relais_bench_access_<pid>`, dropped at the end.

    .venv/bin/python bench/access_events.py [--accesses 3000] [--frames 500] [--server URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.settings import Settings  # noqa: E402
from entrypoints.bootstrap import build_app, upgrade  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accesses", type=int, default=3000)
    parser.add_argument("--frames", type=int, default=500, help="frames of a series a DICOMweb viewer fetches")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f}")
    name = f"relais_bench_access_{os.getpid()}"
    with psycopg.connect(args.server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = args.server.rsplit("/", 1)[0] + "/" + name
    try:
        settings = Settings(database_url=url, data_dir=Path("/tmp") / name)
        upgrade(settings)
        app = build_app(settings)
        dossier = str(uuid.uuid4())
        actor = {"practitioner_id": str(uuid.uuid4()), "role": "clinician", "establishment_id": str(uuid.uuid4())}
        latencies = []
        start = time.perf_counter()
        for i in range(args.accesses):
            t = time.perf_counter()
            app.record_access(dossier_id=dossier, actor=actor, kind="imaging", target=f"dicomweb:1.2.3.{i}")
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - start
        app.close()
        with psycopg.connect(url) as conn:
            stored = conn.execute("SELECT count(*) FROM relais_events").fetchone()[0]
        latencies.sort()
        median = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        print(f"{args.accesses} accesses recorded one by one in {elapsed:.2f} s: {args.accesses / elapsed:,.0f} accesses/s")
        print(f"one record: median {median:.2f} ms, p99 {p99:.2f} ms; events stored: {stored}")
        print(f"one access per request, a viewer fetching {args.frames} frames of a series: {args.frames} events, "
              f"~{args.frames * median / 1000:.1f} s of commits (median) on that scroll; coalesced (one per user, study "
              f"and kind of read per minute): 1 event")
    finally:
        with psycopg.connect(args.server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"load average (1 min) at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
