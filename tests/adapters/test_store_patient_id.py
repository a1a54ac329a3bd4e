"""An exam awaited by Patient ID (dcmtk storescu to a running DICOM node): a study with no Accession Number
attaches itself to the one open dossier awaiting its Patient ID, after sending too; another Patient ID, an
issuer that differs, an await older than a day or a second open dossier awaiting it attach nothing (the
last two say why); the patient identity is still checked."""

from __future__ import annotations

import shutil
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from pydicom import dcmread

from adapters.dicom.recording import attach_received_for_patient
from application import Relais
from projections.runner import catch_up
from tests.adapters import test_store_scp
from tests.adapters.test_store_scp import storescu
from tests.conftest import PATIENT

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_study  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk not installed (scripts/system-packages.sh)")


@pytest.fixture(name="node")
def running_node(relais, world, settings):
    """The running DICOM node of tests/adapters/test_store_scp.py (the gateway TLSE_GW of Toulouse)."""
    yield from test_store_scp.node.__wrapped__(relais, world, settings)


def dossier(relais: Relais, world: dict, *, sent: bool = False, hours_ago: float = 0) -> str:
    when = relais.clock() - timedelta(hours=hours_ago)
    did = relais.create_dossier(
        actor_id=world["requester"], workflow="stroke_opinion", question="Thrombectomie ?", urgency="stat",
        consent="given", imaging_source="dicom_store", occurred_at=when, **PATIENT,
    )
    if sent:
        relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"],
                                 service_id=world["neuro"], occurred_at=when)
        relais.send_dossier(dossier_id=did, actor_id=world["requester"], occurred_at=when)
    return did


def push(node: dict, folder: Path, *, issuer: str = "", **patient: str) -> dict:
    """A study without Accession Number pushed by the gateway; returns write_study's description."""
    data = write_study(folder, accession="", series=1, per_series=2, **patient)
    for f in data["files"]:
        ds = dcmread(f)
        assert not ds.AccessionNumber
        if issuer:
            ds.IssuerOfPatientID = issuer
            ds.save_as(f)
    r = storescu(node["port"], data["files"])
    assert r.returncode == 0, r.stderr
    node["node"].receiver.flush_all()
    return data


def imaging(relais: Relais, world: dict, did: str) -> tuple[list[str], list[tuple[str, str]]]:
    d = relais.get_dossier(dossier_id=did, actor_id=world["requester"])
    return [s["study_instance_uid"] for s in d.imaging], [(h["reason"], h["study_instance_uid"]) for h in d.imaging_held]


def test_a_study_of_the_awaited_patient_id_attaches_itself_after_sending(node, relais, world, tmp_path):
    did = dossier(relais, world, sent=True)
    relais.await_imaging(dossier_id=did, actor_id=world["requester"], patient_id="IPP-4521")
    catch_up("imaging", node["env"], relais)
    other = push(node, tmp_path / "other", patient_id="IPP-9999")
    assert imaging(relais, world, did) == ([], [])  # another Patient ID: nothing attached, nothing said
    data = push(node, tmp_path / "mine", patient_id="IPP-4521")
    assert imaging(relais, world, did) == ([data["study_uid"]], [])
    d = relais.get_dossier(dossier_id=did, actor_id=world["requester"])
    assert d.state == "requested" and d.imaging[0]["instance_count"] == 2 and other["study_uid"] not in {
        s["study_instance_uid"] for s in d.imaging}
    # a second exam of the same patient the same day (the angiography after the CT) joins too
    catch_up("imaging", node["env"], relais)
    second = push(node, tmp_path / "second", patient_id="IPP-4521")
    assert imaging(relais, world, did)[0] == [data["study_uid"], second["study_uid"]]


def test_the_identity_is_still_checked(node, relais, world, tmp_path):
    did = dossier(relais, world)
    relais.await_imaging(dossier_id=did, actor_id=world["requester"], patient_id="IPP-77")
    catch_up("imaging", node["env"], relais)
    data = push(node, tmp_path / "a", patient_id="IPP-77", patient_name="MARTIN^PAUL", birth_date="19611224", sex="M")
    assert imaging(relais, world, did) == ([], [("auto_refused", data["study_uid"])])


def test_the_issuer_when_both_are_known_and_the_window(node, relais, world, tmp_path):
    did = dossier(relais, world)
    relais.await_imaging(dossier_id=did, actor_id=world["requester"], patient_id="IPP-5", issuer="CH_RODEZ")
    old = dossier(relais, world, hours_ago=30)
    relais.await_imaging(dossier_id=old, actor_id=world["requester"], patient_id="IPP-6",
                         occurred_at=relais.clock() - timedelta(hours=25))
    catch_up("imaging", node["env"], relais)
    push(node, tmp_path / "a", patient_id="IPP-5", issuer="CHU_TOULOUSE")
    assert imaging(relais, world, did) == ([], [])
    push(node, tmp_path / "b", patient_id="IPP-6")
    assert imaging(relais, world, old) == ([], [])  # awaited more than a day ago: the patient's next stay
    data = push(node, tmp_path / "c", patient_id="IPP-5", issuer="CH_RODEZ")
    assert imaging(relais, world, did) == ([data["study_uid"]], [])


def test_two_open_dossiers_awaiting_the_patient_id_get_nothing_and_are_told(node, relais, world, tmp_path):
    """Safe behaviour: a Patient ID names a patient, not an exam; neither dossier is guessed."""
    first, second = dossier(relais, world, sent=True), dossier(relais, world)
    for did in (first, second):
        relais.await_imaging(dossier_id=did, actor_id=world["requester"], patient_id="IPP-42")
    catch_up("imaging", node["env"], relais)
    data = push(node, tmp_path / "a", patient_id="IPP-42")
    for did in (first, second):
        assert imaging(relais, world, did) == ([], [("ambiguous", data["study_uid"])])
    # told once: more instances of the same study record nothing more
    more = write_study(tmp_path / "more", accession="", series=1, per_series=1, patient_id="IPP-42",
                       study_uid=data["study_uid"])
    assert storescu(node["port"], more["files"]).returncode == 0
    node["node"].receiver.flush_all()
    assert imaging(relais, world, first) == ([], [("ambiguous", data["study_uid"])])
    # once the other dossier is cancelled, the next exam of that patient attaches itself
    relais.cancel_dossier(dossier_id=second, actor_id=world["requester"], reason="doublon")
    later = push(node, tmp_path / "b", patient_id="IPP-42")
    assert imaging(relais, world, first)[0] == [later["study_uid"]]
    assert imaging(relais, world, second)[0] == []


def test_a_study_received_before_the_await_attaches_itself_on_awaiting(node, relais, world, tmp_path):
    """The CT pushed before the request was written: awaiting its Patient ID attaches it (the web calls this)."""
    data = push(node, tmp_path / "a", patient_id="IPP-300")
    other = push(node, tmp_path / "b", patient_id="IPP-301")
    catch_up("imaging", node["env"], relais)
    did = dossier(relais, world, sent=True)
    relais.await_imaging(dossier_id=did, actor_id=world["requester"], patient_id="IPP-300")
    found = attach_received_for_patient(relais, node["imaging"], dossier_id=did, establishment_id=world["toulouse"],
                                        patient_id="IPP-300")
    assert len(found) == 1 and imaging(relais, world, did) == ([data["study_uid"]], [])
    assert other["study_uid"] not in imaging(relais, world, did)[0]
