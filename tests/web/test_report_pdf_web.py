"""The report PDF through the web: made after the opinion, served with the recorded SHA-256, to whom it concerns."""

from __future__ import annotations

import hashlib
import io
import re
import time
from typing import Any

from litestar.testing import TestClient
from pypdf import PdfReader

from application import Relais
from domain.dossier import Dossier
from tests.conftest import PATIENT, rpps
from tests.web.conftest import PASSWORD, csrf_from, login

HX = {"HX-Request": "true"}


def act(client: TestClient, did: str, action: str, **data: str) -> Any:
    page = client.get(f"/dossiers/{did}")
    version = re.search(r'id="dossier-version" value="(\d+)"', page.text).group(1)  # type: ignore[union-attr]
    form = {"expected_version": version, "_csrf_token": csrf_from(page.text)} | data
    return client.post(f"/dossiers/{did}/actions/{action}", data=form, headers=HX)


def logout(client: TestClient) -> None:
    client.post("/logout", data={"_csrf_token": csrf_from(client.get("/inbox/received").text)})


def wait_reports(relais: Relais, did: str, sid: str, n: int = 1, timeout: float = 60.0) -> list[dict]:
    """The send's reports once `n` are recorded (the job runs in the web process: no Redis configured)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reports = relais.load(Dossier, did, "télédossier").sends[sid].get("reports") or []
        if len(reports) >= n:
            return reports
        time.sleep(0.1)
    raise AssertionError(f"{n} compte(s) rendu(s) attendu(s) pour {sid}")


def report_accesses(client: TestClient, did: str) -> list[tuple[str, str, str]]:
    relais: Relais = client.app.state.services.relais
    out = []
    for note in relais.recorder.select_notifications(1, 10_000_000, topics=["relais:Access.Created"]):
        e = relais.mapper.to_domain_event(note)
        if e.dossier_id == did and e.kind == "report_pdf":
            out.append((e.actor.get("practitioner_id"), e.outcome, e.target))
    return out


def test_the_opinion_makes_a_report_served_with_its_recorded_hash_to_both_sides_and_auditors(
    client, passwords, relais, sent_dossier, settle,
):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    settle()
    login(client, rpps(2))
    early = client.get(f"/dossiers/{did}/sends/{sid}/report.pdf")
    assert early.status_code == 409 and "aucun avis" in early.text  # no opinion yet
    act(client, did, "accept", send_id=sid)
    act(client, did, "give_opinion", send_id=sid, report="Occlusion M1 gauche.", conclusion="Thrombectomie indiquée",
        recommendations="Transfert immédiat", follow_up="immediate")
    (report,) = wait_reports(relais, did, sid)
    number = relais.load(Dossier, did, "télédossier").number
    for who in (rpps(2), rpps(1), rpps(4)):  # the recipient, the requester, an auditor
        logout(client)
        login(client, who)
        got = client.get(f"/dossiers/{did}/sends/{sid}/report.pdf")
        assert got.status_code == 200, (who, got.text[:300])
        assert got.headers["content-type"] == "application/pdf"
        assert number in got.headers["content-disposition"] and got.headers["cache-control"] == "no-store"
        assert hashlib.sha256(got.content).hexdigest() == report["sha256"] and len(got.content) == report["size"]
    text = " ".join("".join(p.extract_text() for p in PdfReader(io.BytesIO(got.content)).pages).split())
    assert "Thrombectomie indiquée" in text and "Transfert immédiat" in text and f"RPPS {rpps(2)}" in text
    granted = [a for a in report_accesses(client, did) if a[1] == "granted"]
    assert {a[0] for a in granted} == {passwords["recipient"], passwords["requester"], passwords["auditor"]}
    assert all(a[2] == f"send:{sid}:{report['report_id']}" for a in granted)
    logout(client)
    login(client, rpps(1))
    page = client.get(f"/dossiers/{did}").text
    assert "Compte rendu PDF" in page and report["sha256"][:12] in page and f"/sends/{sid}/report.pdf" in page


def test_a_later_message_makes_a_new_report_and_the_download_serves_the_latest(client, passwords, relais, sent_dossier, settle):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.accept(dossier_id=did, actor_id=passwords["recipient"], send_id=sid)
    relais.give_opinion(dossier_id=did, actor_id=passwords["recipient"], send_id=sid, report="Pas d'indication.")
    settle()
    login(client, rpps(1))
    made = client.get(f"/dossiers/{did}/sends/{sid}/report.pdf")  # an opinion given before reports: made on first ask
    (first,) = relais.load(Dossier, did, "télédossier").sends[sid]["reports"]
    assert made.status_code == 200 and hashlib.sha256(made.content).hexdigest() == first["sha256"]
    page = client.get(f"/dossiers/{did}")
    message = client.post(f"/dossiers/{did}/sends/{sid}/messages", headers=HX | {"x-csrftoken": csrf_from(page.text)},
                          files={"file": ("", b"", "application/octet-stream")},
                          data={"text": "Patient rentré à domicile", "expected_version": str(_version(relais, did))})
    assert message.status_code in (200, 303), message.text[:300]
    second = wait_reports(relais, did, sid, n=2)[-1]
    assert second["sha256"] != first["sha256"]
    got = client.get(f"/dossiers/{did}/sends/{sid}/report.pdf")
    assert hashlib.sha256(got.content).hexdigest() == second["sha256"]
    assert "Patient rentré à domicile" in "".join(p.extract_text() for p in PdfReader(io.BytesIO(got.content)).pages)
    assert len(relais.load(Dossier, did, "télédossier").sends[sid]["reports"]) == 2  # nothing more was made


def _version(relais: Relais, did: str) -> int:
    return relais.load(Dossier, did, "télédossier").version


def test_a_third_party_and_another_sends_recipient_are_refused_and_traced(
    client, passwords, relais, credentials, world, settle,
):
    nimes = relais.add_establishment(finess="300780038", name="CHU de Nîmes", department="30")
    other = relais.add_practitioner(rpps=rpps(9), family_name="Blanc", given_name="Eva", establishment_id=nimes,
                                    roles=["clinician"])
    credentials.set_password(other, PASSWORD)
    did = relais.create_dossier(actor_id=world["requester"], workflow="generic_opinion", question="Avis ?", urgency="routine",
                                consent="given", imaging_source="none", **PATIENT)
    sid = relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"],
                                   service_id=world["neuro"])
    mine = relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=nimes,
                                    practitioner_id=other)
    relais.send_dossier(dossier_id=did, actor_id=world["requester"])
    relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=sid)
    relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=sid, report="Pas d'indication.")
    settle()
    for who, practitioner in ((rpps(3), world["outsider"]), (rpps(9), other)):  # nobody on it; the other send's recipient
        login(client, who)
        refused = client.get(f"/dossiers/{did}/sends/{sid}/report.pdf")
        assert refused.status_code == 403 and "ne vous concerne pas" in refused.text
        assert (practitioner, "denied", f"send:{sid}") in report_accesses(client, did)
        logout(client)
    login(client, rpps(9))
    no_opinion = client.get(f"/dossiers/{did}/sends/{mine}/report.pdf")  # their own send, not answered
    assert no_opinion.status_code == 409 and "aucun avis" in no_opinion.text and "pas de compte rendu" in no_opinion.text
    assert client.get(f"/dossiers/{did}/sends/inconnu/report.pdf").status_code == 404
    assert not [a for a in report_accesses(client, did) if a[1] == "granted"]


def test_an_mdt_decision_given_on_its_page_makes_the_report(client, passwords, relais, settings):
    from datetime import timedelta

    from projections.runner import catch_up

    w = passwords
    did = relais.create_dossier(actor_id=w["requester"], workflow="kidney_transplant_mdt", question="Inscription en liste ?",
                                urgency="routine", consent="given", **PATIENT)
    sid = relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                                   service_id=w["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])
    session = relais.schedule_mdt_session(actor_id=w["recipient"], service_id=w["neuro"], duration_minutes=60,
                                          starts_at=relais.clock() + timedelta(days=2), place="Salle de staff",
                                          participant_ids=[w["recipient"], w["outsider"]])
    relais.register_mdt_dossier(session_id=session, dossier_id=did, actor_id=w["recipient"])
    for who, specialty in ((w["recipient"], "néphrologie"), (w["outsider"], "urologie"), (w["requester"], "immunologie")):
        relais.record_mdt_attendance(session_id=session, actor_id=w["recipient"], practitioner_id=who, specialty=specialty,
                                     status="present")
    for name in ("directory", "mdt", "inbox", "access"):
        catch_up(name, settings.eventsourcing_env(), relais)
    login(client, rpps(2))
    csrf = csrf_from(client.get(f"/mdt/sessions/{session}").text)
    done = client.post(f"/mdt/sessions/{session}/decisions/{did}", headers=HX, data={
        "_csrf_token": csrf, "decision": "Inscription sur liste", "form_token": "r" * 24})
    assert done.status_code == 200 and "Décision enregistrée" in done.text
    (report,) = wait_reports(relais, did, sid)
    got = client.get(f"/dossiers/{did}/sends/{sid}/report.pdf")
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == report["sha256"]
    text = " ".join("".join(p.extract_text() for p in PdfReader(io.BytesIO(got.content)).pages).split())
    assert "réunion de concertation pluridisciplinaire" in text and f"RPPS {rpps(3)}, urologie" in text
