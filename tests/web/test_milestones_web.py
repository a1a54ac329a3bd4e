"""The stroke dossier page: the form's answers, the milestones, and the requester recording one (CSRF, rights, errors)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from litestar.testing import TestClient

from application import Relais
from domain.values import PARIS
from tests.conftest import PATIENT, rpps
from tests.web.conftest import csrf_from, login


def local(minutes_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).astimezone(PARIS).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture()
def stroke(relais: Relais, passwords: dict) -> str:
    w = passwords
    did = relais.create_dossier(actor_id=w["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                                urgency="stat", consent="given", imaging_source="none", **PATIENT)
    relais.answer_form(dossier_id=did, actor_id=w["requester"], raw={
        "time_reference": "onset", "onset_at": local(90), "arrival_at": local(60), "nihss_total": "17",
        "anticoagulant": "yes", "anticoagulant_drug": "apixaban", "anticoagulant_last_dose_at": local(600),
        "imaging": "ct", "angiography": "true", "thrombolysis": "false", "question": ["thrombectomy"],
    })
    relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                             service_id=w["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])
    return did


def version(relais: Relais, did: str, auditor: str) -> int:
    return relais.get_dossier(dossier_id=did, actor_id=auditor, role="auditor").version


def post(client: TestClient, did: str, data: dict, csrf: bool = True):
    """Posts the page's milestone form with `data` (its token and CSRF taken from the page, unless given)."""
    page = client.get(f"/dossiers/{did}").text
    token = re.search(r'name="form_token" value="([^"]+)">\s*<fieldset>\s*<legend>Enregistrer un jalon', page)
    form = {"form_token": token.group(1) if token else ""} | dict(data)
    if csrf:
        form["_csrf_token"] = csrf_from(page)
    return client.post(f"/dossiers/{did}/milestones", data=form, follow_redirects=False)


def recorded(relais: Relais, did: str) -> list:
    return [e for e in relais.core.events_of(UUID(did)) if type(e).__name__ == "MilestoneRecorded"]


def test_the_page_shows_the_answers_and_the_milestones(client: TestClient, relais: Relais, passwords: dict, stroke: str):
    login(client, rpps(1))
    page = client.get(f"/dossiers/{stroke}").text
    assert "Formulaire structuré, version 1" in page
    assert "<dt>Score NIHSS total</dt><dd>17</dd>" in page and "<dd>Apixaban</dd>" in page
    assert 'data-milestone="door"' in page and "Jalons de la prise en charge" in page
    assert 'action="/dossiers/' + stroke + '/milestones"' in page
    assert '<option value="door"' not in page  # the door is known (the form's arrival): only the decision, imaging
    assert '<option value="imaging"' in page
    client.cookies.clear()
    login(client, rpps(2))
    page = client.get(f"/dossiers/{stroke}").text
    assert "<dt>Score NIHSS total</dt><dd>17</dd>" in page and "Jalons de la prise en charge" in page
    assert "/milestones\"" not in page  # the recipient sees the times, records nothing


def test_recording_the_decision(client: TestClient, relais: Relais, passwords: dict, stroke: str):
    login(client, rpps(1))
    data = {"milestone": "decision", "at": local(2), "note": "Transfert pour thrombectomie",
            "expected_version": str(version(relais, stroke, passwords["auditor"]))}
    assert post(client, stroke, data, csrf=False).status_code == 403  # no CSRF token: refused
    assert recorded(relais, stroke) == []
    answer = post(client, stroke, data)
    assert answer.status_code == 303 and answer.headers["location"].endswith("#milestones")
    (event,) = recorded(relais, stroke)
    assert event.milestone == "decision" and event.note == "Transfert pour thrombectomie"
    assert datetime.fromisoformat(event.at).astimezone(PARIS).strftime("%Y-%m-%dT%H:%M") == data["at"]
    data["form_token"] = answer.request.content.decode().split("form_token=")[1].split("&")[0]
    assert post(client, stroke, data).status_code == 303  # the same form sent twice records once
    assert len(recorded(relais, stroke)) == 1
    page = client.get(f"/dossiers/{stroke}").text
    decision = page.split('data-milestone="decision"')[1].split("</li>")[0]
    assert "non renseigné" not in decision and "après l'arrivée" in decision


@pytest.mark.parametrize(("at", "message"), [
    ("", "indiquez la date et l&#39;heure"), ("demain", "date et heure attendues"), (None, "heure dans le futur"),
])
def test_a_bad_time_is_refused_at_its_field_in_french(
    client: TestClient, relais: Relais, passwords: dict, stroke: str, at: str | None, message: str,
):
    login(client, rpps(1))
    answer = post(client, stroke, {"milestone": "decision", "at": local(-120) if at is None else at, "note": "gardée",
                                   "expected_version": str(version(relais, stroke, passwords["auditor"]))})
    assert answer.status_code == 422
    assert f'<p class="field-error" id="milestone-at-error">{message}' in answer.text
    assert 'aria-describedby="milestone-at-error"' in answer.text and 'value="gardée"' in answer.text
    assert recorded(relais, stroke) == []


def test_an_unknown_milestone_is_refused(client: TestClient, relais: Relais, passwords: dict, stroke: str):
    login(client, rpps(1))
    answer = post(client, stroke, {"milestone": "sent", "at": local(1),
                                   "expected_version": str(version(relais, stroke, passwords["auditor"]))})
    assert answer.status_code == 422 and "choisissez le jalon" in answer.text
    assert recorded(relais, stroke) == []


@pytest.mark.parametrize("who", [2, 3])
def test_only_the_requester_side_records(client: TestClient, relais: Relais, passwords: dict, stroke: str, who: int):
    login(client, rpps(who))
    csrf = csrf_from(client.get("/").text)
    answer = client.post(f"/dossiers/{stroke}/milestones", follow_redirects=False, data={
        "milestone": "decision", "at": local(1), "_csrf_token": csrf,
        "expected_version": str(version(relais, stroke, passwords["auditor"]))})
    assert answer.status_code in (403, 404)
    assert recorded(relais, stroke) == []


def test_the_auditors_replay_shows_the_answers(client: TestClient, relais: Relais, passwords: dict, stroke: str):
    login(client, rpps(4))
    page = client.get(f"/audit/dossiers/{stroke}/replay", params={"version": "2"}).text
    assert "<dt>Score NIHSS total</dt><dd>17</dd>" in page
    assert "NIHSS" not in client.get(f"/audit/dossiers/{stroke}/replay", params={"version": "1"}).text
