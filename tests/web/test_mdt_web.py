"""MDT session pages: authorization on every route, CSRF, the quorum error in French, the decision, the .ics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from icalendar import Calendar

from application import Relais
from projections.runner import catch_up
from tests.conftest import PATIENT, rpps
from tests.web.conftest import csrf_from, login

HX = {"HX-Request": "true"}


@pytest.fixture()
def rcp(relais: Relais, passwords: dict, settings) -> dict:
    """A kidney-transplant dossier from Toulouse to Montpellier's neuroradiology team (standing in for a transplant
    team), registered to a session its member (the recipient) coordinates."""
    w = passwords
    did = relais.create_dossier(actor_id=w["requester"], workflow="kidney_transplant_mdt", question="Inscription en liste ?",
                                urgency="routine", consent="given", **PATIENT)
    relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                             service_id=w["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])
    sid = relais.schedule_mdt_session(actor_id=w["recipient"], service_id=w["neuro"], duration_minutes=60,
                                      starts_at=relais.clock() + timedelta(days=2), place="Salle de staff",
                                      participant_ids=[w["recipient"], w["outsider"]])
    relais.register_mdt_dossier(session_id=sid, dossier_id=did, actor_id=w["recipient"])
    for name in ("directory", "mdt"):
        catch_up(name, settings.eventsourcing_env(), relais)
    return {**w, "dossier_id": did, "session_id": sid}


def signed_in(client, who: int) -> str:
    client.cookies.clear()
    assert login(client, rpps(who)).status_code == 303
    return csrf_from(client.get("/login").text)


def attendance(client, rcp: dict, csrf: str, rows: dict[str, tuple[str, str]]):
    data: dict = {"_csrf_token": csrf, "participant": list(rows)}
    for pid, (specialty, status) in rows.items():
        data[f"specialty-{pid}"] = specialty
        data[f"status-{pid}"] = status
    return client.post(f"/mdt/sessions/{rcp['session_id']}/attendance", data=data, headers=HX)


def test_session_page_quorum_and_decision(client, relais: Relais, rcp: dict):
    csrf = signed_in(client, 2)
    page = client.get(f"/mdt/sessions/{rcp['session_id']}")
    assert page.status_code == 200
    assert "DUPONT" in page.text and "Inscription en liste ?" in page.text
    assert "Quorum non atteint" in page.text and "manque : néphrologie, urologie" in page.text
    assert "/mdt/sessions/" + rcp["session_id"] + ".ics" in page.text
    listed = client.get("/mdt")
    assert listed.status_code == 200 and f"/mdt/sessions/{rcp['session_id']}" in listed.text
    r = attendance(client, rcp, csrf, {rcp["recipient"]: ("néphrologie", "present"), rcp["outsider"]: ("urologie", "remote")})
    assert r.status_code == 200 and "Quorum non atteint" in r.text and "manque : anesthésie-réanimation, immunologie" in r.text
    decision = {"_csrf_token": csrf, "decision": "Inscription sur liste", "proposal": "Inscrire", "rationale": "Bilan complet",
                "follow_up": "Revoir à 6 mois", "form_token": "t" * 24}
    url = f"/mdt/sessions/{rcp['session_id']}/decisions/{rcp['dossier_id']}"
    refused = client.post(url, data=decision, headers=HX)
    assert refused.status_code == 422
    assert ("quorum non atteint : 2 spécialités présentes sur 3 requises (manquent : anesthésie-réanimation, immunologie)"
            in refused.text)
    assert 'value="Inscription sur liste"' in refused.text and "Bilan complet" in refused.text  # the input is kept
    assert relais.get_dossier(dossier_id=rcp["dossier_id"], actor_id=rcp["requester"]).sends[0]["state"] == "requested"
    r = client.post(f"/mdt/sessions/{rcp['session_id']}/attendance", headers=HX, data={
        "_csrf_token": csrf, "new_participant": rcp["requester"], "new_specialty": "immunologie", "new_status": "present"})
    assert "Quorum atteint" in r.text
    done = client.post(url, data={**decision, "form_token": "u" * 24}, headers=HX)
    assert done.status_code == 200 and "Décision enregistrée" in done.text
    send = relais.get_dossier(dossier_id=rcp["dossier_id"], actor_id=rcp["requester"]).sends[0]
    assert send["state"] == "answered" and send["opinion"]["conclusion"] == "Inscription sur liste"
    fiche = client.get(f"/mdt/sessions/{rcp['session_id']}/fiche/{rcp['dossier_id']}")
    assert fiche.status_code == 200 and "Fiche RCP" in fiche.text and rpps(3) in fiche.text and "Revoir à 6 mois" in fiche.text
    catch_up("mdt", client.app.state.services.settings.eventsourcing_env(), relais)
    part = client.get(f"/mdt/dossiers/{rcp['dossier_id']}", headers=HX)
    assert part.status_code == 200 and "Inscription sur liste" in part.text


def test_another_establishment_is_refused_everywhere(client, relais: Relais, rcp: dict):
    csrf = signed_in(client, 1)  # the requester, at Toulouse: not the organising establishment
    sid, did = rcp["session_id"], rcp["dossier_id"]
    assert client.get(f"/mdt/sessions/{sid}").status_code == 403
    assert client.get(f"/mdt/sessions/{sid}.ics").status_code == 403
    assert client.get(f"/mdt/sessions/{sid}/fiche/{did}").status_code == 403
    assert attendance(client, rcp, csrf, {rcp["requester"]: ("néphrologie", "present")}).status_code == 403
    assert client.post(f"/mdt/sessions/{sid}/decisions/{did}", headers=HX,
                       data={"_csrf_token": csrf, "decision": "x"}).status_code == 403
    assert client.post(f"/mdt/sessions/{sid}/withdraw/{did}", headers=HX, data={"_csrf_token": csrf}).status_code == 403
    assert client.post(f"/mdt/sessions/{sid}/cancel", headers=HX, data={"_csrf_token": csrf}).status_code == 403
    assert client.post("/mdt/register", headers=HX, data={"_csrf_token": csrf, "session_id": sid,
                                                          "dossier_id": did}).status_code == 403
    assert sid not in client.get("/mdt").text
    # a clinician of the organising establishment outside the organising service reads it but does not manage it
    csrf = signed_in(client, 3)
    page = client.get(f"/mdt/sessions/{sid}")
    assert page.status_code == 200 and "Enregistrer les présences" not in page.text and "DUPONT" not in page.text
    assert attendance(client, rcp, csrf, {rcp["outsider"]: ("urologie", "present")}).status_code == 403
    session = relais.mdt_session(session_id=sid, actor_id=rcp["recipient"], trace=False)
    assert session.attendance == () and not session.cancelled


def test_forms_need_the_csrf_token(client, relais: Relais, rcp: dict):
    signed_in(client, 2)
    sid, did = rcp["session_id"], rcp["dossier_id"]
    for url, data in ((f"/mdt/sessions/{sid}/attendance", {"participant": rcp["recipient"],
                                                          f"status-{rcp['recipient']}": "present",
                                                          f"specialty-{rcp['recipient']}": "néphrologie"}),
                      (f"/mdt/sessions/{sid}/decisions/{did}", {"decision": "x"}),
                      (f"/mdt/sessions/{sid}/cancel", {}), ("/mdt/register", {"session_id": sid, "dossier_id": did}),
                      ("/mdt/sessions", {"service_id": rcp["neuro"], "date": "2030-01-01", "time": "14:00",
                                         "duration_minutes": "60", "place": "Salle"})):
        assert client.post(url, data=data).status_code == 403, url
    session = relais.mdt_session(session_id=sid, actor_id=rcp["recipient"], trace=False)
    assert session.attendance == () and not session.cancelled and session.version == 2


def test_schedule_from_the_form_and_the_invitation(client, relais: Relais, rcp: dict):
    csrf = signed_in(client, 2)
    form = client.get("/mdt/sessions/new")
    assert form.status_code == 200 and "Programmer la séance" in form.text
    data = {"_csrf_token": csrf, "form_token": "n" * 24, "session_type": "kidney_transplant", "service_id": rcp["neuro"],
            "date": "2030-03-05", "time": "14:30", "duration_minutes": "90", "place": "",
            "video_url": "https://visio.example.org/rcp", "specialties": ["néphrologie", "urologie", "immunologie"],
            "participants": [rcp["recipient"], rcp["outsider"]]}
    bad = client.post("/mdt/sessions", data={**data, "video_url": "", "form_token": "m" * 24})
    assert bad.status_code == 422 and "indiquez un lieu ou un lien de visioconférence" in bad.text
    created = client.post("/mdt/sessions", data=data, follow_redirects=False)
    assert created.status_code == 303
    again = client.post("/mdt/sessions", data=data, follow_redirects=False)
    assert again.headers["location"] == created.headers["location"]  # the same form twice: one session
    url = created.headers["location"].split("?")[0]
    ics = client.get(url + ".ics")
    assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
    assert ics.headers["content-type"].count("charset") == 1 and "method=REQUEST" in ics.headers["content-type"]
    (event,) = Calendar.from_ical(ics.content).walk("VEVENT")
    assert event.decoded("DTSTART").strftime("%Y-%m-%d %H:%M %Z") == "2030-03-05 14:30 CET"
    assert str(event["URL"]) == "https://visio.example.org/rcp" and str(event["SEQUENCE"]) == "0"
    assert "ATTENDEE" not in event  # the practitioners of this directory have no e-mail address: nobody to invite


def test_register_from_the_dossier_page(client, relais: Relais, rcp: dict, settings):
    w = rcp
    did = relais.create_dossier(actor_id=w["requester"], workflow="kidney_transplant_mdt", question="Second dossier",
                                urgency="routine", consent="given", **PATIENT)
    relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                             service_id=w["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])
    csrf = signed_in(client, 2)
    part = client.get(f"/mdt/dossiers/{did}", headers=HX)
    assert part.status_code == 200 and "Inscrire à une séance" in part.text
    r = client.post("/mdt/register", data={"_csrf_token": csrf, "session_id": w["session_id"], "dossier_id": did,
                                           "form_token": "r" * 24}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/mdt/sessions/{w['session_id']}"
    assert "Second dossier" in client.get(r.headers["location"]).text
    signed_in(client, 1)  # the requester sees the registration, without the form
    catch_up("mdt", settings.eventsourcing_env(), relais)
    part = client.get(f"/mdt/dossiers/{did}", headers=HX)
    assert part.status_code == 200 and "inscrit" in part.text and "Inscrire à une séance" not in part.text


def test_reschedule_bumps_the_invitation(client, relais: Relais, rcp: dict):
    csrf = signed_in(client, 2)
    sid = rcp["session_id"]
    page = client.get(f"/mdt/sessions/{sid}")
    assert "Modifier la séance" in page.text
    version = relais.mdt_session(session_id=sid, actor_id=rcp["recipient"], trace=False).version
    data = {"_csrf_token": csrf, "form_token": "s" * 24, "expected_version": str(version), "date": "2030-06-02",
            "time": "09:15", "duration_minutes": "45", "place": "Salle B", "video_url": ""}
    bad = client.post(f"/mdt/sessions/{sid}/reschedule", data={**data, "duration_minutes": "0", "form_token": "q" * 24},
                      headers=HX)
    assert bad.status_code == 422 and "durée entre 1 et 720 minutes" in bad.text
    r = client.post(f"/mdt/sessions/{sid}/reschedule", data=data, headers=HX)
    assert r.status_code == 200 and "la nouvelle invitation" in r.text and "02/06/2030 09:15" in r.text
    (event,) = Calendar.from_ical(client.get(f"/mdt/sessions/{sid}.ics").content).walk("VEVENT")
    assert event["SEQUENCE"] == 1 and str(event["LOCATION"]) == "Salle B"
    stale = client.post(f"/mdt/sessions/{sid}/reschedule", data={**data, "form_token": "p" * 24, "time": "10:00"}, headers=HX)
    assert stale.status_code == 409 and "la séance a changé depuis votre lecture" in stale.text  # nothing recorded


def test_the_agenda_shows_the_form_answers(client, relais: Relais, rcp: dict):
    w = rcp
    did = relais.create_dossier(actor_id=w["requester"], workflow="kidney_transplant_mdt", question="Avec formulaire",
                                urgency="routine", consent="given", **PATIENT)
    relais.answer_form(dossier_id=did, actor_id=w["requester"], raw={
        "stage": "assessment", "donor_type": "living", "dialysis": "none", "egfr": "12", "immunisation": "none",
        "question": "Inscription préemptive ?"})
    relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                             service_id=w["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])
    relais.register_mdt_dossier(session_id=w["session_id"], dossier_id=did, actor_id=w["recipient"])
    signed_in(client, 2)
    page = client.get(f"/mdt/sessions/{w['session_id']}")
    assert page.status_code == 200
    item = page.text[page.text.index(f'id="item-{did}"'):]
    assert "Donneur vivant" in item and "Inscription préemptive ?" in item and "Bilan pré-greffe (inscription)" in item
