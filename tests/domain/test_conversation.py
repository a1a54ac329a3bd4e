"""After sending: the thread of a send, a complement answered with documents, milestones, an imaging
transfer's receipt, the report PDF's record — each command's rules, and what a refused one leaves (nothing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from application import Relais
from application.errors import ForbiddenError
from domain.dossier import Dossier
from domain.errors import (
    DossierClosedError,
    DossierStateError,
    InvalidFieldError,
    NotAllowedError,
    SendStateError,
    UnknownDocumentError,
)
from tests.conftest import PATIENT
from tests.domain.test_dossier_lifecycle import SHA, event_names, refused, send_state, state


@pytest.fixture()
def relais():
    app = Relais(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


def _document(relais: Relais, world: dict, did: str, name: str = "bilan.pdf") -> str:
    return relais.attach_document(dossier_id=did, actor_id=world["requester"], filename=name,
                                  media_type="application/pdf", size=10, sha256=SHA)


def _aggregate(relais: Relais, did: str) -> Dossier:
    return relais.repository.get(UUID(did))


def test_both_sides_of_a_send_post_messages_pointing_to_the_dossiers_documents(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    doc = _document(relais, world, did)
    relais.post_message(dossier_id=did, actor_id=world["requester"], send_id=sid, message="Bilan joint", document_ids=[doc])
    relais.post_message(dossier_id=did, actor_id=world["recipient"], send_id=sid, message="Merci, je regarde.")
    posted = [e for e in relais.events.get(UUID(did)) if isinstance(e, Dossier.MessagePosted)]
    assert [(e.text, e.document_ids) for e in posted] == [("Bilan joint", [doc]), ("Merci, je regarde.", [])]
    assert posted[1].actor["practitioner_id"] != posted[0].actor["practitioner_id"]


def test_a_message_is_refused_to_a_third_party_before_sending_empty_or_pointing_elsewhere(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    refused(relais, did, ForbiddenError, lambda: relais.post_message(
        dossier_id=did, actor_id=world["outsider"], send_id=sid, message="Je passe par là"))
    refused(relais, did, InvalidFieldError, lambda: relais.post_message(
        dossier_id=did, actor_id=world["requester"], send_id=sid, message="   "))
    refused(relais, did, UnknownDocumentError, lambda: relais.post_message(
        dossier_id=did, actor_id=world["requester"], send_id=sid, message="voir", document_ids=["not-ours"]))
    refused(relais, did, InvalidFieldError, lambda: relais.post_message(
        dossier_id=did, actor_id=world["requester"], send_id=sid, message="voir", study_uids=["1.2.3"]))
    draft = relais.create_dossier(actor_id=world["requester"], workflow="generic_opinion", question="Q ?",
                                  consent="given", **PATIENT)
    pending = relais.address_recipient(dossier_id=draft, actor_id=world["requester"],
                                       establishment_id=world["montpellier"], service_id=world["neuro"])
    refused(relais, draft, SendStateError, lambda: relais.post_message(
        dossier_id=draft, actor_id=world["requester"], send_id=pending, message="Bonjour"))


def test_a_complement_is_answered_with_a_document_and_the_send_resumes(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.request_complement(dossier_id=did, actor_id=world["recipient"], send_id=sid, message="La créatinine ?")
    doc = _document(relais, world, did, "creatinine.pdf")
    relais.answer_complement(dossier_id=did, actor_id=world["requester"], send_id=sid, document_ids=[doc])
    provided = [e for e in relais.events.get(UUID(did)) if isinstance(e, Dossier.ComplementProvided)]
    assert (provided[0].message, provided[0].document_ids) == ("", [doc])
    assert send_state(relais, did, sid) == "in_progress"


def test_a_complement_answer_needs_something(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.request_complement(dossier_id=did, actor_id=world["recipient"], send_id=sid, message="La créatinine ?")
    refused(relais, did, InvalidFieldError, lambda: relais.answer_complement(
        dossier_id=did, actor_id=world["requester"], send_id=sid, message=" "))


def test_form_answers_keep_the_version_the_dossier_started_with(relais, world):
    did = relais.create_dossier(actor_id=world["requester"], workflow="stroke_opinion", question="Q ?",
                                consent="given", **PATIENT)
    actor = relais.actor_for(practitioner_id=world["requester"])
    d = _aggregate(relais, did)
    now = datetime.now(UTC)
    d.answer_form(form={"id": "stroke", "version": 1}, answers={"nihss": 12}, actor=actor, occurred_at=now)
    d.answer_form(form={"id": "stroke", "version": 1}, answers={"nihss": 12}, actor=actor, occurred_at=now)  # same: nothing
    assert [type(e).__name__ for e in d.collect_events()] == ["FormAnswered"]
    with pytest.raises(InvalidFieldError):
        d.answer_form(form={"id": "stroke", "version": 2}, answers={"nihss": 3}, actor=actor, occurred_at=now)
    assert d.form == {"id": "stroke", "version": 1, "answers": {"nihss": 12}}


def test_milestones_are_recorded_by_the_requester_side_in_the_past(relais, world, sent_dossier):
    did = sent_dossier["dossier_id"]
    door = datetime.now(UTC) - timedelta(minutes=40)
    relais.record_milestone(dossier_id=did, actor_id=world["requester"], milestone="door", at=door)
    assert _aggregate(relais, did).milestones == {"door": door.isoformat()}
    refused(relais, did, InvalidFieldError, lambda: relais.record_milestone(
        dossier_id=did, actor_id=world["requester"], milestone="opinion", at=door))
    refused(relais, did, InvalidFieldError, lambda: relais.record_milestone(
        dossier_id=did, actor_id=world["requester"], milestone="decision", at=datetime.now(UTC) + timedelta(hours=1)))
    refused(relais, did, NotAllowedError, lambda: relais.record_milestone(
        dossier_id=did, actor_id=world["recipient"], milestone="decision", at=door))


def _transfer(relais: Relais, world: dict) -> tuple[str, str]:
    did = relais.create_dossier(actor_id=world["requester"], workflow="imaging_transfer", question="Pour votre PACS",
                                consent="given", **PATIENT)
    sid = relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"],
                                   service_id=world["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=world["requester"])
    return did, sid


def test_an_imaging_transfer_closes_on_acknowledgement(relais, world):
    did, sid = _transfer(relais, world)
    relais.acknowledge_receipt(dossier_id=did, actor_id=world["recipient"], send_id=sid, note="Importé dans le PACS")
    assert event_names(relais, did)[-2:] == ["ReceiptAcknowledged", "Closed"]
    assert (send_state(relais, did, sid), state(relais, did)) == ("answered", "closed")
    refused(relais, did, DossierClosedError, lambda: relais.acknowledge_receipt(
        dossier_id=did, actor_id=world["recipient"], send_id=sid))


def test_only_an_imaging_transfers_recipient_acknowledges(relais, world, sent_dossier):
    did, sid = _transfer(relais, world)
    refused(relais, did, ForbiddenError, lambda: relais.acknowledge_receipt(
        dossier_id=did, actor_id=world["outsider"], send_id=sid))
    stroke, ssid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    refused(relais, stroke, DossierStateError, lambda: relais.acknowledge_receipt(
        dossier_id=stroke, actor_id=world["recipient"], send_id=ssid))


def test_a_report_is_recorded_only_once_an_opinion_is_given(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    report = {"report_id": "r1", "sha256": SHA, "size": 1234, "media_type": "application/pdf"}
    refused(relais, did, SendStateError, lambda: relais.issue_report(dossier_id=did, send_id=sid, report=report))
    relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=sid, report="RAS", conclusion="Pas de thrombectomie")
    relais.issue_report(dossier_id=did, send_id=sid, report=report)
    reports = _aggregate(relais, did).sends[sid]["reports"]
    assert [(r["report_id"], r["sha256"]) for r in reports] == [("r1", SHA)]
    refused(relais, did, InvalidFieldError, lambda: relais.issue_report(
        dossier_id=did, send_id=sid, report={"report_id": "r2", "media_type": "application/pdf"}))


def test_a_dossiers_details_carry_its_thread_and_milestones_for_every_reader(relais, world, sent_dossier):
    """`get_dossier` (the untraced read of pages that trace their own) gave an empty thread and no milestones."""
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.post_message(dossier_id=did, actor_id=world["requester"], send_id=sid, message="Le scanner est parti")
    door = datetime.now(UTC) - timedelta(minutes=30)
    relais.record_milestone(dossier_id=did, actor_id=world["requester"], milestone="door", at=door)
    for reader in ("requester", "recipient"):
        d = relais.get_dossier(dossier_id=did, actor_id=world[reader])
        assert [(m["kind"], m["text"]) for m in d.messages] == [("message", "Le scanner est parti")]
        assert {m.code: m.at for m in d.milestones}["door"] == door
