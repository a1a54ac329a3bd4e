"""A PACS (Orthanc, the test's own process) killed in the middle of a retrieve: the closed connection is
reported at once as such, not as a timeout after the DIMSE timeout (30 s)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.dicom.qr import Peer, QRError, QueryRetrieve
from adapters.dicom.retrieve import Retriever
from adapters.dicom.storage import InstanceStore
from entrypoints.dicom_node import node_server
from projections.runner import catch_up, open_view
from tests.conftest import PATIENT
from tests.peers import ORTHANC, Orthanc, free_port

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_study  # noqa: E402

pytestmark = pytest.mark.skipif(ORTHANC is None, reason="Orthanc not installed (scripts/system-packages.sh)")

TIMEOUT = 30.0  # the product's DIMSE timeout (qr.TIMEOUT): a closed connection must not wait for it
KILL_AT = 8  # instances stored on our side before the PACS is killed


@pytest.fixture()
def pacs(tmp_path):
    node_port = free_port()
    study = write_study(tmp_path / "study", accession="ACC-KILL", patient_id="PAT009", series=2, per_series=40)
    with Orthanc(tmp_path / "orthanc", modalities={"RELAIS": ("127.0.0.1", node_port)}) as o:
        o.upload(study["files"])
        yield {"orthanc": o, "study": study, "node_port": node_port}


@pytest.fixture()
def node(relais, world, settings, pacs):
    o = pacs["orthanc"]
    relais.add_node(aet=o.aet, host="127.0.0.1", port=o.dicom_port, establishment_id=world["toulouse"], kind="pacs")
    env = settings.eventsourcing_env()
    catch_up("directory", env, relais)
    s = replace(settings, dicom_port=pacs["node_port"])
    directory, imaging = open_view("directory", env), open_view("imaging", env)
    stop = threading.Event()
    with node_server(s, relais, directory, imaging) as server:
        t = threading.Thread(target=server.serve, args=(stop,), daemon=True)
        t.start()
        did = relais.create_dossier(
            actor_id=world["requester"], workflow="imaging_transfer", question="Avis sur scanner", consent="given",
            imaging_source="pacs_retrieve", **PATIENT,
        )
        yield {"dossier": did, "settings": s}
        stop.set()
        t.join(timeout=10)
    directory.datastore.close()
    imaging.datastore.close()


def _kill_pacs_after(monkeypatch, orthanc: Orthanc, count: int) -> dict:
    """Kills Orthanc (SIGKILL, by its PID) when the `count`-th instance is being stored on our side
    (by our node for a C-MOVE, by the retrieve's writer for a C-GET); returns when it was killed."""
    killed: dict = {}
    lock = threading.Lock()
    real = InstanceStore.put

    def put(self, *args, **kwargs):
        with lock:
            killed["seen"] = killed.get("seen", 0) + 1
            if killed["seen"] == count and orthanc.proc is not None:
                os.kill(orthanc.proc.pid, signal.SIGKILL)
                orthanc.proc.wait()
                killed["at"] = time.monotonic()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(InstanceStore, "put", put)
    return killed


@pytest.mark.parametrize("method", ["move", "get"])
def test_a_pacs_killed_mid_retrieve_is_reported_as_an_interrupted_connection_at_once(
    relais, world, pacs, node, monkeypatch, method,
):
    relais.set_node_retrieve_method(aet="ORTHANC", method=method)
    r = Retriever(app=relais, store=InstanceStore(node["settings"].dicom_root), our_aet="RELAIS", settle=1.0,
                  timeout=TIMEOUT, parallel=2, min_split=2)
    killed = _kill_pacs_after(monkeypatch, pacs["orthanc"], KILL_AT)

    out = r.retrieve(dossier_id=node["dossier"], study_uid=pacs["study"]["study_uid"], node_aet="ORTHANC")
    took = time.monotonic() - killed["at"]
    print(f"{method}: reported {took:.2f} s after the kill: {out.status}, {out.reason}")
    assert out.status == "failed" and "connexion interrompue par le PACS" in out.reason, out.reason
    assert "délai dépassé" not in out.reason
    assert took < TIMEOUT / 2  # not the DIMSE timeout: the closed connection is seen as it closes


def test_a_c_find_to_a_pacs_that_dies_is_an_interrupted_connection_not_a_timeout(pacs, monkeypatch):
    """The same on a query association: the PACS is stopped (SIGSTOP: it cannot answer), our C-FIND
    leaves, then the PACS is killed and its connection closes while we wait for the answer."""
    o = pacs["orthanc"]
    qr = QueryRetrieve("RELAIS", timeout=TIMEOUT)
    with qr.session(Peer(o.aet, "127.0.0.1", o.dicom_port)) as q:
        assert len(q.find_series(pacs["study"]["study_uid"])) == 2  # the association is open
        assoc = q._assoc
        real = assoc.send_c_find
        killed: list[float] = []

        def send_c_find(*args, **kwargs):
            os.kill(o.proc.pid, signal.SIGSTOP)
            responses = real(*args, **kwargs)  # the request is sent
            os.kill(o.proc.pid, signal.SIGKILL)
            o.proc.wait()
            killed.append(time.monotonic())
            return responses

        monkeypatch.setattr(assoc, "send_c_find", send_c_find)
        with pytest.raises(QRError) as e:
            q.find_series(pacs["study"]["study_uid"])
    took = time.monotonic() - killed[0]
    print(f"c-find: reported {took:.2f} s after the kill: {e.value.reason}")
    assert e.value.reason == "connexion interrompue par le PACS pendant la recherche" and e.value.code == "interrupted"
    assert took < TIMEOUT / 2
