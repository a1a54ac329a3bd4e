"""The DICOM node's faults under a steady C-STORE load (storescu in a loop): kill -9 of a worker, of
the acceptor, of both; the data folder's disk full; PostgreSQL restarted. Each leaves every
instance storescu was answered Success for on disk, byte-identical, and recorded exactly once,
within seconds; the seconds measured are printed (`pytest -s`).

One `relais scp` with two workers (RELAIS_DICOM_WORKERS=2) on the suite's private PostgreSQL, its
data folder on the suite's small tmpfs, serves the module; a test that kills the acceptor starts the
node again, as `relais up`'s supervisor does."""

from __future__ import annotations

import os
import re
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from pydicom import dcmread

from adapters.settings import Settings
from entrypoints.bootstrap import upgrade
from projections.runner import catch_up
from tests.dicomdata import write_study
from tests.faults.checks import app_on
from tests.faults.dicomload import StoreLoad, data_set_bytes, recorded_times, without_trailing_padding
from tests.faults.servers import wait_until
from tests.peers import free_port, wait_port
from tests.processes import RelaisProcess

CALLING = "TLSE_GW"
OUTAGE = 5.0  # seconds PostgreSQL stays down (the fault itself)
RECOVERY_BOUND = 60.0  # seconds every acknowledged instance may take to be recorded (a loaded 2-core machine)


def figures(label: str, **values: float | str) -> None:
    shown = ", ".join(f"{k} {v:.2f} s" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
    print(f"\n[faults] DICOM node, {label}: {shown}")


class Node:
    """`relais scp` with two workers; started again after a kill of its acceptor."""

    def __init__(self, url: str, data_dir: Path):
        self.port = free_port()
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
        self.env.update(RELAIS_DATABASE_URL=url, RELAIS_DATA_DIR=str(data_dir), RELAIS_DICOM_PORT=str(self.port),
                        RELAIS_DICOM_WORKERS="2", RELAIS_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
        self.process: RelaisProcess | None = None
        self.previous_output = ""

    def start(self) -> float:
        started = time.monotonic()
        process = self.process = RelaisProcess(["scp"], self.env)
        wait_port(self.port, 60, process.process)
        wait_until(lambda: len(re.findall(r"processus \d/2 prêt", process.output)) >= 2 or process.process.poll() is not None,
                   60, "both workers ready")
        assert process.process.poll() is None, process.output[-3000:]
        return time.monotonic() - started

    @property
    def output(self) -> str:
        return self.previous_output + (self.process.output if self.process else "")

    def workers(self) -> list[psutil.Process]:
        assert self.process is not None
        found = []
        for p in psutil.Process(self.process.process.pid).children():
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
            except psutil.NoSuchProcess:
                continue
        return found

    def kill(self, *, acceptor: bool, workers: int) -> None:
        """kill -9 of the acceptor and/or of `workers` workers, at once."""
        assert self.process is not None
        victims = self.workers()[:workers]
        if acceptor:
            os.kill(self.process.process.pid, signal.SIGKILL)
        for w in victims:
            w.send_signal(signal.SIGKILL)
        if acceptor:
            self.process.process.wait(timeout=30)
            psutil.wait_procs(victims, timeout=30)
            self.previous_output += self.process.output + "\n--- kill -9 ---\n"
            self.process = None

    def stop(self) -> None:
        if self.process is None or self.process.process.poll() is not None:
            return
        workers = self.workers()
        self.process.process.send_signal(signal.SIGTERM)
        self.process.process.wait(timeout=60)
        psutil.wait_procs(workers, timeout=30)


@pytest.fixture(scope="module")
def scp(postgres, data_folder) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    url = postgres.create_database(f"scp_{uuid.uuid4().hex[:8]}")
    upgrade(Settings(database_url=url))
    app = app_on(url)
    establishment = app.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    app.add_node(aet=CALLING, host="127.0.0.1", port=104, establishment_id=establishment, kind="gateway")
    catch_up("directory", Settings(database_url=url, tables_ready=True).eventsourcing_env(), app)
    node = Node(url, data_folder.path / f"scp-{uuid.uuid4().hex[:8]}")
    took = node.start()
    print(f"\n[faults] relais scp (2 workers) ready in {took:.1f} s")
    try:
        yield {"node": node, "app": app, "establishment": str(establishment)}
    finally:
        try:
            node.stop()
        finally:
            app.close()
            log = Path(tempfile.gettempdir()) / "relais-faults-scp.log"
            log.write_text(node.output)
            print(f"\n[faults] relais scp's output: {log}")


def _load(scp: dict, folder: Path, instances: int = 300) -> tuple[StoreLoad, dict]:
    """storescu sending a study of `instances` instances, 10 an association and a pause of 0.2 s
    between two (about 30 a second), once 25 are acknowledged (mid-association: a fault then finds
    acknowledged instances in a batch, in memory)."""
    study = write_study(folder, accession=f"F{uuid.uuid4().hex[:8]}", series=1, per_series=instances)
    without_trailing_padding(study["files"])
    load = StoreLoad(scp["node"].port, study["files"], CALLING, per_association=10, pause=0.2).start()
    load.wait_acked(25, timeout=120)
    return load, study


def _unrecorded(scp: dict, study: dict, load: StoreLoad) -> int:
    """How many acknowledged instances are not recorded yet (held in a batch, in memory)."""
    sop_of = dict(zip(study["files"], study["sops"], strict=True))
    recorded = set(recorded_times(scp["app"], scp["establishment"], study["study_uid"]))
    return len({sop_of[f] for f in list(load.acked)} - recorded)


def _all_recorded(scp: dict, study: dict, acked: dict[Path, float], since: float) -> float:
    """Every acknowledged instance recorded exactly once, byte-identical on disk, nothing half-written
    in place; returns the seconds from `since` until they were all recorded."""
    sop_of = dict(zip(study["files"], study["sops"], strict=True))
    want = {sop_of[f] for f in acked}
    app, est = scp["app"], scp["establishment"]

    def recorded() -> bool:
        return want <= set(recorded_times(app, est, study["study_uid"]))

    wait_until(recorded, RECOVERY_BOUND, f"the {len(want)} acknowledged instances recorded", every=0.05)
    took = time.monotonic() - since
    times = recorded_times(app, est, study["study_uid"])
    assert set(times.values()) == {1}, f"recorded more than once: {[s for s, n in times.items() if n > 1]}"
    folder = scp["node"].data_dir / "dicom" / est / study["study_uid"]
    for f in acked:
        assert data_set_bytes(folder / f"{sop_of[f]}.dcm") == data_set_bytes(f), f"{sop_of[f]} differs from what was sent"
    for sop in times:  # every recorded instance is whole on disk
        dcmread(folder / f"{sop}.dcm")
    return took


def _kill(scp: dict, tmp_path: Path, label: str, *, acceptor: bool, workers: int) -> None:
    node: Node = scp["node"]
    load, study = _load(scp, tmp_path / "study")
    killed = time.monotonic()
    node.kill(acceptor=acceptor, workers=workers)
    before, in_memory = load.count(), _unrecorded(scp, study, load)  # what the killed processes held
    restarted = ""
    if acceptor:  # what `relais up`'s supervisor does
        restarted = f"{node.start():.2f} s"
    first = load.wait_acked(20, after=killed) - killed
    acked = load.stop()
    recorded = _all_recorded(scp, study, acked, killed)
    figures(label, acknowledged=str(len(acked)), before_the_kill=str(before), unrecorded_at_the_kill=str(in_memory),
            node_started_again=restarted or "-", twenty_more_acknowledged_after=first,
            all_acknowledged_recorded=recorded)


def test_kill_9_of_a_worker_under_load(scp, tmp_path):
    _kill(scp, tmp_path, "kill -9 of a worker", acceptor=False, workers=1)


def test_kill_9_of_both_workers_under_load(scp, tmp_path):
    _kill(scp, tmp_path, "kill -9 of both workers", acceptor=False, workers=2)


def test_kill_9_of_the_acceptor_under_load(scp, tmp_path):
    _kill(scp, tmp_path, "kill -9 of the acceptor", acceptor=True, workers=0)


def test_kill_9_of_the_acceptor_and_the_workers_under_load(scp, tmp_path):
    _kill(scp, tmp_path, "kill -9 of the acceptor and both workers", acceptor=True, workers=2)


def test_disk_full_under_load(scp, data_folder, tmp_path):
    """The data folder's file system full: the sender is answered out of resources (0xA700), no
    temporary file is left and nothing half-written is recorded; once space is back the same
    instances are stored and recorded."""
    if not data_folder.mounted:
        pytest.skip(f"no file system of our own to fill ({data_folder.why_not})")
    load, study = _load(scp, tmp_path / "study", instances=200)
    data_folder.fill(leave=256 * 1024)
    try:
        wait_until(lambda: any("OutOfResources" in s.replace(" ", "") for s in load.statuses), RECOVERY_BOUND,
                   "a C-STORE answered out of resources")
        refused = sum(n for s, n in load.statuses.items() if "OutOfResources" in s.replace(" ", ""))
    finally:
        data_folder.release()
    back = time.monotonic()
    first = load.wait_acked(20, after=back) - back
    acked = load.stop()
    folder = scp["node"].data_dir / "dicom" / scp["establishment"] / study["study_uid"]
    assert not list(folder.glob(".*.part")), "a temporary file was left behind"
    recorded = _all_recorded(scp, study, acked, back)
    figures("disk full", refused_out_of_resources=str(refused), acknowledged=str(len(acked)),
            twenty_acknowledged_after_space_back=first, all_acknowledged_recorded=recorded)


def test_postgresql_restarted_under_load(scp, postgres, tmp_path):
    """Instances received while PostgreSQL is down are acknowledged (their files are safe), wait on
    disk and are recorded once it is back; no caller is refused meanwhile (the directory's list of
    AE titles cannot be read during the outage: the last one read is kept)."""
    node: Node = scp["node"]
    load, study = _load(scp, tmp_path / "study", instances=500)
    logged = len(node.output)
    postgres.stop("fast")
    down = time.monotonic()
    try:
        during = load.wait_acked(5, after=down, timeout=60)
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down)))  # the outage lasts OUTAGE seconds
        stored_during = load.count(after=down)
    finally:
        postgres.start()
    back = time.monotonic()
    first = load.wait_acked(20, after=back) - back
    acked = load.stop()
    recorded = _all_recorded(scp, study, acked, back)
    refused = [line for line in node.output[logged:].splitlines() if "refusé" in line]
    assert not refused, refused[:5]
    # what follows a batch (attachment to awaiting dossiers, identity check of attached studies) was
    # skipped for the first batches after the restart: a pooled connection PostgreSQL had cut
    assert "rattachement automatique en échec" not in node.output[logged:]
    figures("PostgreSQL restarted", outage=OUTAGE, acknowledged_during_outage=str(stored_during),
            five_acknowledged_during_outage_after=during - down, twenty_acknowledged_after_restart=first,
            all_acknowledged_recorded_after_restart=recorded)



def test_a_worker_killed_while_postgresql_is_down(scp, postgres, tmp_path):
    """A worker killed during a PostgreSQL outage cannot start again until it is back (each start
    fails at once): the other worker goes on storing what the gateway sends, the node keeps starting
    the worker (it stopped the whole node after three quick failures), and once PostgreSQL is back
    every acknowledged instance is recorded, the killed worker's batch included."""
    node: Node = scp["node"]
    load, study = _load(scp, tmp_path / "study", instances=600)
    logged = len(node.output)
    postgres.stop("fast")
    down = time.monotonic()
    try:
        node.kill(acceptor=False, workers=1)
        wait_until(lambda: re.search(r"le processus \d s'est arrêté \(code [12]\)", node.output[logged:]), RECOVERY_BOUND,
                   "the worker failing to start while PostgreSQL is down")
        load.wait_acked(20, after=time.monotonic(), timeout=60)  # the other worker still serves
        stored_during = load.count(after=down)
        outage = time.monotonic() - down
    finally:
        postgres.start()
    back = time.monotonic()
    wait_until(lambda: len(re.findall(r"processus \d/2 prêt", node.output[logged:])) >= 1, RECOVERY_BOUND,
               "the worker started again once PostgreSQL is back")
    ready = time.monotonic() - back
    first = load.wait_acked(20, after=back) - back
    acked = load.stop()
    recorded = _all_recorded(scp, study, acked, back)
    assert node.process is not None and node.process.process.poll() is None, "the node stopped"
    refused = [line for line in node.output[logged:].splitlines() if "refusé" in line]
    assert not refused, refused[:5]
    figures("a worker killed while PostgreSQL is down", outage=outage, acknowledged_during_outage=str(stored_during),
            worker_ready_after_restart=ready, twenty_acknowledged_after_restart=first,
            all_acknowledged_recorded_after_restart=recorded)
