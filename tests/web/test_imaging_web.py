"""Imaging fragments of the dossier form: received studies, awaited exam, PACS search and retrieve (Orthanc)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from application.imaging import ReceivedInstance
from projections.runner import catch_up
from tests.conftest import PATIENT, rpps
from tests.peers import ORTHANC, Orthanc
from tests.web.conftest import csrf_from, login
from tests.web.shown import step_version

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_study  # noqa: E402

HX = {"HX-Request": "true"}


def instances(study_uid: str, n: int, accession: str = "ACC9") -> list[ReceivedInstance]:
    return [
        ReceivedInstance(
            sop_instance_uid=f"{study_uid}.9.{i}", series_instance_uid=f"{study_uid}.1", study_instance_uid=study_uid,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1", size=10,
            patient={"id": "IPP42", "name": "DUPONT^JEANNE", "birth_date": "19500302", "sex": "F"},
            study={"accession_number": accession, "description": "TDM"},
            series={"modality": "CT", "description": "AXIAL", "number": 1},
        )
        for i in range(n)
    ]


@pytest.fixture()
def draft(relais, passwords, world):
    return relais.create_dossier(
        actor_id=world["requester"], workflow="imaging_transfer", question="Avis ?", consent="given",
        imaging_source="dicom_store", **PATIENT,
    )


def headers(client, did: str) -> dict:
    return HX | {"x-csrftoken": csrf_from(client.get(f"/dossiers/{did}/edit/imaging").text)}


def shown(client, did: str) -> dict:
    """The version the imaging step shows: what the picker's controls send with them (#expected-version)."""
    return {"expected_version": step_version(client.get(f"/dossiers/{did}/edit/imaging").text)}


def test_received_studies_are_listed_for_the_requester_and_attach(client, relais, settings, world, draft):
    relais.record_received(establishment_id=world["toulouse"], instances=instances("1.2.826.0.1.99.1", 3),
                           source={"kind": "dicom_store", "calling_aet": "TLSE_GW"})
    relais.record_received(establishment_id=world["montpellier"], instances=instances("1.2.826.0.1.99.2", 1, "MTP"),
                           source={"kind": "dicom_store", "calling_aet": "MTP_GW"})
    catch_up("imaging", settings.eventsourcing_env(), relais)
    login(client, rpps(1))
    page = client.get(f"/dossiers/{draft}/dicom", headers=HX)
    assert page.status_code == 200 and "<html" not in page.text
    assert "DUPONT JEANNE" in page.text and "n° ACC9" in page.text and "MTP" not in page.text
    study_id = relais.record_received.__self__ and __import__("domain.imaging", fromlist=["x"]).received_study_id(
        world["toulouse"], "1.2.826.0.1.99.1")
    r = client.post(f"/dossiers/{draft}/dicom/received/{study_id}/attach", headers=headers(client, draft), data=shown(client, draft))
    assert r.status_code == 200 and "Examen joint" in r.text and r.headers.get("hx-trigger") == "imaging-changed"
    (att,) = relais.get_dossier(dossier_id=draft, actor_id=world["requester"]).imaging
    assert att["instance_count"] == 3 and att["source"] == "dicom_store"
    # another establishment's study cannot be attached, nor can an outsider see the picker
    other = __import__("domain.imaging", fromlist=["x"]).received_study_id(world["montpellier"], "1.2.826.0.1.99.2")
    assert client.post(f"/dossiers/{draft}/dicom/received/{other}/attach", headers=headers(client, draft),
                       data=shown(client, draft)).status_code == 403
    client.get("/logout")
    client.cookies.clear()
    login(client, rpps(3))
    assert client.get(f"/dossiers/{draft}/dicom", headers=HX).status_code == 403


def test_posting_without_csrf_is_refused(client, relais, world, draft):
    login(client, rpps(1))
    r = client.post(f"/dossiers/{draft}/dicom/await", data={"accession_number": "X1"}, headers=HX)
    assert r.status_code == 403
    assert relais.get_dossier(dossier_id=draft, actor_id=world["requester"]).imaging == ()


def test_an_awaited_exam_already_received_attaches_at_once(client, relais, settings, world, draft):
    relais.record_received(establishment_id=world["toulouse"], instances=instances("1.2.826.0.1.99.3", 2, "ACC77"),
                           source={"kind": "dicom_store"})
    catch_up("imaging", settings.eventsourcing_env(), relais)
    login(client, rpps(1))
    r = client.post(f"/dossiers/{draft}/dicom/await", data={"accession_number": "ACC77"} | shown(client, draft),
                    headers=headers(client, draft))
    assert r.status_code == 200 and "déjà reçu" in r.text
    (att,) = relais.get_dossier(dossier_id=draft, actor_id=world["requester"]).imaging
    assert att["study_instance_uid"] == "1.2.826.0.1.99.3"


@pytest.mark.skipif(ORTHANC is None, reason="Orthanc not installed")
def test_pacs_search_and_c_get_retrieve_with_progress(client, relais, settings, world, draft, tmp_path):
    study = write_study(tmp_path / "ct", accession="ACCWEB", patient_id="IPPWEB", series=1, per_series=2)
    with Orthanc(tmp_path / "orthanc") as o:
        o.upload(study["files"])
        relais.add_node(aet=o.aet, host="127.0.0.1", port=o.dicom_port, establishment_id=world["toulouse"], kind="pacs")
        relais.set_node_retrieve_method(aet=o.aet, method="get")
        catch_up("directory", settings.eventsourcing_env(), relais)
        login(client, rpps(1))
        assert "Rechercher dans le PACS" in client.get(f"/dossiers/{draft}/dicom", headers=HX).text
        found = client.get(f"/dossiers/{draft}/dicom/pacs/search", params={"node": o.aet, "patient_id": "IPPWEB"}, headers=HX)
        assert found.status_code == 200 and "n° ACCWEB" in found.text and "1 / 2" in found.text
        series = client.get(f"/dossiers/{draft}/dicom/pacs/series", params={"node": o.aet, "study_uid": study["study_uid"]},
                            headers=HX)
        assert series.status_code == 200 and 'name="series_uids"' in series.text and "2 images" in series.text
        empty = client.get(f"/dossiers/{draft}/dicom/pacs/search", params={"node": o.aet}, headers=HX)
        assert "au moins un critère" in empty.text
        r = client.post(f"/dossiers/{draft}/dicom/pacs/retrieve", data={"node": o.aet, "study_uid": study["study_uid"]},
                        headers=headers(client, draft))
        assert r.status_code == 200 and "every 1s" in r.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = client.get(f"/dossiers/{draft}/dicom/pacs/progress", params={"node": o.aet, "study_uid": study["study_uid"]}, headers=HX)
            if "Récupéré" in p.text or "Échec" in p.text:
                break
            time.sleep(0.3)
        assert "Récupéré : 2 images" in p.text, p.text
        (att,) = relais.get_dossier(dossier_id=draft, actor_id=world["requester"]).imaging
        assert att["source"] == "pacs_retrieve" and att["instance_count"] == 2


def test_import_of_a_zip_with_two_patients_asks_to_choose_and_confirm(client, relais, world, draft, tmp_path):
    import zipfile

    mine = write_study(tmp_path / "a", patient_name="DUPONT^JEANNE", birth_date="19500302", sex="F", series=1, per_series=2)
    other = write_study(tmp_path / "b", patient_id="P2", patient_name="MARTIN^PAUL", birth_date="19611224", sex="M",
                        series=1, per_series=1)
    archive = tmp_path / "cd.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in mine["files"] + other["files"]:
            z.write(f, f"DICOM/{f.parent.name}/{f.name}")
        z.writestr("../escape.txt", "x")
        z.writestr("LISEZMOI.TXT", "viewer")
    login(client, rpps(1))
    h = headers(client, draft)
    r = client.post(f"/dossiers/{draft}/dicom/import", files=[("files", ("cd.zip", archive.read_bytes(), "application/zip"))],
                    headers=h)
    assert r.status_code == 200, r.text
    assert "plusieurs patients" in r.text and "MARTIN PAUL" in r.text and "Identité différente" in r.text
    assert "24/12/1961" in r.text and "02/03/1950" in r.text  # side by side, French dates
    assert "LISEZMOI.TXT : pas un fichier DICOM" in r.text and "../escape.txt : chemin refusé" in r.text
    import_id = re.search(r"/dicom/import/([0-9a-f]{32})", r.text).group(1)
    url = f"/dossiers/{draft}/dicom/import/{import_id}"
    keys = re.findall(r'name="study_uids" value="([^"]+)"', r.text)
    mine_key = next(k for k in keys if k.startswith(mine["study_uid"] + "/"))
    both = {"study_uids": keys}
    both |= shown(client, draft)
    r = client.post(url, data=both, headers=h)
    assert "cochez la confirmation" in r.text
    assert relais.get_dossier(dossier_id=draft, actor_id=world["requester"]).imaging == ()
    r = client.post(url, data={"study_uids": [mine_key], "confirm_identity": ""} | shown(client, draft), headers=h)
    assert "importé" in r.text, r.text  # the right patient alone needs no confirmation
    (att,) = relais.get_dossier(dossier_id=draft, actor_id=world["requester"]).imaging
    assert att["study_instance_uid"] == mine["study_uid"] and att["source"] == "file_import" and att["instance_count"] == 2
    assert client.post(url, data=both, headers=h).status_code == 404  # the import folder is gone


def test_a_zip_with_a_corrupt_member_is_reviewed_without_it(client, relais, world, draft, tmp_path, settings):
    """One member of the ZIP is damaged: the review says which, the other images are offered (HTTP 500
    « Erreur interne » before, and the upload's folder left under imports/ for ever)."""
    import zipfile

    from tests.adapters.test_file_import import corrupt_member

    study = write_study(tmp_path / "a", patient_name="DUPONT^JEANNE", birth_date="19500302", sex="F", series=1, per_series=3)
    archive = tmp_path / "cd.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for f in study["files"]:
            z.write(f, f"DICOM/{f.name}")
    damaged = f"DICOM/{study['files'][0].name}"
    corrupt_member(archive, damaged)
    login(client, rpps(1))
    r = client.post(f"/dossiers/{draft}/dicom/import", files=[("files", ("cd.zip", archive.read_bytes(), "application/zip"))],
                    headers=headers(client, draft))
    assert r.status_code == 200, r.text[:500]
    assert f"{damaged} : membre corrompu dans l&#39;archive" in r.text
    assert study["study_uid"] in r.text
