"""Query/Retrieve from a real PACS (Orthanc): C-FIND, C-MOVE to our node, C-GET, completeness, failures, job."""

from __future__ import annotations

import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.dicom.node import dicom_node, dicom_root
from adapters.dicom.qr import Peer, QRError, QueryRetrieve
from adapters.dicom.retrieve import Retriever, retrieve_job_id
from adapters.dicom.storage import InstanceStore
from adapters.jobs import InlineJobs, register_all
from application.errors import ForbiddenError
from domain.imaging import received_study_id
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
    with Orthanc(folder / "orthanc", modalities={"RELAIS": ("127.0.0.1", NODE_PORT)}) as o:
        o.upload(ct["files"] + mr["files"])
        yield {"orthanc": o, "ct": ct, "mr": mr, "peer": Peer(o.aet, "127.0.0.1", o.dicom_port)}


@pytest.fixture()
def setup(relais, world, settings, pacs):
    o = pacs["orthanc"]
    relais.add_node(aet=o.aet, host="127.0.0.1", port=o.dicom_port, establishment_id=world["toulouse"], kind="pacs")
    env = settings.eventsourcing_env()
    catch_up("directory", env, relais)
    s = replace(settings, dicom_port=NODE_PORT)
    directory, imaging = open_view("directory", env), open_view("imaging", env)
    stop = threading.Event()
    with dicom_node(s, relais, directory, imaging) as node:
        t = threading.Thread(target=node.serve, args=(stop,), daemon=True)
        t.start()
        did = relais.create_dossier(
            actor_id=world["requester"], workflow="imaging_transfer", question="Avis sur scanner", consent="given",
            imaging_source="pacs_retrieve", **PATIENT,
        )
        retriever = Retriever(app=relais, store=InstanceStore(dicom_root(s)), our_aet="RELAIS", settle=1.0, timeout=10)
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


def test_c_get_per_pacs_setting(relais, world, pacs, setup):
    relais.set_node_retrieve_method(aet="ORTHANC", method="get")
    out = setup["retriever"].retrieve(dossier_id=setup["dossier"], study_uid=pacs["mr"]["study_uid"], node_aet="ORTHANC")
    assert (out.status, out.received) == ("completed", 2), out.reason
    s = relais.repository.get(received_study_id(world["toulouse"], pacs["mr"]["study_uid"]))
    assert s.sources == ["pacs_retrieve"] and s.last_retrieve["method"] == "get"
    store = InstanceStore(dicom_root(setup["settings"]))
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
    register_all()
    jobs = InlineJobs({"retriever": setup["retriever"]})
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
