"""Patient identity through the DICOM node (dcmtk storescu to a running node): a study whose instances
name two patients is not attached to the dossier awaiting it, and instances of another patient sent
after attachment are quarantined; the requester is told (issue 11 items 1 and 2)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from domain.imaging import identity_key, received_study_id
from projections.runner import catch_up
from tests.adapters import test_store_scp
from tests.adapters.test_store_scp import storescu
from tests.conftest import PATIENT

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_study  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk not installed (scripts/system-packages.sh)")

@pytest.fixture(name="node")
def running_node(relais, world, settings):
    """The running DICOM node of tests/adapters/test_store_scp.py."""
    yield from test_store_scp.node.__wrapped__(relais, world, settings)


MARTIN = {"patient_id": "P2", "patient_name": "MARTIN^PAUL", "birth_date": "19611224", "sex": "M"}


def awaiting(relais, world, node, accession: str) -> str:
    did = relais.create_dossier(
        actor_id=world["requester"], workflow="stroke_opinion", question="Thrombectomie ?", urgency="stat",
        consent="given", imaging_source="dicom_store", **PATIENT,
    )
    relais.await_imaging(dossier_id=did, actor_id=world["requester"], accession_number=accession)
    catch_up("imaging", node["env"], relais)
    return did


def test_a_c_store_study_of_two_patients_is_not_attached_and_the_requester_is_told(node, relais, world, tmp_path):
    """Before: the received study took the first instance's patient and attached itself with the other's images."""
    did = awaiting(relais, world, node, "MIX1")
    uid = generate_uid()
    mine = write_study(tmp_path / "a", accession="MIX1", study_uid=uid, series=1, per_series=2)
    other = write_study(tmp_path / "b", accession="MIX1", study_uid=uid, series=1, per_series=1, **MARTIN)
    r = storescu(node["port"], mine["files"] + other["files"])
    assert r.returncode == 0, r.stderr
    node["node"].receiver.flush_all()
    study = relais.repository.get(received_study_id(world["toulouse"], uid))
    assert sorted(p["name"] for p in study.identities.values()) == ["DUPONT^JEANNE", "MARTIN^PAUL"]
    d = relais.get_dossier(dossier_id=did, actor_id=world["requester"])
    assert d.imaging == ()
    (held,) = d.imaging_held
    assert held["reason"] == "auto_refused" and held["study_instance_uid"] == uid
    assert {r["patient"]["name"] for r in held["identities"]} == {"DUPONT^JEANNE", "MARTIN^PAUL"}


def test_instances_of_another_patient_after_attachment_are_quarantined(node, relais, world, tmp_path):
    """Before: instances arriving after attachment were not identity-checked and showed in the dossier."""
    did = awaiting(relais, world, node, "LATE1")
    uid = generate_uid()
    first = write_study(tmp_path / "a", accession="LATE1", study_uid=uid, series=1, per_series=2)
    assert storescu(node["port"], first["files"]).returncode == 0
    node["node"].receiver.flush_all()
    (att,) = relais.get_dossier(dossier_id=did, actor_id=world["requester"]).imaging
    assert att["instance_count"] == 2
    catch_up("imaging", node["env"], relais)  # the node knows which dossiers hold the study
    late = write_study(tmp_path / "b", accession="LATE1", study_uid=uid, series=1, per_series=2, **MARTIN)
    more = write_study(tmp_path / "c", accession="LATE1", study_uid=uid, series=1, per_series=1)
    assert storescu(node["port"], late["files"] + more["files"]).returncode == 0
    node["node"].receiver.flush_all()
    d = relais.get_dossier(dossier_id=did, actor_id=world["requester"])
    (att,) = d.imaging
    assert att["instance_count"] == 3  # the right patient's late image joins
    (held,) = d.imaging_held
    assert held["reason"] == "quarantined" and held["identities"][0]["patient"]["name"] == "MARTIN^PAUL"
    view = relais.view_study(dossier_id=did, actor_id=world["requester"], study_uid=uid)
    assert set(view.instances) == set(first["sops"] + more["sops"])  # quarantined: not in the dossier's reads
    study = relais.repository.get(received_study_id(world["toulouse"], uid))
    assert study.instance_count == 5 and study.identity_counts[identity_key(
        {"id": "P2", "name": "MARTIN^PAUL", "birth_date": "19611224", "sex": "M"})] == 2  # kept and listed
