"""`relais scp` over several processes: one accepts, the least busy worker serves each association.

The real command runs as a subprocess; dcmtk `storescu` sends over parallel associations."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from adapters.dicom import workers
from adapters.dicom.workers import MAX_FAST_FAILURES, Acceptor
from domain.imaging import received_study_id
from projections.runner import catch_up
from tests.conftest import PATIENT
from tests.faults.dicomload import Sender, data_set_bytes, recorded_times, without_trailing_padding
from tests.peers import PEER_ENV, free_port, wait_port
from tests.processes import RelaisProcess

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_study  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk not installed (scripts/system-packages.sh)")

class Node(RelaisProcess):
    """`relais scp` with RELAIS_DICOM_WORKERS workers, its output collected."""

    def __init__(self, settings, port: int, workers: int = 2):
        self.port = port
        super().__init__(["scp"], dict(
            os.environ, RELAIS_DATABASE_URL=settings.database_url, RELAIS_DATA_DIR=str(settings.data_dir),
            RELAIS_DICOM_PORT=str(port), RELAIS_DICOM_WORKERS=str(workers), RELAIS_LOG_LEVEL="INFO",
        ))

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()

    def wait_for(self, pattern: str, timeout: float = 30, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.output)) >= count:
                return
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} ×{count} not logged:\n{self.output}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@pytest.fixture()
def node(relais, world, settings):
    relais.add_node(aet="TLSE_GW", host="127.0.0.1", port=104, establishment_id=world["toulouse"], kind="gateway")
    catch_up("directory", settings.eventsourcing_env(), relais)
    n = Node(settings, free_port())
    try:
        wait_port(n.port, 60, n.process)
        n.wait_for(r"processus \d/2 prêt", count=2)
        yield n
    finally:
        workers = n.workers() if n.process.poll() is None else []
        code = n.stop()
        gone, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive, f"workers left behind: {alive}"
        assert code == 0, n.output
        if not getattr(n, "killed", False):  # workers starting together never trip over each other
            assert "s'est arrêté" not in n.output, n.output


def storescu(port: int, paths: list[Path], calling: str = "TLSE_GW") -> subprocess.Popen:
    return subprocess.Popen(
        ["storescu", "-aet", calling, "-aec", "RELAIS", "-to", "20", "127.0.0.1", str(port), *map(str, paths)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=PEER_ENV,
    )


def recorded(relais, world, study_uid: str) -> int:
    sid = received_study_id(world["toulouse"], study_uid)
    return relais.repository.get(sid).instance_count if sid in relais.repository else 0


def wait_recorded(relais, world, study_uid: str, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while recorded(relais, world, study_uid) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    assert recorded(relais, world, study_uid) == n


def send_parallel(port: int, files: list[Path], parts: int, calling: str = "TLSE_GW") -> list[tuple[int, str]]:
    procs = [storescu(port, files[i::parts], calling) for i in range(parts)]
    return [(p.wait(timeout=120), p.stdout.read()) for p in procs]


def test_parallel_associations_are_spread_over_the_workers_and_all_recorded(node, relais, world, settings, tmp_path):
    study = write_study(tmp_path / "study", series=4, per_series=10)
    results = send_parallel(node.port, study["files"], 4)
    assert all(code == 0 for code, _ in results), results
    wait_recorded(relais, world, study["study_uid"], 40)
    serving = set(re.findall(r"\[(\d+)\] association acceptée : TLSE_GW", node.output))
    assert len(serving) == 2, node.output  # both workers served associations
    assert serving == {str(p.pid) for p in node.workers()}
    on_disk = list((settings.data_dir / "dicom" / world["toulouse"] / study["study_uid"]).glob("*.dcm"))
    assert len(on_disk) == 40


def test_a_worker_that_dies_is_replaced_and_the_node_goes_on(node, relais, world, tmp_path):
    before = {p.pid for p in node.workers()}
    victim = node.workers()[0]
    node.killed = True
    victim.send_signal(signal.SIGKILL)
    node.wait_for(r"le processus \d s'est arrêté")
    node.wait_for(r"processus \d/2 démarré", count=3)
    deadline = time.monotonic() + 30
    while len(node.workers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    after = {p.pid for p in node.workers()}
    assert victim.pid not in after and len(after) == 2 and after != before
    study = write_study(tmp_path / "study", series=2, per_series=5)
    results = send_parallel(node.port, study["files"], 2)
    assert all(code == 0 for code, _ in results), results
    wait_recorded(relais, world, study["study_uid"], 10)


def test_an_unknown_calling_ae_is_rejected_by_whichever_worker_gets_it(node, relais, world, tmp_path):
    study = write_study(tmp_path / "study", series=1, per_series=2)
    results = send_parallel(node.port, study["files"], 2, calling="INTRUS")
    assert all(code != 0 for code, _ in results), results
    node.wait_for(r"association refusée : INTRUS", count=2)
    assert recorded(relais, world, study["study_uid"]) == 0
    # the refused connections were counted as ended: the next associations still go to both workers
    ok = send_parallel(node.port, study["files"], 2)
    assert all(code == 0 for code, _ in ok), ok
    wait_recorded(relais, world, study["study_uid"], 2)


def test_a_taken_port_is_a_one_line_error(relais, world, settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        n = Node(settings, taken.getsockname()[1])
        code = n.process.wait(timeout=60)
    assert code == 2
    assert "écoute impossible" in n.output and "Traceback" not in n.output


def test_a_sender_that_connects_while_the_workers_start_waits_and_is_served(relais, world, settings, tmp_path):
    relais.add_node(aet="TLSE_GW", host="127.0.0.1", port=104, establishment_id=world["toulouse"], kind="gateway")
    catch_up("directory", settings.eventsourcing_env(), relais)
    study = write_study(tmp_path / "study", series=1, per_series=3)
    n = Node(settings, free_port())
    try:
        wait_port(n.port, 60, n.process)  # listening: the workers are still starting
        early = storescu(n.port, study["files"])
        assert early.wait(timeout=120) == 0, early.stdout.read()
        assert "prêt" in n.output
        wait_recorded(relais, world, study["study_uid"], 3)
    finally:
        assert n.stop() == 0, n.output


# ---------------------------------------------------------------- kill -9 of the workers mid-transfer (issue 11 item 5)


def kill_workers(node: Node) -> set[int]:
    workers = node.workers()
    node.killed = True
    for w in workers:
        w.send_signal(signal.SIGKILL)
    return {w.pid for w in workers}


def await_accession(relais, world, settings, accession: str) -> str:
    did = relais.create_dossier(
        actor_id=world["requester"], workflow="stroke_opinion", question="Thrombectomie ?", urgency="stat",
        consent="given", imaging_source="dicom_store", **PATIENT,
    )
    relais.await_imaging(dossier_id=did, actor_id=world["requester"], accession_number=accession)
    catch_up("imaging", settings.eventsourcing_env(), relais)
    return did


@pytest.mark.parametrize("moment", ["early", "mid-batch", "after an association"])
def test_instances_acknowledged_by_workers_killed_mid_transfer_are_recorded_within_seconds(
    node, relais, world, settings, tmp_path, moment,
):
    """Both workers kill -9'd while storescu sends: the acceptor starts them again and every instance
    acknowledged before is recorded (exactly once, byte-identical on disk), and the awaiting dossier
    gets its study, without `relais scp` itself restarting (they waited for it before)."""
    study = write_study(tmp_path / "study", accession="KILL9", series=4, per_series=100)
    without_trailing_padding(study["files"])
    did = await_accession(relais, world, settings, "KILL9")
    files = study["files"]
    acked: list[Path] = []
    if moment == "after an association":  # three associations of 20 end; kill at once after the third
        for k in range(3):
            sender = Sender(node.port, files[20 * k:20 * (k + 1)], "TLSE_GW", PEER_ENV)
            assert sender.end() == 0, "".join(sender.lines[-20:])
            acked += sender.acked
        killed = kill_workers(node)
    else:
        sender = Sender(node.port, files, "TLSE_GW", PEER_ENV)
        sender.wait_acked(5 if moment == "early" else 150)
        killed = kill_workers(node)
        sender.end()
        acked = list(sender.acked)
    assert acked
    killed_at = time.monotonic()
    node.wait_for(r"le processus \d s'est arrêté", count=2)
    node.wait_for(r"processus \d/2 prêt", count=4, timeout=60)
    assert not killed & {p.pid for p in node.workers()}
    by_file = dict(zip(files, study["sops"], strict=True))
    want = {by_file[f] for f in acked}
    deadline = time.monotonic() + 60
    while not want <= set(recorded_times(relais, world["toulouse"], study["study_uid"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    times = recorded_times(relais, world["toulouse"], study["study_uid"])
    assert want <= set(times), f"{len(want - set(times))} of {len(want)} acknowledged instances not recorded"
    print(f"\n[kill -9 of both workers, {moment}] {len(want)} acknowledged instances all recorded "
          f"{time.monotonic() - killed_at:.2f} s after the kill")
    assert set(times.values()) == {1}, [s for s, n in times.items() if n != 1]
    folder = settings.data_dir / "dicom" / world["toulouse"] / study["study_uid"]
    for f in acked:
        assert data_set_bytes(folder / f"{by_file[f]}.dcm") == data_set_bytes(f)
    deadline = time.monotonic() + 30
    while not relais.get_dossier(dossier_id=did, actor_id=world["requester"]).imaging and time.monotonic() < deadline:
        time.sleep(0.2)
    (attached,) = relais.get_dossier(dossier_id=did, actor_id=world["requester"]).imaging
    assert attached["study_instance_uid"] == study["study_uid"]


# ---------------------------------------------------------------- a worker that cannot start again (PostgreSQL away)

FAKE_WORKER = """
import os, pathlib, socket, sys, time
broken, starts = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with starts.open("a") as f:
    f.write("x")
if broken.exists():
    sys.exit(2)  # as `relais scp` does when the database cannot be reached
channel = socket.socket(fileno=int(os.environ["RELAIS_DICOM_CHANNEL_FD"]))
channel.send(b"R")
time.sleep(3600)
"""


def fake_acceptor(tmp_path: Path) -> tuple[Acceptor, Path, Path]:
    script, broken, starts = tmp_path / "worker.py", tmp_path / "broken", tmp_path / "starts"
    script.write_text(FAKE_WORKER)
    acceptor = Acceptor(host="127.0.0.1", port=free_port(), count=1, env=dict(os.environ),
                        command=[sys.executable, str(script), str(broken), str(starts)])
    return acceptor, broken, starts


def wait(predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert predicate()


def test_a_node_that_served_keeps_starting_a_worker_that_fails_quickly(tmp_path, monkeypatch):
    """A worker killed while PostgreSQL is away fails at each start (it cannot reach the database):
    the node goes on with its other workers and starts it again, less and less often, until it
    starts. Three quick failures stopped the whole node (meant for a node that never started)."""
    monkeypatch.setattr(workers, "RESTART_DELAY_SECONDS", 0.1)  # the same doubling, from 0.1 s instead of 1 s
    acceptor, broken, starts = fake_acceptor(tmp_path)
    stop = threading.Event()
    serving = threading.Thread(target=acceptor.serve, args=(stop,), daemon=True)
    try:
        acceptor.open()
        serving.start()
        wait(lambda: acceptor.workers[0].ready)
        broken.touch()
        acceptor.workers[0].process.send_signal(signal.SIGKILL)
        wait(lambda: len(starts.read_text()) >= 1 + MAX_FAST_FAILURES + 1)  # more quick failures than the limit
        assert not stop.is_set() and acceptor.failed is None
        broken.unlink()
        wait(lambda: acceptor.workers[0].ready)  # started again once it can
        assert not stop.is_set() and acceptor.failed is None
    finally:
        stop.set()
        serving.join(30)
        acceptor.close()


def test_a_node_whose_workers_never_start_gives_up(tmp_path):
    acceptor, broken, starts = fake_acceptor(tmp_path)
    broken.touch()
    stop = threading.Event()
    try:
        acceptor.open()
        acceptor.serve(stop)  # returns once it gives up
        assert stop.is_set() and "échoue au démarrage" in (acceptor.failed or "")
        assert len(starts.read_text()) == MAX_FAST_FAILURES
    finally:
        acceptor.close()
