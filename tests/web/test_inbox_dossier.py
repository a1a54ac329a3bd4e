"""Inbox, creation in steps, dossier page and actions, documents, audit — through Litestar's test client."""

from __future__ import annotations

import json
import re

from litestar.testing import TestClient

from tests.conftest import rpps
from tests.web.conftest import csrf_from, login

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
HX = {"HX-Request": "true"}


def token(client: TestClient, path: str = "/") -> str:
    return csrf_from(client.get(path).text)


def act(client: TestClient, did: str, action: str, **data):
    page = client.get(f"/dossiers/{did}")
    version = re.search(r'id="dossier-version" value="(\d+)"', page.text).group(1)
    form = {"expected_version": version, "_csrf_token": csrf_from(page.text)} | data
    return client.post(f"/dossiers/{did}/actions/{action}", data=form, headers=HX)


def test_inbox_shows_a_sent_dossier_with_counters_and_filters(client, passwords, sent_dossier, settle):
    settle()
    login(client, rpps(2))
    page = client.get("/")
    assert page.status_code == 200
    assert "Boîte de réception" in page.text and 'data-stream="/inbox/stream"' in page.text
    assert "DUPONT" in page.text and "Jeanne Marie" in page.text and "02/03/1950" in page.text
    assert "Immédiate" in page.text and "AVC aigu" in page.text and "CHU de Toulouse" in page.text
    assert 'class="dot"' in page.text  # unread
    assert re.search(r'data-tab="received">1<', page.text)
    fragment = client.get("/inbox/received?q=dupont", headers=HX)
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert 'id="results"' in fragment.text and 'hx-swap-oob="true"' in fragment.text and "DUPONT" in fragment.text
    assert "Aucun télédossier ne correspond" in client.get("/inbox/received?q=zzz", headers=HX).text
    assert "DUPONT" in client.get("/inbox/received?workflow=stroke_opinion&urgency=stat", headers=HX).text
    assert "DUPONT" not in client.get("/inbox/received?urgency=routine", headers=HX).text
    assert client.get("/inbox/nowhere").status_code == 404


def test_inbox_is_for_clinicians_and_scoped_to_them(client, passwords, sent_dossier, settle):
    settle()
    login(client, rpps(3))  # same establishment as the recipient, not in the service
    assert "DUPONT" not in client.get("/inbox/received").text
    client.post("/logout", data={"_csrf_token": token(client)})
    login(client, rpps(4))  # auditor
    assert client.get("/inbox/received").status_code == 403
    assert client.get("/", follow_redirects=False).headers["location"] == "/audit"


def shown_version(html: str) -> str:
    """The version the documents' upload form shows."""
    match = re.search(r'action="/dossiers/[^"]+/documents".*?name="expected_version" value="(\d+)"', html, re.S)
    assert match, "the upload form shows no version"
    return match.group(1)


def test_creation_in_steps_then_send(client, passwords, relais, settle):
    settle()
    login(client, rpps(1))
    assert "Quel type de demande" in client.get("/dossiers/new").text
    t = token(client, "/dossiers/new")
    step2 = client.post("/dossiers/new/patient", data={"workflow": "stroke_opinion", "urgency": "stat", "_csrf_token": t})
    assert "Identité du patient" in step2.text and 'value="stroke_opinion"' in step2.text
    patient = {"birth_name": "Garcia", "first_names": "Antoine", "birth_date": "1971-11-19", "sex": "M", "birth_place_code": "31555"}
    future = {"workflow": "stroke_opinion", **patient, "birth_date": "2999-01-01", "_csrf_token": t}
    bad = client.post("/dossiers/new/question", data=future)
    assert bad.status_code == 422 and "date de naissance" in bad.text and 'value="Garcia"' in bad.text
    step3 = client.post("/dossiers/new/question", data={"workflow": "stroke_opinion", "urgency": "stat", **patient, "_csrf_token": t})
    assert "Question et contexte" in step3.text
    created = client.post("/dossiers/new", data={
        "workflow": "stroke_opinion", "urgency": "stat", **patient, "question": "Thrombectomie ?", "consent": "given",
        "_csrf_token": t}, follow_redirects=False)
    assert created.status_code == 303
    did = created.headers["location"].split("/")[2]
    docs = client.get(f"/dossiers/{did}/edit/documents")
    assert "GARCIA" in docs.text and "Documents" in docs.text
    # autosave of the question (htmx), with the version
    auto = client.post(f"/dossiers/{did}/edit/question?autosave=true", headers=HX, data={
        "question": "Thrombectomie ? NIHSS 14", "consent": "given", "expected_version": "1", "_csrf_token": t})
    assert auto.status_code == 200 and "Brouillon enregistré" in auto.text and 'value="2"' in auto.text
    # upload: streamed, typed by content, hashed; the form sends the version the page shows (the autosave's)
    shown = shown_version(client.get(f"/dossiers/{did}/edit/documents").text)
    assert shown == "2"
    up = client.post(f"/dossiers/{did}/documents", headers=HX | {"x-csrftoken": t},
                     files={"file": ("cr.pdf", PDF, "application/pdf")}, data={"description": "CR urgences", "expected_version": shown})
    assert up.status_code == 200 and "cr.pdf" in up.text
    refused = client.post(f"/dossiers/{did}/documents", headers=HX | {"x-csrftoken": t}, data={"expected_version": shown_version(up.text)},
                          files={"file": ("virus.pdf", b"MZ\x90\x00 not a pdf", "application/pdf")})
    assert refused.status_code == 422 and "PDF, PNG ou JPEG" in refused.text
    doc = relais.get_dossier(dossier_id=did, actor_id=passwords["requester"]).documents[0]
    served = client.get(f"/dossiers/{did}/documents/{doc['document_id']}")
    assert served.status_code == 200 and served.content == PDF and served.headers["content-type"] == "application/pdf"
    # imaging: the "no imaging" path
    v = relais.get_dossier(dossier_id=did, actor_id=passwords["requester"]).version
    assert client.post(f"/dossiers/{did}/edit/imaging", data={"imaging_source": "none", "expected_version": v, "_csrf_token": t},
                       follow_redirects=False).headers["location"].endswith("/edit/recipients")
    # recipients from the directory, with search
    listed = client.get(f"/dossiers/{did}/edit/recipients").text
    found = client.get(f"/directory/search?q=neuro&dossier={did}", headers=HX)
    assert "CHU de Montpellier" in found.text and "Neuroradiologie" in found.text
    assert 'hx-include="#recipients-version"' in found.text  # « Ajouter » sends the version of the list shown
    added = client.post(f"/dossiers/{did}/recipients", headers=HX, data={
        "establishment_id": passwords["montpellier"], "service_id": passwords["neuro"], "_csrf_token": t,
        "expected_version": re.search(r'id="recipients-version" name="expected_version" value="(\d+)"', listed).group(1)})
    assert "Neuroradiologie" in added.text and "À envoyer" in added.text
    review = client.get(f"/dossiers/{did}/edit/review")
    assert "Envoyer le télédossier" in review.text and "disabled" not in review.text.split("Envoyer le télédossier")[0][-80:]
    v = relais.get_dossier(dossier_id=did, actor_id=passwords["requester"]).version
    sent = client.post(f"/dossiers/{did}/edit/review", data={"expected_version": v, "_csrf_token": t}, follow_redirects=False)
    assert sent.headers["location"] == f"/dossiers/{did}"
    assert relais.get_dossier(dossier_id=did, actor_id=passwords["requester"]).state == "requested"
    settle()
    assert "GARCIA" in client.get("/inbox/sent").text


def test_recipient_accepts_and_answers_in_place_and_the_requester_sees_it(client, passwords, sent_dossier, settle):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    settle()
    login(client, rpps(2))
    page = client.get(f"/dossiers/{did}")
    assert page.status_code == 200 and "Prendre en charge" in page.text and "DUPONT" in page.text
    assert "Clôturer" not in page.text  # requester's actions are not offered to the recipient
    accepted = act(client, did, "accept", send_id=sid)
    assert accepted.status_code == 200 and "<html" not in accepted.text
    assert "pris en charge" in accepted.text and "Rendre l'avis" in accepted.text
    answered = act(client, did, "give_opinion", send_id=sid, report="Occlusion M1.", conclusion="Thrombectomie",
                   recommendations="Transfert immédiat", follow_up="immediate")
    assert "Avis rendu" in answered.text and "Thrombectomie" in answered.text
    client.post("/logout", data={"_csrf_token": token(client)})
    login(client, rpps(1))
    mine = client.get(f"/dossiers/{did}")
    assert "Thrombectomie" in mine.text and "Transfert immédiat" in mine.text and "Immédiate (appel ou transfert)" in mine.text
    report = client.get(f"/dossiers/{did}/report")
    assert "Compte rendu" in report.text and "js-print" in report.text and "@media print" in client.get("/static/relais.css").text
    closed = act(client, did, "close", note="Intégré au dossier")
    assert "Télédossier clôturé" in closed.text


def test_concurrent_change_shows_the_new_state_and_keeps_the_input(client, passwords, relais, sent_dossier, settle):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    login(client, rpps(2))
    page = client.get(f"/dossiers/{did}")
    stale_version = re.search(r'id="dossier-version" value="(\d+)"', page.text).group(1)
    relais.accept(dossier_id=did, actor_id=passwords["recipient"], send_id=sid)  # a colleague, meanwhile
    response = client.post(f"/dossiers/{did}/actions/decline", headers=HX, data={
        "expected_version": stale_version, "send_id": sid, "reason_code": "other", "reason": "Mon texte précieux",
        "_csrf_token": csrf_from(page.text)})
    assert response.status_code == 409
    assert "Ce dossier a changé" in response.text and "voici son nouvel état" in response.text
    assert "Mon texte précieux" in response.text and "En cours" in response.text
    assert relais.get_dossier(dossier_id=did, actor_id=passwords["recipient"]).sends[0]["state"] == "in_progress"


def test_denied_reads_and_commands_are_403_and_traced(client, passwords, relais, sent_dossier, settle):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    login(client, rpps(3))  # outsider
    assert client.get(f"/dossiers/{did}").status_code == 403
    t = token(client, "/inbox/received")
    forged = client.post(f"/dossiers/{did}/actions/accept", data={"send_id": sid, "_csrf_token": t})
    assert forged.status_code == 403
    doc = client.get(f"/dossiers/{did}/documents/whatever")
    assert doc.status_code == 403
    settle()
    log = [(a.kind, a.outcome) for a in client.app.state.services.access_log.for_dossier(did)]
    assert log.count(("dossier", "denied")) == 1 and ("command", "denied") in log and ("document", "denied") in log
    # the requester may not act as a recipient: 403, traced, nothing recorded
    client.post("/logout", data={"_csrf_token": t})
    login(client, rpps(1))
    before = relais.get_dossier(dossier_id=did, actor_id=passwords["requester"]).version
    assert act(client, did, "accept", send_id=sid).status_code == 403
    assert relais.get_dossier(dossier_id=did, actor_id=passwords["requester"]).version == before


def test_actions_without_csrf_token_are_rejected(client, passwords, relais, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    login(client, rpps(2))
    response = client.post(f"/dossiers/{did}/actions/accept", data={"send_id": sid}, headers=HX)
    assert response.status_code == 403 and "jeton de sécurité" in response.text
    upload = client.post(f"/dossiers/{did}/documents", files={"file": ("a.pdf", PDF, "application/pdf")})
    assert upload.status_code == 403
    assert relais.get_dossier(dossier_id=did, actor_id=passwords["recipient"]).sends[0]["state"] == "requested"


def test_auditor_finds_replays_exports_and_sees_accesses(client, passwords, relais, sent_dossier, settle):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.open_dossier(dossier_id=did, actor_id=passwords["recipient"])
    relais.accept(dossier_id=did, actor_id=passwords["recipient"], send_id=sid)
    settle()
    login(client, rpps(4))
    found = client.get("/audit?q=dupont")
    assert found.status_code == 200 and "DUPONT" in found.text
    number = re.search(r"TD-[A-Z2-7]{10}", found.text).group(0)
    assert did in client.get(f"/audit?q={number}", headers=HX).text
    trail = client.get(f"/audit/dossiers/{did}")
    assert "Historique complet" in trail.text and "Pris en charge" in trail.text and "Paul DURAND" in trail.text
    assert "Date métier" in trail.text and "Enregistré le" in trail.text and "Consultation du télédossier" in trail.text
    step = client.get(f"/audit/dossiers/{did}/replay?version=3", headers=HX)
    assert "Version <strong>3</strong>" in step.text and "Envoyé" in step.text and "Pris en charge" not in step.text
    assert "<html" not in step.text
    last = client.get(f"/audit/dossiers/{did}/replay?version=4")
    assert "Pris en charge" in last.text and "En cours" in last.text
    assert client.get(f"/audit/dossiers/{did}/replay?version=99").status_code == 404
    exported = client.get(f"/audit/dossiers/{did}/export.json")
    body = json.loads(exported.text)
    assert [e["event"] for e in body["events"]][:2] == ["Created", "RecipientAddressed"]
    assert all(e["recorded_at"] and "actor" in e for e in body["events"])
    assert {a["name"] for a in body["accesses"]} >= {"Paul DURAND"}
    assert "piste d'audit" in client.get(f"/audit/dossiers/{did}/print").text.lower()
    settle()
    who = client.get("/audit/patients?q=dupont")
    assert "DUPONT" in who.text
    accesses = client.get("/audit/patients?birth_name=DUPONT&first_names=Jeanne+Marie&birth_date=1950-03-02")
    assert "Paul DURAND" in accesses.text and "Anne LEROY" in accesses.text  # the auditor's own reads are traced too


def test_audit_is_for_auditors_only(client, passwords, sent_dossier):
    login(client, rpps(1))
    assert client.get("/audit").status_code == 403
    assert client.get(f"/audit/dossiers/{sent_dossier['dossier_id']}").status_code == 403
    assert client.get(f"/audit/dossiers/{sent_dossier['dossier_id']}/export.json").status_code == 403


def test_forward_to_a_team_of_another_establishment(client, passwords, relais, sent_dossier, settle):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    nimes = relais.add_establishment(finess="300780038", name="CHU de Nîmes", department="30")
    stroke = relais.add_service(establishment_id=nimes, code="uneuro", name="Unité neurovasculaire")
    paris = relais.add_establishment(finess="750712184", name="AP-HP Pitié-Salpêtrière", department="75")
    paris_team = relais.add_service(establishment_id=paris, code="nri", name="Neuroradiologie interventionnelle")
    colleague = relais.add_practitioner(rpps=rpps(9), family_name="Roux", given_name="Léa", establishment_id=nimes,
                                        roles=["clinician"], service_ids=[stroke])
    client.app.state.services.credentials.set_password(colleague, "correct horse battery")
    settle()
    client.app.state.services.names.refresh(force=True)  # the directory's names are cached for a minute
    login(client, rpps(2))
    act(client, did, "accept", send_id=sid)
    page = client.get(f"/dossiers/{did}")
    assert "Ou dans un autre établissement" in page.text and "Réseau national" in page.text
    found = client.get(f"/dossiers/{did}/forward-targets", params={"q": "nîmes", "send_id": sid}, headers=HX)
    assert found.status_code == 200 and f'value="{nimes}|{stroke}|"' in found.text and "Dr Léa ROUX" in found.text
    assert "CHU de Montpellier" not in client.get(f"/dossiers/{did}/forward-targets", params={"q": "CHU"}).text
    # outside Occitanie, the inter-regional channel is required: 422, nothing recorded, input kept
    refused = act(client, did, "forward", send_id=sid, to=f"{paris}|{paris_team}|", note="Avis NRI")
    assert refused.status_code == 422 and "canal" in refused.text
    moved = act(client, did, "forward", send_id=sid, to=f"{nimes}|{stroke}|", note="Relève de l'UNV")
    assert moved.status_code == 200 and moved.headers["HX-Redirect"] == "/inbox/received?done=forwarded"
    (send,) = relais.get_dossier(dossier_id=did, actor_id=passwords["requester"]).sends
    assert (send["establishment_id"], send["service_id"], send["state"]) == (nimes, stroke, "requested")
    settle()
    inbox = client.get("/inbox/received?done=forwarded")
    assert "Télédossier transféré" in inbox.text and "DUPONT" not in inbox.text
    assert client.get(f"/dossiers/{did}").status_code == 403  # it no longer concerns me
    log = [(a.practitioner_id, a.kind, a.outcome) for a in client.app.state.services.access_log.for_dossier(did)]
    assert (passwords["recipient"], "dossier", "denied") not in log[:-1]  # the redirect after forwarding traced nothing
    client.post("/logout", data={"_csrf_token": token(client)})
    login(client, rpps(9))
    theirs = client.get("/inbox/received")
    assert "DUPONT" in theirs.text and "Prendre en charge" in client.get(f"/dossiers/{did}").text


def test_a_dossier_page_refused_for_want_of_the_role_is_traced(client, passwords, relais, sent_dossier, settle):
    did = sent_dossier["dossier_id"]
    login(client, rpps(2))  # a clinician on the auditor's pages of a dossier
    assert client.get(f"/audit/dossiers/{did}").status_code == 403
    assert client.get(f"/audit/dossiers/{did}/export.json").status_code == 403
    assert client.get("/audit/dossiers/not-a-dossier").status_code == 403  # nothing to trace
    client.post("/logout", data={"_csrf_token": token(client)})
    login(client, rpps(4))  # an auditor on a clinician's edit page
    assert client.get(f"/dossiers/{did}/edit/question").status_code == 403
    settle()
    log = [(a.practitioner_id, a.kind, a.outcome, a.target) for a in client.app.state.services.access_log.for_dossier(did)]
    assert (passwords["recipient"], "audit", "denied", f"/audit/dossiers/{did}") in log
    assert (passwords["recipient"], "audit", "denied", f"/audit/dossiers/{did}/export.json") in log
    assert (passwords["auditor"], "dossier", "denied", f"/dossiers/{did}/edit/question") in log
    assert len(log) == 3
