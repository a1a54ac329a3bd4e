"""A ZIP whose one study names two patients, through the web: split in the review, the confirmation
recorded, and the recipient warned on the dossier page and the viewer page (issue 11 items 1 and 3)."""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path
from uuid import UUID

import pytest
from pydicom.uid import generate_uid

from domain.dossier import Dossier
from domain.imaging import received_study_id
from tests.conftest import PATIENT, rpps
from tests.peers import ORTHANC, Orthanc
from tests.web.conftest import csrf_from, login
from tests.web.shown import step_version

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_study  # noqa: E402

HX = {"HX-Request": "true"}


@pytest.fixture()
def draft(relais, passwords, world):
    return relais.create_dossier(
        actor_id=world["requester"], workflow="imaging_transfer", question="Avis ?", consent="given",
        imaging_source="file_import", **PATIENT,
    )


def upload(client, did: str, archive: Path):
    page = client.get(f"/dossiers/{did}/edit/imaging").text
    h = HX | {"x-csrftoken": csrf_from(page)}
    r = client.post(f"/dossiers/{did}/dicom/import", files=[("files", ("cd.zip", archive.read_bytes(), "application/zip"))],
                    headers=h)
    assert r.status_code == 200, r.text[:500]
    return r, h


def test_one_study_uid_two_patients_is_split_confirmed_recorded_and_shown_to_the_recipient(
    client, relais, world, draft, tmp_path,
):
    """Before: one row under the first file's patient, no « plusieurs patients », no identity table, no
    confirmation box, and the other patient's images attached silently."""
    uid = generate_uid()
    mine = write_study(tmp_path / "a", study_uid=uid, series=1, per_series=2)  # the dossier's patient
    other = write_study(tmp_path / "b", study_uid=uid, series=1, per_series=1, patient_id="P2",
                        patient_name="MARTIN^PAUL", birth_date="19611224", sex="O")
    archive = tmp_path / "cd.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in mine["files"] + other["files"]:
            z.write(f, f"DICOM/{f.parent.name}/{f.name}")
    login(client, rpps(1))
    r, h = upload(client, draft, archive)
    assert "plusieurs patients" in r.text and "MARTIN PAUL" in r.text and "Même examen (Study Instance UID)" in r.text
    assert "identité différente de celle du télédossier" in r.text and 'name="confirm_identity"' in r.text
    assert "24/12/1961" in r.text and "02/03/1950" in r.text  # side by side, French dates
    keys = re.findall(r'name="study_uids" value="([^"]+)"', r.text)
    assert len(keys) == 2 and all(k.startswith(uid + "/") for k in keys)
    url = re.search(r'hx-post="(/dossiers/[^"]+/dicom/import/[0-9a-f]{32})"', r.text).group(1)
    version = {"expected_version": step_version(client.get(f"/dossiers/{draft}/edit/imaging").text)}
    refused = client.post(url, data={"study_uids": keys} | version, headers=h)
    assert "cochez la confirmation" in refused.text
    assert relais.get_dossier(dossier_id=draft, actor_id=world["requester"]).imaging == ()
    done = client.post(url, data={"study_uids": keys, "confirm_identity": "yes"} | version, headers=h)
    assert "importé" in done.text, done.text[:800]
    (att,) = relais.get_dossier(dossier_id=draft, actor_id=world["requester"]).imaging
    assert att["instance_count"] == 3 and len(att["identities"]) == 2
    (event,) = [e for e in relais.events.get(UUID(draft)) if isinstance(e, Dossier.ImagingAttached)]
    assert event.override["by"]["practitioner_id"] == world["requester"]
    assert ["Nom", "DUPONT", "MARTIN"] in [list(d) for d in event.override["differences"]]
    assert ["Sexe", "F", "O"] in [list(d) for d in event.override["differences"]]

    # sent; the recipient is warned on the dossier page and on the viewer's page
    relais.address_recipient(dossier_id=draft, actor_id=world["requester"], establishment_id=world["montpellier"],
                             service_id=world["neuro"])
    relais.send_dossier(dossier_id=draft, actor_id=world["requester"])
    client.get("/logout")
    client.cookies.clear()
    login(client, rpps(2))
    page = client.get(f"/dossiers/{draft}")
    assert page.status_code == 200
    assert "l'identité du patient de ces images diffère de celle du télédossier" in page.text
    assert "Claire MARTIN a confirmé le" in page.text
    assert "Sexe : télédossier « F », images « O »" in page.text
    assert "identité des images confirmée malgré des différences" in page.text  # the timeline says it too
    viewer_page = client.get(f"/dossiers/{draft}/imaging/{uid}")
    assert viewer_page.status_code == 200
    assert "diffère de celle du télédossier" in viewer_page.text and "images « MARTIN »" in viewer_page.text


def test_a_matching_study_needs_no_confirmation_and_shows_no_warning(client, relais, world, draft, tmp_path):
    study = write_study(tmp_path / "a", series=1, per_series=2)
    archive = tmp_path / "cd.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in study["files"]:
            z.write(f, f"DICOM/{f.name}")
    login(client, rpps(1))
    r, h = upload(client, draft, archive)
    assert "plusieurs patients" not in r.text and 'name="confirm_identity"' not in r.text
    (key,) = re.findall(r'name="study_uids" value="([^"]+)"', r.text)
    url = re.search(r'hx-post="(/dossiers/[^"]+/dicom/import/[0-9a-f]{32})"', r.text).group(1)
    version = {"expected_version": step_version(client.get(f"/dossiers/{draft}/edit/imaging").text)}
    assert "importé" in client.post(url, data={"study_uids": [key]} | version, headers=h).text
    page = client.get(f"/dossiers/{draft}")
    assert "diffère de celle du télédossier" not in page.text


@pytest.mark.skipif(ORTHANC is None, reason="Orthanc not installed")
def test_a_retrieved_study_of_another_patient_is_not_attached_and_the_requester_is_told(
    client, relais, settings, world, draft, tmp_path,
):
    """Before: a completed retrieve attached itself whatever patient the images named."""
    import time

    from projections.runner import catch_up

    study = write_study(tmp_path / "ct", accession="ACCOTHER", patient_id="P2", patient_name="MARTIN^PAUL",
                        birth_date="19611224", sex="M", series=1, per_series=2)
    with Orthanc(tmp_path / "orthanc") as o:
        o.upload(study["files"])
        relais.add_node(aet=o.aet, host="127.0.0.1", port=o.dicom_port, establishment_id=world["toulouse"], kind="pacs")
        relais.set_node_retrieve_method(aet=o.aet, method="get")
        catch_up("directory", settings.eventsourcing_env(), relais)
        login(client, rpps(1))
        page = client.get(f"/dossiers/{draft}/edit/imaging").text
        r = client.post(f"/dossiers/{draft}/dicom/pacs/retrieve", data={"node": o.aet, "study_uid": study["study_uid"]},
                        headers=HX | {"x-csrftoken": csrf_from(page)})
        assert r.status_code == 200
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = client.get(f"/dossiers/{draft}/dicom/pacs/progress", params={"node": o.aet, "study_uid": study["study_uid"]},
                           headers=HX)
            if "Récupéré" in p.text or "Échec" in p.text:
                break
            time.sleep(0.3)
    assert "non joint : l'identité du patient des images" in p.text, p.text
    d = relais.get_dossier(dossier_id=draft, actor_id=world["requester"])
    assert d.imaging == () and [h["reason"] for h in d.imaging_held] == ["auto_refused"]
    picker = client.get(f"/dossiers/{draft}/dicom/received", headers=HX)
    assert "Examen attendu non joint automatiquement" in picker.text and "MARTIN PAUL" in picker.text
    # checked and attached by hand: the notice has nothing left to say
    relais.attach_received_study(dossier_id=draft, actor_id=world["requester"], confirm_identity=True,
                                 study_id=str(received_study_id(world["toulouse"], study["study_uid"])))
    assert "non joint automatiquement" not in client.get(f"/dossiers/{draft}/dicom/received", headers=HX).text


def test_attaching_a_received_study_of_a_thin_identity_asks_and_records_the_confirmation(client, relais, settings, world, draft):
    """A study naming a family name only (no first name, birth date, sex) attached silently before."""
    from application.imaging import ReceivedInstance
    from projections.runner import catch_up

    uid = "1.2.826.0.1.99.88"
    (u,) = relais.record_received(establishment_id=world["toulouse"], source={"kind": "dicom_store"}, instances=[
        ReceivedInstance(sop_instance_uid=f"{uid}.9.{i}", series_instance_uid=f"{uid}.1", study_instance_uid=uid,
                         sop_class_uid="1.2.840.10008.5.1.4.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1", size=10,
                         patient={"id": "IPP42", "name": "DUPONT"}, study={"description": "TDM"},
                         series={"modality": "CT", "number": 1}) for i in range(2)])
    catch_up("imaging", settings.eventsourcing_env(), relais)
    login(client, rpps(1))
    page = client.get(f"/dossiers/{draft}/edit/imaging").text
    h = HX | {"x-csrftoken": csrf_from(page)}
    url = f"/dossiers/{draft}/dicom/received/{u.study_id}/attach"
    picker = client.get(f"/dossiers/{draft}/dicom", headers=HX).text
    token = re.search(r'/received/' + u.study_id + r'/attach".*?"form_token": "([^"]+)"', picker, re.S).group(1)
    r = client.post(url, headers=h, data={"expected_version": step_version(page), "form_token": token})
    assert r.status_code == 200 and "Vérifiez l'identité du patient de ces images" in r.text
    assert "Date de naissance" in r.text and "(absent)" in r.text and 'name="confirm_identity"' in r.text
    assert relais.get_dossier(dossier_id=draft, actor_id=world["requester"]).imaging == ()
    key = re.search(r'name="identities" value="([0-9a-f]+)"', r.text).group(1)
    page = client.get(f"/dossiers/{draft}/edit/imaging").text
    token = re.search(r'name="form_token" value="([^"]+)"', r.text).group(1)
    r = client.post(url, headers=h, data={"expected_version": step_version(page), "form_token": token,
                                          "identities": key, "confirm_identity": "yes"})
    assert "Examen joint" in r.text
    (att,) = relais.get_dossier(dossier_id=draft, actor_id=world["requester"]).imaging
    assert att["overrides"][0]["by"]["practitioner_id"] == world["requester"]
    assert [d[0] for d in att["overrides"][0]["differences"]] == ["Prénom(s)", "Date de naissance", "Sexe"]


def test_the_received_list_says_when_a_study_holds_several_patients(client, relais, settings, world, draft):
    from application.imaging import ReceivedInstance
    from projections.runner import catch_up

    uid = "1.2.826.0.1.99.89"
    people = [{"id": "IPP42", "name": "DUPONT^JEANNE", "birth_date": "19500302", "sex": "F"},
              {"id": "P2", "name": "MARTIN^PAUL", "birth_date": "19611224", "sex": "M"}]
    relais.record_received(establishment_id=world["toulouse"], source={"kind": "dicom_store"}, instances=[
        ReceivedInstance(sop_instance_uid=f"{uid}.9.{i}", series_instance_uid=f"{uid}.1", study_instance_uid=uid,
                         sop_class_uid="1.2.840.10008.5.1.4.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1", size=10,
                         patient=people[i % 2], study={"description": "TDM"}, series={"modality": "CT", "number": 1})
        for i in range(3)])
    catch_up("imaging", settings.eventsourcing_env(), relais)
    login(client, rpps(1))
    listed = client.get(f"/dossiers/{draft}/dicom/received", headers=HX)
    assert "Plusieurs patients dans cet examen (2 identités DICOM)" in listed.text
