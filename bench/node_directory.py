"""A directory change reaching a running DICOM node: time from the command's commit (a node added,
moved to another address, marked « adresse non vérifiée ») to the first association accepted or
rejected accordingly, against a real `relais scp` (RELAIS_DICOM_WORKERS workers) and a real
`relais projections run directory`. Before the notification the node polled every 5 s.

    .venv/bin/python bench/node_directory.py [--rounds 20] [--workers 2]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust); makes and drops its own database.
Prints figures, asserts nothing about time.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # noqa: E402

from adapters.settings import Settings  # noqa: E402
from entrypoints.bootstrap import build_app, upgrade  # noqa: E402
from tests.conftest import SERVER_URL  # noqa: E402
from tests.peers import free_port, stop, wait_port  # noqa: E402
from tests.processes import RelaisProcess  # noqa: E402


def accepted(port: int, aet: str) -> bool:
    ae = AE(ae_title=aet)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="RELAIS")
    try:
        return bool(assoc.is_established)
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def until(condition: Callable[[], bool], started: float, timeout: float = 30.0) -> float:
    """Seconds from `started` until `condition()` holds (inf if it never did within `timeout`)."""
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
    return float("inf")


def figures(name: str, values: list[float]) -> None:
    ms = sorted(v * 1000 for v in values)
    print(f"{name:<34} median {statistics.median(ms):7.0f} ms   p90 {ms[int(len(ms) * 0.9) - 1]:7.0f} ms   "
          f"max {ms[-1]:7.0f} ms   ({len(ms)} rounds)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    name = f"relais_bench_nodes_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = SERVER_URL.rsplit("/", 1)[0] + "/" + name
    processes: list[RelaisProcess] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=url, data_dir=Path(tmp) / "var")
        upgrade(settings)
        app = build_app(settings)
        try:
            est = app.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
            port = free_port()
            env = dict(os.environ, RELAIS_DATABASE_URL=url, RELAIS_DATA_DIR=str(settings.data_dir), RELAIS_TABLES_READY="1",
                       RELAIS_DICOM_PORT=str(port), RELAIS_DICOM_WORKERS=str(args.workers), RELAIS_LOG_LEVEL="WARNING")
            processes.append(RelaisProcess(["projections", "run", "directory"], env))
            processes.append(RelaisProcess(["scp"], env))
            wait_port(port, 60, processes[-1].process)
            started = time.monotonic()  # warm-up, not counted: the workers and the projection start
            app.add_node(aet="WARM_GW", host="127.0.0.1", port=104, establishment_id=est, kind="gateway")
            print(f"first node accepted {until(lambda: accepted(port, 'WARM_GW'), started, 120):.1f} s after the node's start")
            added, moved, opted_out = [], [], []
            for i in range(args.rounds):
                aet = f"GW{i:03d}"
                started = time.monotonic()
                app.add_node(aet=aet, host="127.0.0.1", port=104, establishment_id=est, kind="gateway")
                added.append(until(lambda: accepted(port, aet), started))
                started = time.monotonic()
                app.move_node(aet=aet, host="198.51.100.7", port=104)
                moved.append(until(lambda: not accepted(port, aet), started))
                started = time.monotonic()
                app.set_node_addresses(aet=aet, addresses=[], unverified=True)
                opted_out.append(until(lambda: accepted(port, aet), started))
            print(f"relais scp with {args.workers} worker(s), directory projection as its own process; "
                  "time from the command's commit to the first association answered accordingly:")
            figures("node added -> accepted", added)
            figures("node moved away -> rejected", moved)
            figures("« adresse non vérifiée » -> accepted", opted_out)
            app.add_node(aet="FAR_GW", host="198.51.100.9", port=104, establishment_id=est, kind="gateway")
            until(lambda: False, time.monotonic(), timeout=2.0)  # the node has read it
            rejected, echoed = [], []
            for _ in range(args.rounds * 5):
                started = time.monotonic()
                accepted(port, "FAR_GW")
                rejected.append(time.monotonic() - started)
                started = time.monotonic()
                accepted(port, "GW000")
                echoed.append(time.monotonic() - started)
            figures("association from a wrong address", rejected)
            figures("association accepted + release", echoed)
        finally:
            for p in processes:
                stop(p.process)
            app.close()
            with psycopg.connect(SERVER_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
