"""The opinion report PDF: what it says (R6316-4 CSP), stored by SHA-256, recorded once per dossier state."""

from __future__ import annotations

import asyncio
import hashlib
import io
from uuid import UUID

import pytest
from pypdf import PdfReader

from adapters.blobs import BlobStore
from adapters.report.issuer import ReportIssuer, issue_report, schedule
from application import Relais
from application.reports import NoReportError
from domain.dossier import Dossier
from tests.application.test_mdt import attend, rcp  # noqa: F401 - rcp: the MDT fixture
from tests.conftest import PATIENT, rpps
from web import report_html

OPINION = dict(
    report="Occlusion M1 gauche, pénombre étendue.", conclusion="Thrombectomie indiquée",
    recommendations="Transfert immédiat en salle de neuroradiologie interventionnelle", follow_up="immediate",
)


def pdf_text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture()
def issuer(relais: Relais, settings) -> ReportIssuer:
    return ReportIssuer(relais, BlobStore(settings.data_dir), report_html.render)


@pytest.fixture()
def answered(relais: Relais, world: dict, sent_dossier: dict) -> dict:
    """The stroke dossier with a document, accepted, a message each way, then the opinion."""
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    doc = relais.attach_document(dossier_id=did, actor_id=world["requester"], filename="scanner-cerebral.pdf",
                                 media_type="application/pdf", size=2048, sha256="ab" * 32)
    relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=sid)
    relais.post_message(dossier_id=did, actor_id=world["recipient"], send_id=sid, message="Heure du dernier moment vu normal ?")
    relais.post_message(dossier_id=did, actor_id=world["requester"], send_id=sid, message="Vue normale à 8 h 40, CR joint",
                        document_ids=[doc])
    relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=sid, **OPINION)
    return sent_dossier


def reports_of(relais: Relais, did: str) -> list[Dossier.ReportIssued]:
    return [e for e in relais.events.get(UUID(did)) if isinstance(e, Dossier.ReportIssued)]


def test_the_report_says_who_when_what_was_asked_reviewed_exchanged_and_answered(relais, world, answered, issuer, settings):
    did, sid = answered["dossier_id"], answered["send_id"]
    report = issuer.issue(did, sid)
    stored = BlobStore(settings.data_dir).path(report["sha256"]).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == report["sha256"] and len(stored) == report["size"]
    assert stored.startswith(b"%PDF-") and report["media_type"] == "application/pdf"
    text = flat(pdf_text(stored))
    number = relais.load(Dossier, did, "télédossier").number
    for expected in (
        number, "DUPONT", "Jeanne Marie", "Féminin", "31555",  # patient, strict INS traits
        "Claire MARTIN", f"RPPS {rpps(1)}", "CHU de Toulouse", "FINESS 310781406",  # requester
        "Paul DURAND", f"RPPS {rpps(2)}", "CHU de Montpellier", "Neuroradiologie",  # recipient
        "Thrombectomie ?",  # the question
        "scanner-cerebral.pdf", "1 document",  # documents reviewed, plural rule
        "Heure du dernier moment vu normal ?", "Vue normale à 8 h 40, CR joint",  # the thread
        "Thrombectomie indiquée", "Occlusion M1 gauche", "Transfert immédiat en salle",  # the opinion
        "Immédiate (appel ou transfert)", "Aucun incident technique enregistré",
        "2 mars 1950",  # birth date in French
        "page 1/2", "page 2/2",
    ):
        assert expected in text, expected
    when = report_html.long_date(relais.load(Dossier, did, "télédossier").sends[sid]["answered_on"])
    assert f"Avis rendu {when}" in text and " à " in when  # « mardi 8 décembre 2026 à 05 h 05 »
    (event,) = reports_of(relais, did)
    assert event.report["sha256"] == report["sha256"] and event.report["report_id"] == report["report_id"]


def test_issuing_twice_records_once_and_a_later_message_makes_a_new_report(relais, world, answered, issuer):
    did, sid = answered["dossier_id"], answered["send_id"]
    first = issuer.issue(did, sid)
    assert issuer.issue(did, sid)["report_id"] == first["report_id"]
    ctx = {"reports": issuer}
    assert asyncio.run(issue_report(ctx, dossier_id=did, send_id=sid))["report_id"] == first["report_id"]
    assert len(reports_of(relais, did)) == 1
    assert relais.reports_due(dossier_id=did) == []
    relais.post_message(dossier_id=did, actor_id=world["requester"], send_id=sid, message="Patient transféré à 10 h 05")
    assert [s for s, _ in relais.reports_due(dossier_id=did)] == [sid]
    second = issuer.issue(did, sid)
    events = reports_of(relais, did)
    assert [e.report["report_id"] for e in events] == [first["report_id"], second["report_id"]]
    assert second["sha256"] != first["sha256"]
    assert "Patient transféré à 10 h 05" in pdf_text(issuer.blobs.path(second["sha256"]).read_bytes())
    sends = relais.load(Dossier, did, "télédossier").sends
    assert [r["sha256"] for r in sends[sid]["reports"]] == [first["sha256"], second["sha256"]]  # the history keeps all


def test_a_send_without_opinion_has_no_report(relais, world, sent_dossier, issuer):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    with pytest.raises(NoReportError, match="aucun avis"):
        issuer.issue(did, sid)
    assert relais.reports_due(dossier_id=did) == []
    assert reports_of(relais, did) == []


class Recorded:
    """Jobs that only remember what was enqueued."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, str, dict]] = []

    def enqueue(self, name: str, *, job_id: str, **kwargs) -> None:
        self.jobs.append((name, job_id, kwargs))

    def close(self) -> None:
        pass


def test_schedule_enqueues_one_deterministic_job_per_out_of_date_report(relais, world, answered, issuer):
    did, sid = answered["dossier_id"], answered["send_id"]
    jobs = Recorded()
    assert schedule(relais, jobs, did) == [sid]
    version = relais.load(Dossier, did, "télédossier").version
    assert jobs.jobs == [("issue_report", f"report:{did}:{sid}:v{version}", {"dossier_id": did, "send_id": sid})]
    issuer.issue(did, sid)
    assert schedule(relais, jobs, did) == [] and len(jobs.jobs) == 1


def test_the_form_answers_and_a_forward_are_in_the_report(relais, world, issuer):
    from tests.application.test_forms import stroke_raw

    did = relais.create_dossier(actor_id=world["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                                urgency="stat", consent="given", imaging_source="none", **PATIENT)
    relais.answer_form(dossier_id=did, actor_id=world["requester"], raw=stroke_raw())
    sid = relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"],
                                   service_id=world["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=world["requester"])
    relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=sid)
    relais.forward(dossier_id=did, actor_id=world["recipient"], send_id=sid, to_establishment_id=world["montpellier"],
                   to_practitioner_id=world["outsider"], note="Astreinte de nuit")
    relais.accept(dossier_id=did, actor_id=world["outsider"], send_id=sid)
    relais.give_opinion(dossier_id=did, actor_id=world["outsider"], send_id=sid, report="Pas de thrombectomie.")
    text = flat(pdf_text(issuer.blobs.path(issuer.issue(did, sid)["sha256"]).read_bytes()))
    assert "Formulaire" in text and "NIHSS" in text and " 9 " in f" {text} "  # the stroke form's answers
    assert "demande transférée à CHU de Montpellier" in text and "Luc PETIT" in text and "Astreinte de nuit" in text
    assert f"Professionnel requis (avis) Luc PETIT — RPPS {rpps(3)}" in text


def test_an_imaging_transfer_has_its_report_once_the_receipt_is_acknowledged(relais, world, issuer):
    did = relais.create_dossier(actor_id=world["requester"], workflow="imaging_transfer", question="Transfert pour avis",
                                urgency="routine", consent="given", **PATIENT)
    sid = relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"],
                                   service_id=world["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=world["requester"])
    with pytest.raises(NoReportError):
        issuer.issue(did, sid)
    relais.acknowledge_receipt(dossier_id=did, actor_id=world["recipient"], send_id=sid, note="Importé dans notre PACS")
    assert [s for s, _ in relais.reports_due(dossier_id=did)] == [sid]
    text = flat(pdf_text(issuer.blobs.path(issuer.issue(did, sid)["sha256"]).read_bytes()))
    assert "Réception de l'imagerie" in text and "Importé dans notre PACS" in text and "Réception accusée par Paul DURAND" in text


def test_an_mdt_decision_reports_the_participants_present_with_their_rpps(relais, rcp, issuer):  # noqa: F811
    for who, specialty in zip([rcp["coordinator"], *rcp["others"]], ["néphrologie", "urologie", "immunologie"], strict=False):
        attend(relais, rcp, who, specialty)
    relais.record_mdt_decision(session_id=rcp["session_id"], dossier_id=rcp["dossier_id"], actor_id=rcp["coordinator"],
                               decision="Inscription sur liste d'attente", proposal="Inscrire le patient")
    text = flat(pdf_text(issuer.blobs.path(issuer.issue(rcp["dossier_id"], rcp["send_id"])["sha256"]).read_bytes()))
    assert "Avis de la réunion de concertation pluridisciplinaire" in text and "Inscription sur liste d'attente" in text
    assert f"Sophie BERNARD, RPPS {rpps(22)}, néphrologie" in text and f"RPPS {rpps(23)}, urologie" in text


def test_retrieves_and_exports_that_did_not_complete_are_technical_incidents(relais, world, settings, sent_dossier, issuer,
                                                                            tmp_path):
    from tests.web.test_access_trace import _study

    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    study = _study(relais, settings, world["toulouse"], tmp_path / "ct", "ACC1")
    relais.attach_received_study(dossier_id=did, actor_id=world["requester"], study_id=study["study_id"])
    relais.record_retrieve(establishment_id=world["toulouse"], study_instance_uid=study["study_uid"], patient={}, study={},
                           dossier_id=did, node_aet="TLSE_PACS", method="c-move", status="incomplete",
                           reason="association interrompue", expected=4, received=2)
    relais.record_export(study_id=study["study_id"], dossier_id=did, node_aet="MTP_PACS", status="failed", sent=0, total=2,
                         failures=[], actor={"practitioner_id": world["recipient"], "role": "clinician"})
    relais.record_export(study_id=study["study_id"], dossier_id=did, node_aet="MTP_PACS", status="completed", sent=2,
                         total=2, failures=[], actor={"practitioner_id": world["recipient"], "role": "clinician"})
    relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=sid)
    relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=sid, report="Pas d'indication.")
    text = flat(pdf_text(issuer.blobs.path(issuer.issue(did, sid)["sha256"]).read_bytes()))
    assert "depuis TLSE_PACS incomplète (2 sur 4 images) : association interrompue" in text
    assert "vers MTP_PACS en échec (0 sur 2 images transmises)" in text
    assert text.count("MTP_PACS") == 1  # the completed export is no incident
    assert "1 examen d'imagerie" in text and "2 images" in text


def test_an_escalation_past_the_accept_deadline_is_a_technical_incident(settings, tmp_path):
    from datetime import UTC, datetime, timedelta

    from tests.application.test_deadlines import send_stroke, stroke_world
    from tests.clock import Clock

    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    app = Relais(env=settings.eventsourcing_env(), clock=clock)
    try:
        w = stroke_world.__wrapped__(app)  # type: ignore[attr-defined]
        did, sid = send_stroke(app, w)
        clock.now += timedelta(minutes=10, seconds=1)
        app.escalate_overdue(dossier_id=did, send_id=sid)
        app.accept(dossier_id=did, actor_id=w["on_call"], send_id=sid)
        app.give_opinion(dossier_id=did, actor_id=w["on_call"], send_id=sid, report="Thrombectomie indiquée.")
        issuer = ReportIssuer(app, BlobStore(tmp_path), report_html.render)
        text = flat(pdf_text(issuer.blobs.path(issuer.issue(did, sid)["sha256"]).read_bytes()))
    finally:
        app.close()
    assert ("délai de prise en charge dépassé : demande confiée aussi à CHU de Montpellier (FINESS 340780477) — "
            "service Astreinte neuroradiologie") in text
    assert f"Professionnel requis (avis) Inès ROUX — RPPS {rpps(13)}" in text
