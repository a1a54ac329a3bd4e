"""What the DICOM node's recovery passes cost, and how soon a killed worker's instances are recorded.

1. Passes over a data folder of S studies × I instances, all recorded (a throw-away database
   `relais_bench_<pid>` and folder): a full pass (every study's events read: what the node did at
   start only), a periodic pass with nothing changed since the last, and one with a single study
   changed holding one unrecorded instance (adapters/dicom/recovery.py).
2. `relais scp` with two workers: dcmtk storescu sends N instances over one association; after K
   are acknowledged both workers get kill -9; the time from the kill until every acknowledged
   instance is recorded (the acceptor starts the workers again; each recovers as it starts).

Prints figures, asserts nothing about time; exits non-zero if an acknowledged instance is missing.

    .venv/bin/python bench/dicom_recovery.py                      # 300 studies × 20, 400 sent, kill at 150
    .venv/bin/python bench/dicom_recovery.py --studies 1000 --instances 10
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import psycopg  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from adapters.dicom.receive import describe  # noqa: E402
from adapters.dicom.recovery import ChangedStudies  # noqa: E402
from adapters.dicom.storage import InstanceStore  # noqa: E402
from adapters.settings import Settings  # noqa: E402
from entrypoints.bootstrap import build_app, open_view_as, upgrade  # noqa: E402
from entrypoints.dicom_node import recovery  # noqa: E402
from projections.imaging import PostgresImagingView  # noqa: E402
from projections.runner import catch_up  # noqa: E402
from tests.dicomdata import write_study  # noqa: E402
from tests.faults.dicomload import Sender, recorded_times  # noqa: E402
from tests.peers import PEER_ENV, free_port, wait_port  # noqa: E402
from tests.processes import RelaisProcess  # noqa: E402

DEFAULT_SERVER = os.environ.get("RELAIS_TEST_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def passes(settings: Settings, establishment: str, studies: int, instances: int) -> None:
    store = InstanceStore(settings.dicom_root)
    base = dcmread(get_testdata_file("CT_small.dcm"))
    app = build_app(settings)
    imaging = open_view_as(PostgresImagingView, "imaging", settings.small_pool_env())
    try:
        started = time.monotonic()
        uids = []
        for _ in range(studies):
            study_uid, series_uid = generate_uid(), generate_uid()
            uids.append((study_uid, series_uid))
            items = []
            for n in range(instances):
                ds = base.copy()
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, series_uid, generate_uid()
                ds.InstanceNumber = n + 1
                path = Path(tempfile.gettempdir()) / "relais-bench-recovery.dcm"
                ds.save_as(path, enforce_file_format=True)
                store.put(establishment, study_uid, ds.SOPInstanceUID, path.read_bytes())
                items.append(describe(ds, transfer_syntax=str(ds.file_meta.TransferSyntaxUID), size=path.stat().st_size))
            app.record_received(establishment_id=establishment, instances=items, source={"kind": "bench"})
        print(f"{studies} studies × {instances} instances stored and recorded in {time.monotonic() - started:.1f} s")
        past = time.time() - 3600  # stored an hour ago, as on a running node (a pass looks SLACK seconds back)
        for est_study in store.studies():
            os.utime(store.study_dir(*est_study), (past, past))
        r = recovery(settings, app, imaging)
        for label, full in (("full pass (every study's events read)", True),
                            ("periodic pass, nothing changed", False),
                            ("periodic pass, nothing changed (again)", False)):
            looked = studies if full else len(list(ChangedStudies(settings.dicom_root, r.since()).studies()))
            t = time.monotonic()
            found = r.run(full=full)
            print(f"  {label:<52} {time.monotonic() - t:8.3f} s   {looked} studies looked at, {found} recorded")
        ds = base.copy()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = *uids[0], generate_uid()
        path = Path(tempfile.gettempdir()) / "relais-bench-recovery.dcm"
        ds.save_as(path, enforce_file_format=True)
        store.put(establishment, uids[0][0], ds.SOPInstanceUID, path.read_bytes())  # stored, its batch lost
        looked = len(list(ChangedStudies(settings.dicom_root, r.since()).studies()))
        t = time.monotonic()
        found = r.run()
        print(f"  {'periodic pass, one study changed (1 unrecorded)':<52} {time.monotonic() - t:8.3f} s   "
              f"{looked} studies looked at, {found} recorded")
    finally:
        imaging.datastore.close()
        app.close()


def kill_both(settings: Settings, establishment: str, sent: int, kill_at: int, folder: Path) -> bool:
    app = build_app(settings)
    port = free_port()
    env = dict(os.environ, RELAIS_DATABASE_URL=settings.database_url or "", RELAIS_DATA_DIR=str(settings.data_dir),
               RELAIS_DICOM_PORT=str(port), RELAIS_DICOM_WORKERS="2", RELAIS_LOG_LEVEL="INFO", RELAIS_TABLES_READY="1")
    node = RelaisProcess(["scp"], env)
    try:
        wait_port(port, 60, node.process)
        while len(re.findall(r"processus \d/2 prêt", node.output)) < 2:
            time.sleep(0.1)
        study = write_study(folder, series=1, per_series=sent)
        sender = Sender(port, study["files"], "BENCH_GW", PEER_ENV)
        sender.wait_acked(kill_at)
        killed = time.monotonic()
        for w in psutil.Process(node.process.pid).children():
            w.send_signal(signal.SIGKILL)
        sender.end()
        sop_of = dict(zip(study["files"], study["sops"], strict=True))
        want = {sop_of[f] for f in sender.acked}
        unrecorded = len(want - set(recorded_times(app, establishment, study["study_uid"])))
        deadline = killed + 120
        while not want <= set(recorded_times(app, establishment, study["study_uid"])) and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.monotonic() - killed
        times = recorded_times(app, establishment, study["study_uid"])
        ok = want <= set(times) and set(times.values()) == {1}
        print(f"kill -9 of both workers after {kill_at} of {sent} acknowledged: {len(want)} acknowledged, "
              f"{unrecorded} not yet recorded at the kill; all recorded, each once, {took:.2f} s after the kill"
              + ("" if ok else "  MISSING OR DUPLICATED"))
        return ok
    finally:
        node.process.send_signal(signal.SIGTERM)
        node.process.wait(timeout=60)
        app.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--sent", type=int, default=400)
    parser.add_argument("--kill-at", type=int, default=150)
    args = parser.parse_args()
    name = f"relais_bench_{os.getpid()}"
    with psycopg.connect(args.server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = args.server.rsplit("/", 1)[0] + f"/{name}"
    folder = Path(tempfile.mkdtemp(prefix="relais-bench-recovery-"))
    try:
        settings = Settings(database_url=url, data_dir=folder / "var")
        upgrade(settings)
        settings = Settings(database_url=url, data_dir=folder / "var", tables_ready=True)
        app = build_app(settings)
        establishment = app.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
        app.add_node(aet="BENCH_GW", host="127.0.0.1", port=104, establishment_id=establishment, kind="gateway")
        catch_up("directory", settings.eventsourcing_env(), app)
        app.close()
        passes(settings, str(establishment), args.studies, args.instances)
        ok = kill_both(settings, str(establishment), args.sent, args.kill_at, folder / "sent")
    finally:
        with psycopg.connect(args.server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
