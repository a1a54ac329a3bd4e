"""A form sent twice runs its command once; a form that changes a dossier names the version it showed; the
user's own changes from a page never make that page's next step stale."""

from __future__ import annotations

import re
import threading

import pytest
from litestar.testing import TestClient

from application import Relais
from application.actors import Acting
from application.imaging import ReceivedInstance
from domain.imaging import received_study_id
from projections.runner import catch_up
from tests.conftest import PATIENT, rpps
from tests.web.conftest import csrf_from, login
from tests.web.shown import step_version

HX = {"HX-Request": "true"}
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


@pytest.fixture()
def draft(relais: Relais, passwords: dict) -> str:
    return relais.create_dossier(
        actor_id=passwords["requester"], workflow="imaging_transfer", question="Avis ?", consent="given",
        imaging_source="none", **PATIENT,
    )


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} in the page"
    return match.group(1)


def version_of(relais: Relais, did: str, who: str) -> int:
    return relais.get_dossier(dossier_id=did, actor_id=who).version


def test_the_same_upload_sent_twice_attaches_one_document(client: TestClient, relais, passwords, draft):
    """A double click on « Joindre »: the second request carries the same form token."""
    login(client, rpps(1))
    page = client.get(f"/dossiers/{draft}/edit/documents").text
    form = {"form_token": hidden(page, "form_token"), "expected_version": hidden(page, "expected_version"),
            "description": "CR"}
    headers = HX | {"x-csrftoken": csrf_from(page)}
    first = client.post(f"/dossiers/{draft}/documents", headers=headers, data=form, files={"file": ("cr.pdf", PDF, "application/pdf")})
    again = client.post(f"/dossiers/{draft}/documents", headers=headers, data=form, files={"file": ("cr.pdf", PDF, "application/pdf")})
    assert first.status_code == 200 and again.status_code == 200, again.text
    assert again.text.count("cr.pdf") == first.text.count("cr.pdf")  # the second answer shows the first one's result
    assert len(relais.get_dossier(dossier_id=draft, actor_id=passwords["requester"]).documents) == 1
    # the form comes back with a new token: the next file is another submission
    other = {"form_token": hidden(first.text, "form_token"), "expected_version": hidden(first.text, "expected_version")}
    assert other["form_token"] != form["form_token"]
    client.post(f"/dossiers/{draft}/documents", headers=headers, data=other, files={"file": ("cr2.pdf", PDF, "application/pdf")})
    assert len(relais.get_dossier(dossier_id=draft, actor_id=passwords["requester"]).documents) == 2


def test_the_same_action_sent_twice_is_recorded_once_and_answers_its_result(client, relais, passwords, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    login(client, rpps(2))
    page = client.get(f"/dossiers/{did}").text
    form = {"expected_version": hidden(page, "expected_version"), "form_token": hidden(page, "form_token"), "send_id": sid,
            "_csrf_token": csrf_from(page)}
    first = client.post(f"/dossiers/{did}/actions/accept", data=form, headers=HX)
    version = version_of(relais, did, passwords["recipient"])
    again = client.post(f"/dossiers/{did}/actions/accept", data=form, headers=HX)
    assert first.status_code == 200 and again.status_code == 200, again.text  # not « ce dossier a changé »
    assert "Télédossier pris en charge" in again.text and "En cours" in again.text
    assert version_of(relais, did, passwords["recipient"]) == version


def test_the_same_creation_sent_twice_makes_one_dossier(client, relais, passwords):
    login(client, rpps(1))
    page = client.get("/dossiers/new").text
    form = {"workflow": "stroke_opinion", "urgency": "stat", "birth_name": "Garcia", "first_names": "Antoine",
            "birth_date": "1971-11-19", "sex": "M", "birth_place_code": "31555", "question": "Thrombectomie ?",
            "consent": "given", "form_token": hidden(page, "form_token"), "_csrf_token": csrf_from(page)}
    first = client.post("/dossiers/new", data=form, follow_redirects=False)
    again = client.post("/dossiers/new", data=form, follow_redirects=False)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]


def test_the_same_command_sent_twice_at_once_is_recorded_once(relais, passwords, draft):
    """Two requests with one token racing in two threads: one document, and neither fails."""
    version = version_of(relais, draft, passwords["requester"])
    who = Acting(passwords["requester"], passwords["toulouse"], "clinician", "Zm9ybS10b2tlbi1yYWNl")
    start, errors, ids = threading.Barrier(2), [], []

    def attach() -> None:
        start.wait()
        try:
            ids.append(relais.attach_document(
                dossier_id=draft, actor_id=who, filename="cr.pdf", media_type="application/pdf", size=3,
                sha256="a" * 64, expected_version=version,
            ))
        except Exception as e:  # noqa: BLE001 - collected, asserted below
            errors.append(e)

    threads = [threading.Thread(target=attach) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(set(ids)) == 1
    assert len(relais.get_dossier(dossier_id=draft, actor_id=passwords["requester"]).documents) == 1


def test_forms_without_the_version_they_showed_are_refused(client, relais, passwords, sent_dossier, draft):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    login(client, rpps(1))
    t = csrf_from(client.get(f"/dossiers/{draft}/edit/question").text)
    before = version_of(relais, draft, passwords["requester"])
    step = client.post(f"/dossiers/{draft}/edit/question", data={"question": "Autre chose", "consent": "given", "_csrf_token": t},
                       follow_redirects=False)
    assert step.status_code == 400 and "version du télédossier" in step.text
    assert version_of(relais, draft, passwords["requester"]) == before
    client.post("/logout", data={"_csrf_token": t})
    login(client, rpps(2))
    t = csrf_from(client.get(f"/dossiers/{did}").text)
    accepted = client.post(f"/dossiers/{did}/actions/accept", data={"send_id": sid, "_csrf_token": t}, headers=HX)
    assert accepted.status_code == 400 and "version du télédossier" in accepted.text
    assert relais.get_dossier(dossier_id=did, actor_id=passwords["recipient"]).sends[0]["state"] == "requested"


def _received(relais: Relais, settings, world: dict, study_uid: str) -> str:
    relais.record_received(establishment_id=world["toulouse"], source={"kind": "dicom_store", "calling_aet": "TLSE_GW"}, instances=[
        ReceivedInstance(sop_instance_uid=f"{study_uid}.9.{i}", series_instance_uid=f"{study_uid}.1", study_instance_uid=study_uid,
                         sop_class_uid="1.2.840.10008.5.1.4.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1", size=10,
                         patient={"id": "IPP42", "name": "DUPONT^JEANNE", "birth_date": "19500302", "sex": "F"},
                         study={"accession_number": "ACC9"},
                         series={"modality": "CT", "number": 1})
        for i in range(2)])
    catch_up("imaging", settings.eventsourcing_env(), relais)
    return str(received_study_id(world["toulouse"], study_uid))


def _refresh(client: TestClient, page: str) -> str:
    """What the imaging step's version input asks when the page hears `imaging-changed`, as htmx would."""
    tag = re.search(r'<input[^>]*id="expected-version"[^>]*>', page, re.S)
    assert tag and 'hx-trigger="imaging-changed from:body"' in tag.group(0), "the version does not follow the page's changes"
    url = re.search(r'hx-get="([^"]+)"', tag.group(0)).group(1)
    answer = client.get(url, params={"expected_version": hidden(tag.group(0), "expected_version")}, headers=HX)
    assert answer.status_code == 200
    return hidden(answer.text, "expected_version")


def test_attaching_a_study_then_continuing_is_not_a_conflict(client, relais, settings, passwords, draft):
    study_id = _received(relais, settings, passwords, "1.2.826.0.1.99.1")
    login(client, rpps(1))
    page = client.get(f"/dossiers/{draft}/edit/imaging").text
    attached = client.post(f"/dossiers/{draft}/dicom/received/{study_id}/attach", headers=HX | {"x-csrftoken": csrf_from(page)},
                           data={"expected_version": step_version(page)})
    assert attached.status_code == 200 and attached.headers.get("hx-trigger") == "imaging-changed"
    form = {"imaging_source": "dicom_store", "expected_version": _refresh(client, page), "form_token": hidden(page, "form_token"),
            "_csrf_token": csrf_from(page)}
    moved_on = client.post(f"/dossiers/{draft}/edit/imaging", data=form, follow_redirects=False)
    assert moved_on.status_code == 303 and moved_on.headers["location"].endswith("/edit/recipients"), moved_on.text
    assert relais.get_dossier(dossier_id=draft, actor_id=passwords["requester"]).imaging_source == "dicom_store"


def test_someone_elses_change_still_makes_the_next_step_stale(client, relais, settings, passwords, draft):
    study_id = _received(relais, settings, passwords, "1.2.826.0.1.99.1")
    colleague = relais.add_practitioner(rpps=rpps(8), family_name="Bernard", given_name="Lucie", establishment_id=passwords["toulouse"],
                                        roles=["clinician"])
    login(client, rpps(1))
    page = client.get(f"/dossiers/{draft}/edit/imaging").text
    relais.edit_draft(dossier_id=draft, actor_id=colleague, question="Précision d'une collègue")  # meanwhile, someone else
    client.post(f"/dossiers/{draft}/dicom/received/{study_id}/attach", headers=HX | {"x-csrftoken": csrf_from(page)},
                data={"expected_version": step_version(page)})
    form = {"imaging_source": "dicom_store", "expected_version": _refresh(client, page), "form_token": hidden(page, "form_token"),
            "_csrf_token": csrf_from(page)}
    stale = client.post(f"/dossiers/{draft}/edit/imaging", data=form, follow_redirects=False)
    assert stale.status_code == 409 and "modifié ailleurs" in stale.text


def test_the_submission_topics_are_pinned():
    from eventsourcing.utils import get_topic

    from domain.submission import Submission

    assert get_topic(Submission) == "relais:Submission" and get_topic(Submission.Created) == "relais:Submission.Created"


def test_the_same_study_attachment_sent_twice_is_recorded_once(client, relais, settings, passwords, draft):
    from uuid import UUID

    from domain.dossier import Dossier

    study_id = _received(relais, settings, passwords, "1.2.826.0.1.99.1")
    login(client, rpps(1))
    page = client.get(f"/dossiers/{draft}/dicom", headers=HX).text
    button = re.search(r'hx-post="([^"]+/attach)"[^>]*hx-vals=\'\{"form_token": "([^"]+)"\}\'', page)
    assert button, "the « Joindre » button sends no form token"
    url, token = button.groups()
    assert url == f"/dossiers/{draft}/dicom/received/{study_id}/attach"
    step = client.get(f"/dossiers/{draft}/edit/imaging").text
    headers = HX | {"x-csrftoken": csrf_from(step)}
    for _ in range(2):
        assert client.post(url, data={"form_token": token, "expected_version": step_version(step)}, headers=headers).status_code == 200
    attached = [e for e in relais.core.events_of(UUID(draft)) if isinstance(e, Dossier.ImagingAttached)]
    assert len(attached) == 1
