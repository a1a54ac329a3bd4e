"""Query/Retrieve from a real PACS (Orthanc): C-FIND, C-MOVE to our node, C-GET, completeness, failures, job."""

from __future__ import annotations

import errno
import logging
import socket
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom.dimse_primitives import C_FIND

from adapters.dicom.background_writes import BackgroundWrites
from adapters.dicom.qr import Peer, QRError, QueryRetrieve
from adapters.dicom.reactor import RequestorAssociation, WakingDUL
from adapters.dicom.retrieve import Ask, Retriever, retrieve_job_id, share
from adapters.dicom.storage import InstanceStore
from adapters.jobs import InlineJobs
from application.errors import ForbiddenError
from application.imaging import ReceivedInstance
from domain.imaging import received_study_id
from entrypoints.bootstrap import JOBS
from entrypoints.dicom_node import node_server
from projections.runner import catch_up, open_view
from tests.conftest import PATIENT
from tests.peers import ORTHANC, Orthanc, free_port

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_study  # noqa: E402

pytestmark = pytest.mark.skipif(ORTHANC is None, reason="Orthanc not installed (scripts/system-packages.sh)")

NODE_PORT = free_port()


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pacs")
    ct = write_study(folder / "ct", accession="ACC-CT1", patient_id="PAT001", series=2, per_series=3)
    mr = write_study(folder / "mr", accession="ACC-MR1", patient_id="PAT002", patient_name="MARTIN^PAUL",
                     series=1, per_series=2, source="MR_small.dcm", description="IRM GENOU")
    # one series of 5: split by instance when shared between associations, resumed by instance
    thin = write_study(folder / "thin", accession="ACC-CT2", patient_id="PAT003", series=1, per_series=5)
    thin["series_uid"] = str(dcmread(thin["files"][0], stop_before_pixels=True).SeriesInstanceUID)
    with Orthanc(folder / "orthanc", modalities={"RELAIS": ("127.0.0.1", NODE_PORT)}) as o:
        o.upload(ct["files"] + mr["files"] + thin["files"])
        yield {"orthanc": o, "ct": ct, "mr": mr, "thin": thin, "peer": Peer(o.aet, "127.0.0.1", o.dicom_port)}


@pytest.fixture()
def setup(relais, world, settings, pacs):
    o = pacs["orthanc"]
    relais.add_node(aet=o.aet, host="127.0.0.1", port=o.dicom_port, establishment_id=world["toulouse"], kind="pacs")
    env = settings.eventsourcing_env()
    catch_up("directory", env, relais)
    s = replace(settings, dicom_port=NODE_PORT)
    directory, imaging = open_view("directory", env), open_view("imaging", env)
    stop = threading.Event()
    with node_server(s, relais, directory, imaging) as node:
        t = threading.Thread(target=node.serve, args=(stop,), daemon=True)
        t.start()
        did = relais.create_dossier(
            actor_id=world["requester"], workflow="imaging_transfer", question="Avis sur scanner", consent="given",
            imaging_source="pacs_retrieve", **PATIENT,
        )
        retriever = Retriever(app=relais, store=InstanceStore(s.dicom_root), our_aet="RELAIS", settle=1.0, timeout=10)
        yield {"dossier": did, "retriever": retriever, "settings": s, "env": env, "imaging": imaging}
        stop.set()
        t.join(timeout=10)
    directory.datastore.close()
    imaging.datastore.close()


def test_c_find_at_study_level_with_the_form_keys(pacs):
    qr = QueryRetrieve("RELAIS", timeout=10)
    peer = pacs["peer"]
    (ct,) = qr.find_studies(peer, patient_id="PAT001")
    assert ct.study_instance_uid == pacs["ct"]["study_uid"]
    assert ct.instance_count == 6 and ct.series_count == 2 and ct.modalities == ("CT",)
    assert ct.accession_number == "ACC-CT1" and ct.patient_name == "DUPONT^JEANNE"
    assert [s.study_instance_uid for s in qr.find_studies(peer, accession_number="ACC-MR1")] == [pacs["mr"]["study_uid"]]
    assert [s.patient_id for s in qr.find_studies(peer, patient_name="MART*")] == ["PAT002"]
    assert [s.patient_id for s in qr.find_studies(peer, modality="MR")] == ["PAT002"]
    assert qr.find_studies(peer, birth_date="19500302", patient_id="PAT001")
    assert qr.find_studies(peer, date_from="20990101", date_to="20991231") == []
    series = qr.find_series(peer, pacs["ct"]["study_uid"])
    assert sorted(s.instance_count for s in series) == [3, 3]
    thin = pacs["thin"]
    found = qr.find_instances(peer, thin["study_uid"], thin["series_uid"])
    assert sorted(i.sop_instance_uid for i in found) == sorted(thin["sops"]) and {i.number for i in found} == {1, 2, 3, 4, 5}
    with qr.session(peer) as s:  # several C-FINDs on one association
        assert [m.patient_id for m in s.find_studies(study_instance_uid=thin["study_uid"])] == ["PAT003"]
        assert [x.instance_count for x in s.find_series(thin["study_uid"])] == [5]
        assert len(s.find_instances(thin["study_uid"], thin["series_uid"])) == 5


def test_c_move_retrieves_the_whole_study_and_attaches_it(relais, world, pacs, setup):
    out = setup["retriever"].retrieve(dossier_id=setup["dossier"], study_uid=pacs["ct"]["study_uid"], node_aet="ORTHANC")
    assert (out.status, out.expected, out.received, out.attempts) == ("completed", 6, 6, 1), out.reason
    d = relais.get_dossier(dossier_id=setup["dossier"], actor_id=world["requester"])
    (study,) = d.imaging
    assert study["source"] == "pacs_retrieve" and study["instance_count"] == 6 and study["series_count"] == 2
    s = relais.repository.get(received_study_id(world["toulouse"], pacs["ct"]["study_uid"]))
    assert s.last_retrieve["status"] == "completed" and s.last_retrieve["method"] == "move"
    catch_up("imaging", setup["env"], relais)
    row = setup["imaging"].study(out.study_id)
    assert row.instance_count == 6 and row.last_retrieve["status"] == "completed"


def test_our_associations_wait_on_their_socket_not_in_1_ms_sleeps(pacs):
    seen = []

    def on_store(event):
        seen.append((type(event.assoc.dul), event.assoc.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
        return 0x0000

    QueryRetrieve("RELAIS", timeout=10).get(pacs["peer"], pacs["mr"]["study_uid"], on_store, lambda assoc: None)
    assert seen == [(WakingDUL, 1)] * 2  # the node's event-driven DUL, Nagle off


def test_c_get_per_pacs_setting(relais, world, pacs, setup):
    relais.set_node_retrieve_method(aet="ORTHANC", method="get")
    out = setup["retriever"].retrieve(dossier_id=setup["dossier"], study_uid=pacs["mr"]["study_uid"], node_aet="ORTHANC")
    assert (out.status, out.received) == ("completed", 2), out.reason
    s = relais.repository.get(received_study_id(world["toulouse"], pacs["mr"]["study_uid"]))
    assert s.sources == ["pacs_retrieve"] and s.last_retrieve["method"] == "get"
    store = InstanceStore(setup["settings"].dicom_root)
    assert len(list(store.instances(world["toulouse"], pacs["mr"]["study_uid"]))) == 2


def test_selected_series_then_the_rest_resumes_with_what_is_missing(relais, world, pacs, setup):
    qr = QueryRetrieve("RELAIS", timeout=10)
    first, second = sorted(qr.find_series(pacs["peer"], pacs["ct"]["study_uid"]), key=lambda s: s.number or 0)
    r = setup["retriever"]
    out = r.retrieve(dossier_id=setup["dossier"], study_uid=pacs["ct"]["study_uid"], node_aet="ORTHANC",
                     series_uids=[first.series_instance_uid])
    assert (out.status, out.expected, out.received) == ("completed", 3, 3)
    out = r.retrieve(dossier_id=setup["dossier"], study_uid=pacs["ct"]["study_uid"], node_aet="ORTHANC")
    assert (out.status, out.expected, out.received) == ("completed", 6, 6)
    s = relais.repository.get(received_study_id(world["toulouse"], pacs["ct"]["study_uid"]))
    assert len(s.series) == 2 and s.instance_count == 6
    # the dossier's attachment follows the completed study
    (att,) = relais.get_dossier(dossier_id=setup["dossier"], actor_id=world["requester"]).imaging
    assert att["instance_count"] == 6


def test_destination_unknown_to_the_pacs_fails_with_a_reason_and_can_be_retried(relais, world, pacs, setup):
    wrong = Retriever(app=relais, store=setup["retriever"].store, our_aet="NOT_KNOWN", settle=1.0, timeout=10)
    out = wrong.retrieve(dossier_id=setup["dossier"], study_uid=pacs["mr"]["study_uid"], node_aet="ORTHANC")
    assert out.status == "failed" and "destination" in out.reason and "NOT_KNOWN" in out.reason
    assert relais.get_dossier(dossier_id=setup["dossier"], actor_id=world["requester"]).imaging == ()
    out = setup["retriever"].retrieve(dossier_id=setup["dossier"], study_uid=pacs["mr"]["study_uid"], node_aet="ORTHANC")
    assert out.status == "completed"


def test_unreachable_pacs_and_unknown_study_fail_clearly(relais, world, pacs, setup):
    relais.add_node(aet="DEAD_PACS", host="127.0.0.1", port=free_port(), establishment_id=world["toulouse"], kind="pacs")
    out = setup["retriever"].retrieve(dossier_id=setup["dossier"], study_uid="1.2.3.4", node_aet="DEAD_PACS")
    assert out.status == "failed" and "injoignable" in out.reason
    out = setup["retriever"].retrieve(dossier_id=setup["dossier"], study_uid="1.2.3.4", node_aet="ORTHANC")
    assert out.status == "failed" and "introuvable" in out.reason


def test_only_the_requester_may_query_their_own_establishment_pacs(relais, world, setup):
    info = relais.pacs_for(dossier_id=setup["dossier"], actor_id=world["requester"], node_aet="ORTHANC")
    assert info["method"] == "move" and info["establishment_id"] == world["toulouse"]
    with pytest.raises(ForbiddenError):
        relais.pacs_for(dossier_id=setup["dossier"], actor_id=world["outsider"], node_aet="ORTHANC")
    relais.add_node(aet="MTP_PACS", host="127.0.0.1", port=104, establishment_id=world["montpellier"], kind="pacs")
    with pytest.raises(ForbiddenError):
        relais.pacs_for(dossier_id=setup["dossier"], actor_id=world["requester"], node_aet="MTP_PACS")


def test_retrieve_runs_as_a_job_with_a_deterministic_id(relais, world, pacs, setup):
    jobs = InlineJobs(JOBS, {"retriever": setup["retriever"]})
    try:
        job_id = retrieve_job_id(setup["dossier"], pacs["ct"]["study_uid"])
        assert job_id == f"retrieve:{setup['dossier']}:{pacs['ct']['study_uid']}"
        fut = jobs.enqueue("retrieve_study", job_id=job_id, dossier_id=setup["dossier"],
                           study_uid=pacs["ct"]["study_uid"], node_aet="ORTHANC")
        assert jobs.enqueue("retrieve_study", job_id=job_id, dossier_id=setup["dossier"],
                            study_uid=pacs["ct"]["study_uid"], node_aet="ORTHANC") is fut
        result = fut.result(timeout=60)
        assert result["status"] == "completed" and result["received"] == 6
    finally:
        jobs.close()


def _spy_moves(retriever: Retriever, refuse_call: int | None = None) -> list[list]:
    """Records the identifiers of each C-MOVE association; `refuse_call` (1-based) fails as a PACS
    refusing that association would."""
    calls: list[list] = []
    lock = threading.Lock()
    real = retriever.qr.move

    def move(peer, study_uid, destination, series_uids=None, *, queries=None):
        with lock:
            calls.append(list(queries or []))
            n = len(calls)
        if n == refuse_call:
            raise QRError("le PACS ORTHANC a refusé l'association (titre AE RELAIS inconnu du PACS ?)", "rejected")
        return real(peer, study_uid, destination, series_uids, queries=queries)

    retriever.qr.move = move  # type: ignore[method-assign]
    return calls


def _asked(query) -> tuple[str, list[str]]:
    sops = query.get("SOPInstanceUID")
    return query.QueryRetrieveLevel, ([sops] if isinstance(sops, str) else list(sops or []))


def test_share_puts_the_largest_first_on_the_least_loaded_association():
    a, b, c = Ask(series=("1.2.1",), size=10), Ask(series=("1.2.2",), size=3), Ask(series=("1.2.3",), size=4)
    d = Ask(series=("1.2.4",), sops=("1.2.4.1", "1.2.4.2"), size=2)
    assert share([a, b, c, d], 2) == [[a], [Ask(series=("1.2.3", "1.2.2"), size=7), d]]  # whole series: one identifier
    assert share([a], 3) == [[a]]
    assert share([Ask(size=6)], 2) == [[Ask(size=6)]]  # the whole study
    assert [q.QueryRetrieveLevel for q in (a.query("1.2"), d.query("1.2"), Ask().query("1.2"))] == ["SERIES", "IMAGE", "STUDY"]


def test_a_large_c_move_is_shared_between_two_associations(relais, world, pacs, setup):
    r = Retriever(app=relais, store=setup["retriever"].store, our_aet="RELAIS", settle=1.0, timeout=10,
                  parallel=2, min_split=2)
    calls = _spy_moves(r)
    thin = pacs["thin"]
    out = r.retrieve(dossier_id=setup["dossier"], study_uid=thin["study_uid"], node_aet="ORTHANC")
    assert (out.status, out.expected, out.received, out.attempts) == ("completed", 5, 5, 1), out.reason
    # one series: split by instance (instance-level C-FIND), each association its own instances
    asked = [_asked(q) for call in calls for q in call]
    assert len(calls) == 2 and {level for level, _ in asked} == {"IMAGE"}
    assert sorted(sop for _, sops in asked for sop in sops) == sorted(thin["sops"])
    # two series: one each, no instance-level query
    calls.clear()
    out = r.retrieve(dossier_id=setup["dossier"], study_uid=pacs["ct"]["study_uid"], node_aet="ORTHANC")
    assert (out.status, out.received, out.attempts) == ("completed", 6, 1), out.reason
    assert sorted(_asked(q)[0] for call in calls for q in call) == ["SERIES", "SERIES"]
    (a,), (b,) = calls
    assert a.SeriesInstanceUID != b.SeriesInstanceUID


def test_a_c_move_waits_for_what_the_node_accepted_even_when_its_recording_is_slow(relais, world, pacs, setup, monkeypatch):
    """On a loaded machine the node records its last batch seconds after it answered the PACS: the
    instances the PACS says were accepted are waited for, not asked again (a second attempt)."""
    real = relais.record_received

    def slow(**kwargs):
        time.sleep(2.5)  # longer than the retriever's settle (1 s): what a busy node takes to record a batch
        return real(**kwargs)

    monkeypatch.setattr(relais, "record_received", slow)
    out = setup["retriever"].retrieve(dossier_id=setup["dossier"], study_uid=pacs["thin"]["study_uid"], node_aet="ORTHANC")
    assert (out.status, out.received, out.attempts) == ("completed", 5, 1), out.reason


def test_a_retrieved_study_is_in_the_dossier_before_its_outcome_says_completed(relais, world, pacs, setup, monkeypatch):
    """The progress page says « Récupéré » from the recorded outcome: by then the study must be attached."""
    outcome_when_attached = []
    real = relais.attach_retrieved

    def attach(**kwargs):
        last = relais.received_study_view(study_id=kwargs["study_id"]).last_retrieve
        outcome_when_attached.append(last and last["status"])
        return real(**kwargs)

    monkeypatch.setattr(relais, "attach_retrieved", attach)
    out = setup["retriever"].retrieve(dossier_id=setup["dossier"], study_uid=pacs["mr"]["study_uid"], node_aet="ORTHANC")
    assert out.status == "completed" and outcome_when_attached == ["started"]
    view = relais.received_study_view(study_id=out.study_id)
    assert view.last_retrieve is not None and view.last_retrieve["status"] == "completed"


def test_our_query_associations_leave_every_answer_to_the_request_waiting_for_it(pacs):
    """pynetdicom's reactor could take an answer off the queue in the moment between a send_*()
    pausing it and the request leaving, and drop it as an unexpected request: a series missing from
    a C-FIND on a loaded machine, the retrieve then short of its instances. Our requestor
    associations' reactor never takes a message: one put on the queue stays there."""
    qr = QueryRetrieve("RELAIS", timeout=10)
    with qr.session(pacs["peer"]) as q:
        assert len(q.find_series(pacs["ct"]["study_uid"])) == 2
        assoc = q._assoc
        assert isinstance(assoc, RequestorAssociation)
        stray = C_FIND()
        assoc.dimse.msg_queue.put((1, stray))
        time.sleep(0.2)  # 200 reactor turns
        assert assoc.dimse.msg_queue.get_nowait() == (1, stray)
        for _ in range(20):  # one association, one C-FIND after another: none loses an answer
            assert len(q.find_series(pacs["ct"]["study_uid"])) == 2


def test_a_thousand_c_finds_on_reused_associations_lose_no_answer(pacs, caplog):
    """Issue 11 item 7's proof: 1,000 C-FINDs against Orthanc, ten in turn on each association,
    four associations at a time (as parallel retrieves and searches run), and every one gets all its
    answers. With pynetdicom's requestor reactor some were lost: a pending answer taken off the queue
    by the reactor (« Received unexpected C-FIND service message »: a series missing) or the final
    one (then a timeout)."""
    qr = QueryRetrieve("RELAIS", timeout=20)
    peer, ct, thin = pacs["peer"], pacs["ct"], pacs["thin"]
    wrong: list[str] = []

    def run(worker: int) -> None:
        for a in range(25):
            try:
                with qr.session(peer) as q:
                    for i in range(5):
                        series = sorted(s.instance_count or 0 for s in q.find_series(ct["study_uid"]))
                        if series != [3, 3]:
                            wrong.append(f"{worker}/{a}/{i} séries {series}")
                        studies = [m.patient_id for m in q.find_studies(study_instance_uid=thin["study_uid"])]
                        if studies != ["PAT003"]:
                            wrong.append(f"{worker}/{a}/{i} études {studies}")
            except QRError as e:
                wrong.append(f"{worker}/{a} {e.reason}")

    with caplog.at_level(logging.WARNING, logger="pynetdicom"):
        threads = [threading.Thread(target=run, args=(w,)) for w in range(4)]  # 4 x 25 associations x 10 C-FINDs
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    unexpected = [r.getMessage() for r in caplog.records if "unexpected" in r.getMessage()]
    assert (wrong, unexpected) == ([], [])


def test_a_pacs_refusing_a_second_association_is_then_served_on_one(relais, world, pacs, setup):
    r = Retriever(app=relais, store=setup["retriever"].store, our_aet="RELAIS", settle=1.0, timeout=10,
                  parallel=2, min_split=2)
    calls = _spy_moves(r, refuse_call=2)
    out = r.retrieve(dossier_id=setup["dossier"], study_uid=pacs["thin"]["study_uid"], node_aet="ORTHANC")
    assert (out.status, out.received, out.attempts) == ("completed", 5, 2), out.reason
    assert len(calls) == 3  # two at once (one refused), then what was missing on one association
    refused = {sop for q in calls[1] for sop in _asked(q)[1]}
    assert {sop for q in calls[2] for sop in _asked(q)[1]} == refused


def test_resume_asks_only_the_missing_instances_of_a_series_partly_received(relais, world, pacs, setup):
    thin = pacs["thin"]
    have = [
        ReceivedInstance(sop_instance_uid=sop, series_instance_uid=thin["series_uid"], study_instance_uid=thin["study_uid"],
                         sop_class_uid="1.2.840.10008.5.1.4.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1")
        for sop in thin["sops"][:2]
    ]
    relais.record_received(establishment_id=world["toulouse"], instances=have, source={"kind": "dicom_store"})
    r = setup["retriever"]
    calls = _spy_moves(r)
    out = r.retrieve(dossier_id=setup["dossier"], study_uid=thin["study_uid"], node_aet="ORTHANC")
    assert (out.status, out.expected, out.received, out.attempts) == ("completed", 5, 5, 1), out.reason
    ((query,),) = calls
    level, sops = _asked(query)
    assert level == "IMAGE" and sorted(sops) == sorted(thin["sops"][2:])
    stored = {p.stem for p in InstanceStore(setup["settings"].dicom_root).instances(world["toulouse"], thin["study_uid"])}
    assert stored == set(thin["sops"][2:])  # the two already recorded were not sent again


class _FailsOnce(InstanceStore):
    """Its first write fails as on a full disk."""

    def __init__(self, root):
        super().__init__(root)
        self.failed = False

    def put(self, *args, **kwargs):
        if not self.failed:
            self.failed = True
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().put(*args, **kwargs)


def test_c_get_instance_answered_but_not_written_is_not_recorded_and_asked_again(relais, world, pacs, setup, tmp_path):
    relais.set_node_retrieve_method(aet="ORTHANC", method="get")
    store = _FailsOnce(tmp_path / "store")
    r = Retriever(app=relais, store=store, our_aet="RELAIS", settle=1.0, timeout=10)
    mr = pacs["mr"]
    out = r.retrieve(dossier_id=setup["dossier"], study_uid=mr["study_uid"], node_aet="ORTHANC")
    assert (out.status, out.received, out.attempts) == ("completed", 2, 2), out.reason
    s = relais.repository.get(received_study_id(world["toulouse"], mr["study_uid"]))
    assert {p.stem for p in store.instances(world["toulouse"], mr["study_uid"])} == set(s.instances) == set(mr["sops"])


def test_background_writes_record_nothing_before_it_is_durable(tmp_path):
    store = _FailsOnce(tmp_path)
    writes = BackgroundWrites(store)
    try:
        first, second = ("e", "1.2.3", "1.2.3.1"), ("e", "1.2.3", "1.2.3.2")
        buffer = bytearray(b"DICM" * 10)
        assert writes.put(*first, [b"x", memoryview(buffer)]) is True
        assert writes.put(*second, [b"y", memoryview(buffer)]) is True
        buffer[:] = b"\0" * len(buffer)  # the caller's buffer is reused once put returns
        assert writes.durable([first, second]) == {first}  # the first write failed (disk full)
        assert writes.error is not None and writes.error.errno == errno.ENOSPC
        assert store.path(*second).read_bytes() == b"y" + b"DICM" * 10 and not store.path(*first).exists()
        assert writes.put(*second, [b"y"]) is False  # already stored
    finally:
        writes.close()
