"""The compose wizard per workflow: the stroke fast path (patient, form, review with the recipient preset), the
emergency defaults, errors at the field, the imaging defaults, and who may post what."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from litestar.testing import TestClient

from application import Relais
from domain.dossier import Dossier
from domain.values import PARIS
from tests.conftest import PATIENT, rpps
from tests.web.conftest import csrf_from, login

PATIENT_FORM = {"birth_name": "Garcia", "first_names": "Antoine", "birth_date": "1971-11-19", "sex": "M", "birth_place": "Toulouse"}


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} in the page"
    return match.group(1)


def stroke_answers(**changes: str) -> dict[str, str]:
    """A stroke form filled as a browser posts it (times an hour and half an hour ago)."""
    now = datetime.now(PARIS)
    answers = {
        "time_reference": "onset", "onset_at": f"{now - timedelta(hours=1):%Y-%m-%dT%H:%M}",
        "arrival_at": f"{now - timedelta(minutes=30):%Y-%m-%dT%H:%M}", "nihss_total": "14", "anticoagulant": "no",
        "weight": "72", "imaging": "ct", "angiography": "true", "thrombolysis": "false", "question": "thrombectomy",
    }
    return answers | changes


def start(client: TestClient, workflow: str) -> str:
    """The first screen of a request (the inbox's « Nouvelle demande » link)."""
    page = client.get(f"/dossiers/new?workflow={workflow}")
    assert page.status_code == 200
    return page.text


def test_the_stroke_fast_path_sends_in_three_screens_to_the_preset_on_call_pool(client, passwords, relais: Relais, settle):
    w = passwords
    relais.set_default_recipient(establishment_id=w["toulouse"], workflow="stroke_opinion",
                                 to_establishment_id=w["montpellier"], to_service_code="neuroradio")
    settle()  # the directory's names
    login(client, rpps(1))
    # screen 1: the patient, urgency « Immédiate » already chosen
    first = start(client, "stroke_opinion")
    assert "Identité du patient" in first and "Quel type de demande" not in first
    assert re.search(r'name="urgency" value="stat" checked', first)
    csrf = csrf_from(first)
    base = {"workflow": "stroke_opinion", "urgency": "stat", "_csrf_token": csrf}
    # screen 2: the stroke form, with consent and the gateway's images chosen by default
    second = client.post("/dossiers/new/question", data=base | PATIENT_FORM)
    assert second.status_code == 200, second.text[:500]
    assert 'name="nihss_total"' in second.text and "AVC aigu" in second.text
    assert hidden(second.text, "birth_place_code") == "31555"
    assert re.search(r'name="imaging_source" value="dicom_store" required checked', second.text)
    assert not re.search(r'value="none"[^>]*checked', second.text)
    created = client.post("/dossiers/new", data=base | PATIENT_FORM | {"birth_place_code": "31555"} | stroke_answers() | {
        "form_id": "stroke_opinion", "form_version": "1", "consent": "given", "imaging_source": "dicom_store",
        "accession_number": "ACC2026", "patient_id": "IPP-4471", "form_token": hidden(second.text, "form_token")},
        follow_redirects=False)
    assert created.status_code == 303, created.text[:800]
    location = created.headers["location"]
    assert location.endswith("/edit/review")
    did = location.split("/")[2]
    d = relais.get_dossier(dossier_id=did, actor_id=w["requester"])
    assert d.urgency == "stat" and d.imaging_source == "dicom_store" and d.consent["status"] == "given"
    assert d.form["id"] == "stroke_opinion" and d.form["answers"]["nihss_total"] == 14
    assert "thrombectomie" in d.question
    aggregate = relais.core.load(Dossier, did, "télédossier")  # the exam awaited by both, attached on arrival
    assert aggregate.awaited_accessions == ["ACC2026"] and [p["id"] for p in aggregate.awaited_patients] == ["IPP-4471"]
    assert [(s["establishment_id"], s["service_id"], s["state"]) for s in d.sends] == [(w["montpellier"], w["neuro"], "pending")]
    # screen 3: review, the recipient preset, send
    review = client.get(location)
    assert "Neuroradiologie" in review.text and "Changer ou ajouter un destinataire" in review.text
    assert re.search(r'<button id="send-button" class="button button-send" type="submit">', review.text)
    sent = client.post(location, data={"_csrf_token": csrf, "form_token": hidden(review.text, "form_token"),
                                       "expected_version": hidden(review.text, "expected_version")}, follow_redirects=False)
    assert sent.status_code == 303 and sent.headers["location"] == f"/dossiers/{did}"
    assert relais.get_dossier(dossier_id=did, actor_id=w["requester"]).sends[0]["state"] == "requested"


def test_emergency_opinion_is_immediate_and_preset_too(client, passwords, relais: Relais):
    w = passwords
    relais.set_default_recipient(establishment_id=w["toulouse"], workflow="emergency_opinion",
                                 to_establishment_id=w["montpellier"])
    login(client, rpps(1))
    first = start(client, "emergency_opinion")
    assert re.search(r'name="urgency" value="stat" checked', first)
    base = {"workflow": "emergency_opinion", "_csrf_token": csrf_from(first)}  # no urgency sent: its default
    created = client.post("/dossiers/new", data=base | PATIENT_FORM | {
        "form_id": "emergency_opinion", "form_version": "1", "specialty": "Neurochirurgie", "question": "Hématome sous-dural ?",
        "vital_distress": "false", "consent": "given", "imaging_source": "dicom_store"}, follow_redirects=False)
    assert created.status_code == 303, created.text[:800]
    d = relais.get_dossier(dossier_id=created.headers["location"].split("/")[2], actor_id=w["requester"])
    assert d.urgency == "stat" and [s["establishment_id"] for s in d.sends] == [w["montpellier"]]
    assert "Neurochirurgie" in d.question and "Hématome sous-dural ?" in d.question


def test_other_workflows_keep_the_long_path_with_their_form(client, passwords, relais: Relais):
    login(client, rpps(1))
    first = start(client, "generic_opinion")
    assert "Quel type de demande" in first and re.search(r'value="generic_opinion" required checked', first)
    csrf = csrf_from(first)
    patient = client.post("/dossiers/new/patient", data={"workflow": "generic_opinion", "_csrf_token": csrf})
    assert hidden(patient.text, "urgency") == "routine"  # not chosen: the workflow's default
    form = client.post("/dossiers/new/question", data={"workflow": "generic_opinion", "_csrf_token": csrf} | PATIENT_FORM)
    assert 'name="specialty"' in form.text and 'name="imaging_source"' not in form.text
    created = client.post("/dossiers/new", data={"workflow": "generic_opinion", "_csrf_token": csrf} | PATIENT_FORM | {
        "form_id": "generic_opinion", "form_version": "1", "specialty": "Dermatologie", "question": "Mélanome ?",
        "consent": "given"}, follow_redirects=False)
    assert created.status_code == 303 and created.headers["location"].endswith("/edit/documents")
    d = relais.get_dossier(dossier_id=created.headers["location"].split("/")[2], actor_id=passwords["requester"])
    assert d.urgency == "routine" and d.sends == () or list(d.sends) == []


def test_form_errors_are_shown_at_their_fields_and_nothing_is_created(client, passwords, relais: Relais, settle):
    login(client, rpps(1))
    csrf = csrf_from(start(client, "stroke_opinion"))
    refused = client.post("/dossiers/new", data={"workflow": "stroke_opinion", "_csrf_token": csrf} | PATIENT_FORM | stroke_answers(
        nihss_total="57", weight="72,5") | {"form_id": "stroke_opinion", "form_version": "1", "imaging_source": "dicom_store"})
    assert refused.status_code == 422
    html = refused.text
    assert re.search(r'id="f-nihss_total"[^>]*aria-describedby="f-nihss_total-help f-nihss_total-error"', html)
    assert 'id="f-nihss_total-error"' in html and 'id="err-consent"' in html  # the form's field and the wizard's
    assert 'value="57"' in html and 'value="72,5"' in html  # what was typed is kept
    assert len(re.findall(r"\sautofocus", html)) == 1 and re.search(r'id="f-nihss_total"[^>]*autofocus', html)
    settle()
    assert "GARCIA" not in client.get("/inbox/drafts").text


def test_patient_errors_are_shown_each_at_its_field(client, passwords):
    login(client, rpps(1))
    csrf = csrf_from(start(client, "stroke_opinion"))
    refused = client.post("/dossiers/new/question", data={"workflow": "stroke_opinion", "_csrf_token": csrf} | PATIENT_FORM | {
        "birth_name": "", "birth_date": "2999-01-01", "sex": ""})
    assert refused.status_code == 422
    html = refused.text
    for field in ("birth_name", "birth_date", "sex"):
        assert f'id="err-{field}"' in html and re.search(rf'id="f-{field}"[^>]*aria-invalid="true"', html, re.S), field
    assert "date de naissance dans le futur" in html
    assert re.search(r'id="f-birth_name"[^>]*autofocus', html) and len(re.findall(r"\sautofocus", html)) == 1
    assert 'value="Antoine"' in html and 'value="Toulouse"' in html  # nothing typed is lost
    assert 'id="err-first_names"' not in html


def test_birthplace_by_name_the_ambiguous_and_the_unknown(client, passwords):
    """Regression: the birthplace had to be typed as an INSEE code; a name is refused no more."""
    login(client, rpps(1))
    csrf = csrf_from(start(client, "stroke_opinion"))
    base = {"workflow": "stroke_opinion", "_csrf_token": csrf} | PATIENT_FORM
    by_name = client.post("/dossiers/new/question", data=base | {"birth_place": "saint-gaudens"})
    assert by_name.status_code == 200 and hidden(by_name.text, "birth_place_code") == "31483"
    by_label = client.post("/dossiers/new/question", data=base | {"birth_place": "Toulouse (31)"})
    assert hidden(by_label.text, "birth_place_code") == "31555"
    abroad = client.post("/dossiers/new/question", data=base | {"birth_place": "Maroc"})
    assert hidden(abroad.text, "birth_place_code") == "99350"
    by_code = client.post("/dossiers/new/question", data=base | {"birth_place": "2A004"})
    assert hidden(by_code.text, "birth_place_code") == "2A004"
    ambiguous = client.post("/dossiers/new/question", data=base | {"birth_place": "Beaulieu"})
    assert ambiguous.status_code == 422 and "plusieurs lieux" in ambiguous.text
    assert 'name="birth_place_code" value="43021"' in ambiguous.text and "Beaulieu (43)" in ambiguous.text
    chosen = client.post("/dossiers/new/question", data=base | {"birth_place": "Beaulieu", "birth_place_code": "43021"})
    assert chosen.status_code == 200 and hidden(chosen.text, "birth_place_code") == "43021"
    unknown = client.post("/dossiers/new/question", data=base | {"birth_place": "Toulouze"})
    assert unknown.status_code == 422 and "inconnu" in unknown.text and 'value="Toulouze"' in unknown.text
    assert re.search(r'id="f-birth_place"[^>]*aria-invalid="true"', unknown.text, re.S)
    stale = client.post("/dossiers/new/question", data=base | {"birth_place": "Toulouze", "birth_place_code": "31555"})
    assert stale.status_code == 422  # a code chosen before the name was typed again is not taken


def test_imaging_is_never_silently_none_for_an_imaging_workflow(client, passwords, relais: Relais):
    """Regression: « Sans imagerie » was pre-selected on the imaging step of a stroke draft."""
    w = passwords
    stroke = relais.create_dossier(actor_id=w["requester"], workflow="stroke_opinion", question="Thrombectomie ?", **PATIENT)
    transfer = relais.create_dossier(actor_id=w["requester"], workflow="imaging_transfer", question="Relecture", **PATIENT)
    generic = relais.create_dossier(actor_id=w["requester"], workflow="generic_opinion", question="Avis ?", **PATIENT)
    login(client, rpps(1))
    page = client.get(f"/dossiers/{stroke}/edit/imaging").text
    assert not re.search(r'value="none"[^>]*checked', page) and re.search(r'value="dicom_store"[^>]*checked', page)
    page = client.get(f"/dossiers/{transfer}/edit/imaging").text
    assert 'value="none"' not in page and not re.search(r'name="imaging_source"[^>]*checked', page)
    refused = client.post(f"/dossiers/{transfer}/edit/imaging", data={
        "_csrf_token": csrf_from(page), "expected_version": hidden(page, "expected_version")})
    assert refused.status_code == 422 and "choisissez comment l&#39;imagerie arrive" in refused.text
    assert relais.get_dossier(dossier_id=transfer, actor_id=w["requester"]).imaging_source == "none"
    assert re.search(r'value="none"[^>]*checked', client.get(f"/dossiers/{generic}/edit/imaging").text)


def test_a_forged_form_and_another_establishments_draft_are_refused(client, passwords, relais: Relais):
    w = passwords
    draft = relais.create_dossier(actor_id=w["requester"], workflow="stroke_opinion", question="Thrombectomie ?", **PATIENT)
    version = relais.get_dossier(dossier_id=draft, actor_id=w["requester"]).version
    login(client, rpps(1))
    forged = client.post("/dossiers/new", data={"workflow": "stroke_opinion", "consent": "given"} | PATIENT_FORM | stroke_answers(),
                         follow_redirects=False)
    assert forged.status_code == 403  # no CSRF token
    forged_edit = client.post(f"/dossiers/{draft}/edit/question", data={"consent": "refused", "expected_version": version})
    assert forged_edit.status_code == 403
    client.post("/logout", data={"_csrf_token": csrf_from(client.get("/inbox/received").text)})
    login(client, rpps(3))  # a clinician of Montpellier
    csrf = csrf_from(client.get("/inbox/received").text)
    assert client.get(f"/dossiers/{draft}/edit/question").status_code == 403
    other = client.post(f"/dossiers/{draft}/edit/question", data={
        "_csrf_token": csrf, "expected_version": version, "consent": "refused", "form_id": "stroke_opinion", "form_version": "1",
        **stroke_answers()})
    assert other.status_code == 403
    d = relais.get_dossier(dossier_id=draft, actor_id=w["requester"])
    assert d.version == version and d.consent is None and d.form is None


def test_the_draft_form_is_saved_at_its_step_and_shown_again(client, passwords, relais: Relais):
    w = passwords
    draft = relais.create_dossier(actor_id=w["requester"], workflow="stroke_opinion", question="Thrombectomie ?", **PATIENT)
    login(client, rpps(1))
    page = client.get(f"/dossiers/{draft}/edit/question").text
    assert 'name="nihss_total"' in page
    saved = client.post(f"/dossiers/{draft}/edit/question", data={
        "_csrf_token": csrf_from(page), "form_token": hidden(page, "form_token"), "expected_version": hidden(page, "expected_version"),
        "form_id": "stroke_opinion", "form_version": "1", "consent": "given", "imaging_source": "dicom_store",
        **stroke_answers(nihss_total="9")}, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"].endswith("/edit/review"), saved.text[:600]
    d = relais.get_dossier(dossier_id=draft, actor_id=w["requester"])
    assert d.form["answers"]["nihss_total"] == 9 and d.consent["status"] == "given" and d.imaging_source == "dicom_store"
    again = client.get(f"/dossiers/{draft}/edit/question").text
    assert re.search(r'id="f-nihss_total"[^>]*value="9"|value="9"[^>]*id="f-nihss_total"', again, re.S)


def test_the_recipient_preset_is_changed_on_the_review(client, passwords, relais: Relais, settle):
    """On the review, removing the preset and adding another recipient keeps « Envoyer » in step: the button follows
    whether someone is addressed, and the form's version follows the user's own changes (no « modifié ailleurs »)."""
    w = passwords
    relais.set_default_recipient(establishment_id=w["toulouse"], workflow="stroke_opinion", to_establishment_id=w["montpellier"])
    settle()
    login(client, rpps(1))
    csrf = csrf_from(start(client, "stroke_opinion"))
    created = client.post("/dossiers/new", data={"workflow": "stroke_opinion", "_csrf_token": csrf} | PATIENT_FORM | stroke_answers() | {
        "form_id": "stroke_opinion", "form_version": "1", "consent": "given", "imaging_source": "dicom_store"}, follow_redirects=False)
    review_url = created.headers["location"]
    did = review_url.split("/")[2]
    review = client.get(review_url).text
    shown = hidden(review, "expected_version")
    assert 'hx-get="/dossiers/' + did + '/edit/version?of=send"' in review
    send_id = relais.get_dossier(dossier_id=did, actor_id=w["requester"]).sends[0]["send_id"]
    on_review = {"HX-Request": "true", "HX-Current-URL": f"http://testserver.local{review_url}", "x-csrftoken": csrf}
    listed = re.search(r'id="recipients-version" name="expected_version" value="(\d+)"', review).group(1)
    removed = client.post(f"/dossiers/{did}/recipients/{send_id}/remove", headers=on_review, data={
        "form_token": secrets.token_urlsafe(18), "expected_version": listed})
    assert removed.status_code == 200 and removed.headers["HX-Trigger"] == "recipients-changed"
    assert re.search(r'<button id="send-button"[^>]* disabled hx-swap-oob="true">', removed.text)
    version = re.search(r'id="recipients-version" name="expected_version" value="(\d+)"', removed.text).group(1)
    added = client.post(f"/dossiers/{did}/recipients", headers=on_review, data={
        "form_token": secrets.token_urlsafe(18), "expected_version": version, "establishment_id": w["montpellier"],
        "service_id": w["neuro"]})
    assert re.search(r'<button id="send-button"[^>]*type="submit" hx-swap-oob="true">', added.text)
    followed = client.get(f"/dossiers/{did}/edit/version?of=send&expected_version={shown}", headers={"HX-Request": "true"})
    new_version = re.search(r'name="expected_version" value="(\d+)"', followed.text).group(1)
    assert int(new_version) == int(shown) + 2 and 'hx-trigger="recipients-changed from:body"' in followed.text
    sent = client.post(review_url, data={"_csrf_token": csrf, "form_token": secrets.token_urlsafe(18), "expected_version": new_version},
                       follow_redirects=False)
    assert sent.status_code == 303, sent.text[:500]
    d = relais.get_dossier(dossier_id=did, actor_id=w["requester"])
    assert [(s["service_id"], s["state"]) for s in d.sends if s["state"] != "removed"] == [(w["neuro"], "requested")]


def test_without_a_default_recipient_the_review_asks_for_one(client, passwords, relais: Relais):
    login(client, rpps(1))
    csrf = csrf_from(start(client, "stroke_opinion"))
    created = client.post("/dossiers/new", data={"workflow": "stroke_opinion", "_csrf_token": csrf} | PATIENT_FORM | stroke_answers() | {
        "form_id": "stroke_opinion", "form_version": "1", "consent": "given", "imaging_source": "none"}, follow_redirects=False)
    review = client.get(created.headers["location"]).text
    assert "Aucun destinataire choisi." in review and re.search(r'<button id="send-button"[^>]* disabled>', review)
    did = created.headers["location"].split("/")[2]
    d = relais.get_dossier(dossier_id=did, actor_id=passwords["requester"])
    assert list(d.sends) == [] and d.imaging_source == "none"  # « Sans imagerie » chosen, explicitly


def test_an_imaging_transfer_is_not_sent_without_images(client, passwords, relais: Relais):
    w = passwords
    draft = relais.create_dossier(actor_id=w["requester"], workflow="imaging_transfer", question="Relecture", consent="given", **PATIENT)
    relais.address_recipient(dossier_id=draft, actor_id=w["requester"], establishment_id=w["montpellier"])
    login(client, rpps(1))
    review = client.get(f"/dossiers/{draft}/edit/review").text
    assert "un transfert d&#39;imagerie transmet des images" in review and re.search(r'<button id="send-button"[^>]* disabled>', review)
    form = {"_csrf_token": csrf_from(review), "form_token": hidden(review, "form_token"),
            "expected_version": hidden(review, "expected_version")}
    refused = client.post(f"/dossiers/{draft}/edit/review", data=form)
    assert refused.status_code == 422
    assert relais.get_dossier(dossier_id=draft, actor_id=w["requester"]).sends[0]["state"] == "pending"


def test_the_ct_pushed_before_the_request_was_written_joins_it_at_once(client, passwords, relais: Relais, settings, settle):
    """The gateway pushed the stroke CT (Patient ID IPP-5150) before the clinician wrote the request: awaiting
    that Patient ID at creation attaches it at once — before, only instances arriving after the await did."""
    from application.imaging import ReceivedInstance
    from projections.runner import catch_up

    w = passwords
    uid = "1.2.826.0.1.99.515"
    relais.record_received(establishment_id=w["toulouse"], source={"kind": "dicom_store", "calling_aet": "TLSE_GW"}, instances=[
        ReceivedInstance(sop_instance_uid=f"{uid}.9.{i}", series_instance_uid=f"{uid}.1", study_instance_uid=uid,
                         sop_class_uid="1.2.840.10008.5.1.4.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1", size=10,
                         patient={"id": "IPP-5150", "name": "GARCIA^ANTOINE", "birth_date": "19711119", "sex": "M"},
                         study={"description": "TDM cérébrale"}, series={"modality": "CT", "number": 1}) for i in range(2)])
    catch_up("imaging", settings.eventsourcing_env(), relais)
    settle()
    login(client, rpps(1))
    first = start(client, "stroke_opinion")
    csrf = csrf_from(first)
    base = {"workflow": "stroke_opinion", "urgency": "stat", "_csrf_token": csrf}
    second = client.post("/dossiers/new/question", data=base | PATIENT_FORM)
    created = client.post("/dossiers/new", data=base | PATIENT_FORM | {"birth_place_code": "31555"} | stroke_answers() | {
        "form_id": "stroke_opinion", "form_version": "1", "consent": "given", "imaging_source": "dicom_store",
        "patient_id": "IPP-5150", "form_token": hidden(second.text, "form_token")}, follow_redirects=False)
    assert created.status_code == 303, created.text[:800]
    did = created.headers["location"].split("/")[2]
    d = relais.get_dossier(dossier_id=did, actor_id=w["requester"])
    assert [s["study_instance_uid"] for s in d.imaging] == [uid]
    review = client.get(created.headers["location"])
    assert review.status_code == 200 and "TDM cérébrale" in review.text and "IPP IPP-5150" in review.text
