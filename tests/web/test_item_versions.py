"""The controls that add or remove one item of a dossier (a document, a recipient, a study attached, awaited or
imported) name the version their page showed, like the draft's steps: without it they are refused (400, the
French message) and nothing is recorded, after the authorisation checks; with the version the page shows they
act."""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from application import Relais
from application.errors import NotFoundError
from application.imaging import ReceivedInstance
from domain.imaging import received_study_id
from projections.runner import catch_up
from tests.conftest import PATIENT, rpps
from tests.web.conftest import csrf_from, login
from tests.web.shown import documents_version, recipients_version, step_version

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_study  # noqa: E402

HX = {"HX-Request": "true"}
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
REFUSED = "le formulaire ne dit pas quelle version du télédossier vous avez lue"
STUDY_UID = "1.2.826.0.1.77.1"


def attr(html: str, pattern: str) -> str:
    match = re.search(pattern, html, re.S)
    assert match, f"not in the page: {pattern}"
    return match.group(1)


# Each case: the state it needs, then the request as the page makes it, with `version` (None: none sent).
# A case returns (response); `x` holds the draft, the client's CSRF token and what the case prepared.


def _upload(c: TestClient, x: dict, version: str | None) -> Any:
    page = c.get(f"/dossiers/{x['draft']}/edit/documents").text
    form = {"form_token": attr(page, r'name="form_token" value="([^"]+)"><input type="hidden" name="expected_version"'),
            "description": "CR"}
    shown = attr(page, r'action="/dossiers/[^"]+/documents".*?name="expected_version" value="(\d+)"')
    return c.post(f"/dossiers/{x['draft']}/documents", headers=HX | {"x-csrftoken": x["csrf"]},
                  data=form | ({"expected_version": shown} if version else {}), files={"file": ("cr.pdf", PDF, "application/pdf")})


def _remove_document(c: TestClient, x: dict, version: str | None) -> Any:
    page = c.get(f"/dossiers/{x['draft']}/edit/documents").text
    vals = attr(page, rf"documents/{x['document']}/remove\"[^>]*hx-vals='([^']+)'")
    form = {"form_token": attr(vals, r'"form_token": "([^"]+)"')}
    if version:
        form["expected_version"] = attr(vals, r'"expected_version": "(\d+)"')
    return c.post(f"/dossiers/{x['draft']}/documents/{x['document']}/remove", headers=HX | {"x-csrftoken": x["csrf"]}, data=form)


def _add_recipient(c: TestClient, x: dict, version: str | None) -> Any:
    page = c.get(f"/dossiers/{x['draft']}/edit/recipients").text
    results = c.get("/directory/search", params={"q": "Montpellier", "dossier": x["draft"]}, headers=HX).text
    form_tag = attr(results, r'(<form hx-post="/dossiers/[^"]+/recipients"[^>]*>)')
    assert 'hx-include="#recipients-version"' in form_tag, "the « Ajouter » forms do not send the version of the list"
    form = {"form_token": attr(results, r'name="form_token" value="([^"]+)"'), "establishment_id": x["world"]["montpellier"],
            "service_id": x["world"]["neuro"]}
    if version:
        form["expected_version"] = attr(page, r'id="recipients-version" name="expected_version" value="(\d+)"')
    return c.post(f"/dossiers/{x['draft']}/recipients", headers=HX | {"x-csrftoken": x["csrf"]}, data=form)


def _remove_recipient(c: TestClient, x: dict, version: str | None) -> Any:
    page = c.get(f"/dossiers/{x['draft']}/edit/recipients").text
    vals = attr(page, rf"recipients/{x['send']}/remove\"[^>]*hx-vals='([^']+)'")
    form = {"form_token": attr(vals, r'"form_token": "([^"]+)"')}
    if version:
        form["expected_version"] = attr(vals, r'"expected_version": "(\d+)"')
    return c.post(f"/dossiers/{x['draft']}/recipients/{x['send']}/remove", headers=HX | {"x-csrftoken": x["csrf"]}, data=form)


def _picker(c: TestClient, x: dict) -> tuple[str, str]:
    """The imaging step page and its picker fragment (loaded by htmx into it)."""
    return c.get(f"/dossiers/{x['draft']}/edit/imaging").text, c.get(f"/dossiers/{x['draft']}/dicom", headers=HX).text


def _attach(c: TestClient, x: dict, version: str | None) -> Any:
    page, picker = _picker(c, x)
    button = attr(picker, r'(<button[^>]*/dicom/received/[^"]+/attach"[^>]*>)')
    assert 'hx-include="#expected-version"' in button, "« Joindre » does not send the step's version"
    form = {"form_token": attr(button, r'hx-vals=\'\{"form_token": "([^"]+)"\}\'')}
    if version:
        form["expected_version"] = step_version(page)
    return c.post(attr(button, r'hx-post="([^"]+)"'), headers=HX | {"x-csrftoken": x["csrf"]}, data=form)


def _await(c: TestClient, x: dict, version: str | None) -> Any:
    page, picker = _picker(c, x)
    tag = attr(picker, r'(<form[^>]*/dicom/await"[^>]*>)')
    assert 'hx-include="#expected-version"' in tag, "« Attendre cet examen » does not send the step's version"
    form = {"form_token": attr(picker, r'/dicom/await".*?name="form_token" value="([^"]+)"'), "accession_number": "ACC77"}
    if version:
        form["expected_version"] = step_version(page)
    return c.post(f"/dossiers/{x['draft']}/dicom/await", headers=HX | {"x-csrftoken": x["csrf"]}, data=form)


def _import_confirm(c: TestClient, x: dict, version: str | None) -> Any:
    page = c.get(f"/dossiers/{x['draft']}/edit/imaging").text
    review = c.post(f"/dossiers/{x['draft']}/dicom/import", headers=HX | {"x-csrftoken": x["csrf"]},
                    files={"files": ("ct.dcm", x["dicom"], "application/dicom")})
    assert review.status_code == 200, review.text
    tag = attr(review.text, r'(<form hx-post="/dossiers/[^"]+/dicom/import/[0-9a-f]{32}"[^>]*>)')
    assert 'hx-include="#expected-version"' in tag, "the import confirmation does not send the step's version"
    form = {"form_token": attr(review.text, r'name="form_token" value="([^"]+)"'), "confirm_identity": "yes",
            "study_uids": attr(review.text, r'name="study_uids" value="([^"]+)"')}  # the study (and patient) of the file
    if version:
        form["expected_version"] = step_version(page)
    return c.post(attr(tag, r'hx-post="([^"]+)"'), headers=HX | {"x-csrftoken": x["csrf"]}, data=form)


CASES: dict[str, Callable[[TestClient, dict, str | None], Any]] = {
    "document-upload": _upload, "document-remove": _remove_document, "recipient-add": _add_recipient,
    "recipient-remove": _remove_recipient, "study-attach": _attach, "study-await": _await, "study-import": _import_confirm,
}


# the dossier's patient as the images name it (a thin or differing identity would need a confirmation)
IDENTITY = {"id": "IPP42", "name": "DUPONT^JEANNE", "birth_date": "19500302", "sex": "F"}


@pytest.fixture()
def ready(relais: Relais, settings, passwords: dict, tmp_path: Path) -> dict:
    """A draft holding a document and a pending recipient, a study received for its establishment, a DICOM file."""
    w = passwords
    draft = relais.create_dossier(actor_id=w["requester"], workflow="imaging_transfer", question="Avis ?", consent="given",
                                  imaging_source="dicom_store", **PATIENT)
    document = relais.attach_document(dossier_id=draft, actor_id=w["requester"], filename="ancien.pdf", media_type="application/pdf",
                                      size=3, sha256="b" * 64)
    send = relais.address_recipient(dossier_id=draft, actor_id=w["requester"], establishment_id=w["montpellier"])
    relais.record_received(establishment_id=w["toulouse"], source={"kind": "dicom_store", "calling_aet": "TLSE_GW"}, instances=[
        ReceivedInstance(sop_instance_uid=f"1.2.826.0.1.99.5.9.{i}", series_instance_uid="1.2.826.0.1.99.5.1",
                         study_instance_uid="1.2.826.0.1.99.5", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                         transfer_syntax_uid="1.2.840.10008.1.2.1", size=10, patient=IDENTITY,
                         study={"accession_number": "ACC9"}, series={"modality": "CT", "number": 1})
        for i in range(2)])
    catch_up("imaging", settings.eventsourcing_env(), relais)
    catch_up("directory", settings.eventsourcing_env(), relais)
    study = write_study(tmp_path / "cd", study_uid=STUDY_UID, series=1, per_series=1)
    return {"draft": draft, "document": document, "send": send, "world": w, "dicom": study["files"][0].read_bytes()}


def recorded(relais: Relais, x: dict) -> tuple[Any, ...]:
    """What the dossier holds, and whether the file's study was recorded as received."""
    d = relais.get_dossier(dossier_id=x["draft"], actor_id=x["world"]["requester"])
    try:
        relais.received_study_view(study_id=str(received_study_id(x["world"]["toulouse"], STUDY_UID)))
        imported = True
    except NotFoundError:
        imported = False
    return d.version, d.documents, d.sends, d.imaging, imported


def signed_in(client: TestClient, who: int, x: dict) -> dict:
    login(client, rpps(who))
    return x | {"csrf": csrf_from(client.get("/dossiers/new").text)}


@pytest.mark.parametrize("case", list(CASES))
def test_a_control_without_the_version_it_showed_is_refused_and_records_nothing(client, relais, ready, case):
    x = signed_in(client, 1, ready)
    before = recorded(relais, x)
    refused = CASES[case](client, x, None)
    assert refused.status_code == 400, (refused.status_code, refused.text[:300])
    assert REFUSED in refused.text
    assert recorded(relais, x) == before
    done = CASES[case](client, x, "as shown")  # the same control with the version its page shows acts
    assert done.status_code == 200, done.text[:500]
    assert recorded(relais, x)[0] > before[0]


@pytest.mark.parametrize("case", list(CASES))
def test_someone_not_entitled_is_refused_before_the_version_is_asked(client, relais, ready, case):
    """A clinician of another establishment gets the refusal of their access, not « version »."""
    before = recorded(relais, ready)
    x = signed_in(client, 3, ready)
    answer = _as_outsider(client, x, case)
    assert answer.status_code in (403, 404), (answer.status_code, answer.text[:300])
    assert REFUSED not in answer.text
    assert recorded(relais, x) == before


def _as_outsider(client: TestClient, x: dict, case: str) -> Any:
    """The request without a version, sent by someone whose pages would not show the control."""
    did, h, token = x["draft"], HX | {"x-csrftoken": x["csrf"]}, secrets.token_urlsafe(18)
    study = received_study_id(x["world"]["toulouse"], "1.2.826.0.1.99.5")
    match case:
        case "document-upload":
            return client.post(f"/dossiers/{did}/documents", headers=h, data={"form_token": token},
                               files={"file": ("cr.pdf", PDF, "application/pdf")})
        case "document-remove":
            return client.post(f"/dossiers/{did}/documents/{x['document']}/remove", headers=h, data={"form_token": token})
        case "recipient-add":
            return client.post(f"/dossiers/{did}/recipients", headers=h,
                               data={"form_token": token, "establishment_id": x["world"]["montpellier"]})
        case "recipient-remove":
            return client.post(f"/dossiers/{did}/recipients/{x['send']}/remove", headers=h, data={"form_token": token})
        case "study-attach":
            return client.post(f"/dossiers/{did}/dicom/received/{study}/attach", headers=h, data={"form_token": token})
        case "study-await":
            return client.post(f"/dossiers/{did}/dicom/await", headers=h, data={"form_token": token, "accession_number": "ACC77"})
        case _:
            return client.post(f"/dossiers/{did}/dicom/import/{'0' * 32}", headers=h,
                               data={"form_token": token, "study_uids": STUDY_UID, "confirm_identity": "yes"})


def followed(client: TestClient, did: str, shown: str, answer: Any) -> str:
    """The imaging step's version once the picker answered, as the page holds it: asked again when the answer
    says imaging-changed (hx-trigger="imaging-changed from:body" on #expected-version), else unchanged."""
    if "imaging-changed" not in answer.headers.get("hx-trigger", ""):
        return shown
    asked = client.get(f"/dossiers/{did}/edit/version", params={"expected_version": shown}, headers=HX)
    assert asked.status_code == 200
    return step_version(asked.text)


@pytest.mark.parametrize("accession", ["ACC77", "ACC9"], ids=["awaited", "already-received"])
def test_awaiting_an_exam_then_continuing_is_not_a_conflict(client, relais, ready, accession):
    """« Attendre cet examen » is the user's own change (and so is the exam already received attached with it):
    the step's version follows it, and « Continuer » goes on (409 « modifié ailleurs » before)."""
    x = signed_in(client, 1, ready)
    page = client.get(f"/dossiers/{x['draft']}/edit/imaging").text
    picker = client.get(f"/dossiers/{x['draft']}/dicom", headers=HX).text
    awaited = client.post(f"/dossiers/{x['draft']}/dicom/await", headers=HX | {"x-csrftoken": x["csrf"]}, data={
        "accession_number": accession, "expected_version": step_version(page),
        "form_token": attr(picker, r'/dicom/await".*?name="form_token" value="([^"]+)"')})
    assert awaited.status_code == 200, awaited.text
    d = relais.get_dossier(dossier_id=x["draft"], actor_id=x["world"]["requester"])
    assert [s["study_instance_uid"] for s in d.imaging] == (["1.2.826.0.1.99.5"] if accession == "ACC9" else [])
    form = {"imaging_source": "file_import", "expected_version": followed(client, x["draft"], step_version(page), awaited),
            "form_token": attr(page, r'name="form_token" value="([^"]+)"'), "_csrf_token": x["csrf"]}
    moved_on = client.post(f"/dossiers/{x['draft']}/edit/imaging", data=form, follow_redirects=False)
    assert moved_on.status_code == 303 and moved_on.headers["location"].endswith("/edit/recipients"), moved_on.text[:500]


def test_two_exams_awaited_one_after_the_other_are_both_recorded(client, relais, ready):
    """The await form stays on the page after it is sent: the answer gives it a new token (out of band), so the
    next exam awaited is a submission of its own (it was taken for the first sent again: nothing recorded)."""
    x = signed_in(client, 1, ready)
    did = x["draft"]
    page = client.get(f"/dossiers/{did}/edit/imaging").text
    token = attr(client.get(f"/dossiers/{did}/dicom", headers=HX).text, r'id="await-token" name="form_token" value="([^"]+)"')
    version = step_version(page)
    before = relais.get_dossier(dossier_id=did, actor_id=x["world"]["requester"]).version
    for accession in ("ACCA1", "ACCA2"):
        answer = client.post(f"/dossiers/{did}/dicom/await", headers=HX | {"x-csrftoken": x["csrf"]},
                             data={"accession_number": accession, "expected_version": version, "form_token": token})
        assert answer.status_code == 200 and f"Examen {accession} attendu" in answer.text
        renewed = re.search(r'<input[^>]*id="await-token"[^>]*hx-swap-oob="true"[^>]*>', answer.text)
        token = attr(renewed.group(0), r'value="([^"]+)"') if renewed else token  # as htmx swaps it in
        version = followed(client, did, version, answer)
    assert relais.get_dossier(dossier_id=did, actor_id=x["world"]["requester"]).version == before + 2


def test_a_recipient_added_removed_then_added_again_from_the_same_results_is_recorded(client, relais, ready):
    """The directory's « Ajouter » forms stay on the page: the one sent gets a new token (out of band), so the same
    target added again later is a submission of its own (it was taken for the first sent again: nothing recorded)."""
    x = signed_in(client, 1, ready)
    did, h = x["draft"], HX | {"x-csrftoken": x["csrf"]}
    page = client.get(f"/dossiers/{did}/edit/recipients").text
    results = client.get("/directory/search", params={"q": "Montpellier", "dossier": did}, headers=HX).text
    form = next(f for f in re.findall(r'<form hx-post="/dossiers/[^"]+/recipients".*?</form>', results, re.S)
                if f'name="service_id" value="{x["world"]["neuro"]}"' in f)  # the neuroradiology team
    tag = re.search(r'<input[^>]*name="form_token"[^>]*>', form).group(0)
    tag_id = attr(tag, r'id="([^"]+)"')
    fields = dict(re.findall(r'name="(establishment_id|service_id|practitioner_id)" value="([^"]*)"', form))
    token, version = attr(tag, r'value="([^"]+)"'), recipients_version(page)
    names = []
    for _ in range(2):
        added = client.post(f"/dossiers/{did}/recipients", headers=h, data=fields | {"form_token": token, "expected_version": version})
        assert added.status_code == 200, added.text
        renewed = re.search(rf'<input[^>]*id="{tag_id}"[^>]*hx-swap-oob="true"[^>]*>', added.text)
        token = attr(renewed.group(0), r'value="([^"]+)"') if renewed else token  # as htmx swaps it in
        d = relais.get_dossier(dossier_id=did, actor_id=x["world"]["requester"])
        mine = [s for s in d.sends if s.get("service_id") == fields["service_id"]]
        names.append(len(mine))
        if mine:
            removal = f"/dossiers/{did}/recipients/{mine[0]['send_id']}/remove"
            vals = attr(added.text, rf'hx-post="{re.escape(removal)}"[^>]*hx-vals=\'([^\']+)\'')
            removed = client.post(removal, headers=h, data={"form_token": attr(vals, r'"form_token": "([^"]+)"'),
                                                            "expected_version": attr(vals, r'"expected_version": "(\d+)"')})
            assert removed.status_code == 200, removed.text
            version = recipients_version(removed.text)
    assert names == [1, 1]


def test_a_form_with_several_files_attaches_them_all_on_the_version_shown(client, relais, ready):
    """The first file goes on the version the form showed, each next one on the version the previous made."""
    x = signed_in(client, 1, ready)
    did = x["draft"]
    page = client.get(f"/dossiers/{did}/edit/documents").text
    before = relais.get_dossier(dossier_id=did, actor_id=x["world"]["requester"])
    answer = client.post(f"/dossiers/{did}/documents", headers=HX | {"x-csrftoken": x["csrf"]},
                         data={"expected_version": documents_version(page)},
                         files=[("file", ("un.pdf", PDF, "application/pdf")), ("file", ("deux.pdf", PDF, "application/pdf"))])
    assert answer.status_code == 200, answer.text
    after = relais.get_dossier(dossier_id=did, actor_id=x["world"]["requester"])
    assert after.version == before.version + 2 and len(after.documents) == len(before.documents) + 2


def test_an_awaited_exam_arriving_while_the_step_is_open_is_no_conflict(client, relais, ready, settings):
    """The exam awaited arrives (the platform attaches it) while the user is still on the imaging step: the
    platform only did what the user asked, so « Continuer » goes on (409 « modifié ailleurs » before; a PACS
    retrieve completing is the same platform attachment)."""
    x = signed_in(client, 1, ready)
    page = client.get(f"/dossiers/{x['draft']}/edit/imaging").text
    picker = client.get(f"/dossiers/{x['draft']}/dicom", headers=HX).text
    awaited = client.post(f"/dossiers/{x['draft']}/dicom/await", headers=HX | {"x-csrftoken": x["csrf"]}, data={
        "accession_number": "ACC77", "expected_version": step_version(page),
        "form_token": attr(picker, r'/dicom/await".*?name="form_token" value="([^"]+)"')})
    assert awaited.status_code == 200, awaited.text
    shown = followed(client, x["draft"], step_version(page), awaited)
    arrived = relais.record_received(
        establishment_id=x["world"]["toulouse"], source={"kind": "dicom_store", "calling_aet": "TLSE_GW"},
        instances=[ReceivedInstance(
            sop_instance_uid="1.2.826.0.1.77.9.1", series_instance_uid="1.2.826.0.1.77.1", study_instance_uid="1.2.826.0.1.77",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1", size=10,
            patient=IDENTITY, study={"accession_number": "ACC77"}, series={"modality": "CT", "number": 1})])
    relais.auto_attach(study_id=str(received_study_id(x["world"]["toulouse"], "1.2.826.0.1.77")), dossier_ids=[x["draft"]])
    d = relais.get_dossier(dossier_id=x["draft"], actor_id=x["world"]["requester"])
    assert [s["study_instance_uid"] for s in d.imaging] == ["1.2.826.0.1.77"], arrived
    form = {"imaging_source": "file_import", "expected_version": shown,
            "form_token": attr(page, r'name="form_token" value="([^"]+)"'), "_csrf_token": x["csrf"]}
    moved_on = client.post(f"/dossiers/{x['draft']}/edit/imaging", data=form, follow_redirects=False)
    assert moved_on.status_code == 303 and moved_on.headers["location"].endswith("/edit/recipients"), moved_on.text[:500]


def test_a_colleagues_change_while_the_step_is_open_still_conflicts(client, relais, ready):
    """Only the platform's attachments are let through: a change by anyone else still makes the step stale."""
    x = signed_in(client, 1, ready)
    page = client.get(f"/dossiers/{x['draft']}/edit/imaging").text
    relais.edit_draft(dossier_id=x["draft"], actor_id=x["world"]["requester"], question="Avis, autre onglet ?")
    form = {"imaging_source": "file_import", "expected_version": step_version(page),
            "form_token": attr(page, r'name="form_token" value="([^"]+)"'), "_csrf_token": x["csrf"]}
    stale = client.post(f"/dossiers/{x['draft']}/edit/imaging", data=form, follow_redirects=False)
    assert stale.status_code == 409
