"""The dossier lifecycle, through the application on real PostgreSQL and on the aggregate itself
(one module for one aggregate's lifecycle, as long as the lifecycle).

Every refused command must leave the aggregate's version and the event store untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from application import Relais
from application.errors import ForbiddenError
from domain.dossier import Dossier
from domain.errors import (
    ConsentMissingError,
    DossierClosedError,
    DossierNotDraftError,
    DossierStateError,
    InvalidFieldError,
    NotAllowedError,
    SendStateError,
    UnknownSendError,
)
from domain.values import Actor
from entrypoints.bootstrap import build_app
from tests.conftest import PATIENT, rpps

SHA = "ab" * 32


# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture()
def relais(request):
    """In-memory store for speed; real PostgreSQL for tests parametrized with `ON_POSTGRES`."""
    if getattr(request, "param", None) == "postgres":
        app = build_app(request.getfixturevalue("settings"))
    else:
        app = Relais(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


ON_POSTGRES = pytest.mark.parametrize("relais", ["postgres"], indirect=True)


def event_names(relais: Relais, dossier_id: str) -> list[str]:
    return [type(e).__name__ for e in relais.events.get(UUID(dossier_id))]


def version_of(relais: Relais, dossier_id: str) -> int:
    return relais.repository.get(UUID(dossier_id)).version


def refused(relais: Relais, dossier_id: str, error: type[Exception], action: Callable[[], object]) -> Exception:
    """Runs `action`, expects exactly `error` (or a subclass), and checks nothing was recorded."""
    before_version = version_of(relais, dossier_id)
    before_position = relais.max_position()
    with pytest.raises(error) as e:
        action()
    assert version_of(relais, dossier_id) == before_version
    assert relais.max_position() == before_position
    return e.value


def send_state(relais: Relais, dossier_id: str, send_id: str) -> str:
    return relais.repository.get(UUID(dossier_id)).sends[send_id]["state"]


def state(relais: Relais, dossier_id: str) -> str:
    return str(relais.repository.get(UUID(dossier_id)).state)


def new_dossier(relais: Relais, world: dict, **overrides) -> str:
    args = dict(
        actor_id=world["requester"], workflow="generic_opinion", question="Avis sur cette IRM ?",
        urgency="routine", consent="given", **PATIENT,
    )
    args.update(overrides)
    return relais.create_dossier(**args)


@pytest.fixture()
def more(relais: Relais, world: dict) -> dict:
    """A second recipient establishment (Nîmes, its radiology), a neuroradiology colleague, an on-call team."""
    nimes = relais.add_establishment(finess="300780038", name="CHU de Nîmes", department="30")
    radio = relais.add_service(establishment_id=nimes, code="radio", name="Radiologie")
    nimes_doc = relais.add_practitioner(
        rpps=rpps(10), family_name="Garcia", given_name="Inès", establishment_id=nimes, roles=["clinician"],
        service_ids=[radio],
    )
    oncall = relais.add_service(
        establishment_id=world["montpellier"], code="astreinte-neuro", name="Astreinte neuro", kind="on_call_pool"
    )
    colleague = relais.add_practitioner(
        rpps=rpps(11), family_name="Moreau", given_name="Julie", establishment_id=world["montpellier"],
        roles=["clinician"], service_ids=[world["neuro"]],
    )
    oncall_doc = relais.add_practitioner(
        rpps=rpps(12), family_name="Roux", given_name="Hugo", establishment_id=world["montpellier"],
        roles=["clinician"], service_ids=[oncall],
    )
    return {"nimes": nimes, "radio": radio, "nimes_doc": nimes_doc, "colleague": colleague,
            "oncall": oncall, "oncall_doc": oncall_doc}


# ------------------------------------------------------------------ the whole lifecycle


@ON_POSTGRES
def test_whole_lifecycle(relais, world):
    req, rec = world["requester"], world["recipient"]
    did = new_dossier(relais, world, workflow="stroke_opinion", urgency="stat")
    d = relais.get_dossier(dossier_id=did, actor_id=req)
    assert (d.state, d.version, d.first_sent_on, d.sends) == ("draft", 1, None, ())
    assert d.number.startswith("TD-") and len(d.number) == 13
    assert d.requester == {"establishment_id": world["toulouse"], "practitioner_id": req, "service_id": None}
    assert d.patient["birth_name"] == "DUPONT"

    sid = relais.address_recipient(
        dossier_id=did, actor_id=req, establishment_id=world["montpellier"], service_id=world["neuro"]
    )
    assert state(relais, did) == "draft"
    assert send_state(relais, did, sid) == "pending"
    # not sent yet: the recipient cannot see it
    with pytest.raises(ForbiddenError):
        relais.get_dossier(dossier_id=did, actor_id=rec)

    relais.send_dossier(dossier_id=did, actor_id=req)
    assert state(relais, did) == "requested"
    assert send_state(relais, did, sid) == "requested"

    relais.accept(dossier_id=did, actor_id=rec, send_id=sid)
    d = relais.get_dossier(dossier_id=did, actor_id=rec)
    assert d.state == "in_progress"
    assert d.sends[0]["state"] == "in_progress"
    assert d.sends[0]["accepted_by"] == rec

    relais.request_complement(dossier_id=did, actor_id=rec, send_id=sid, message="Séquence FLAIR manquante")
    assert send_state(relais, did, sid) == "on_hold"
    assert state(relais, did) == "in_progress"

    # while a complement is pending the requester may add documents (not otherwise, see below)
    doc = relais.attach_document(
        dossier_id=did, actor_id=req, filename="flair.pdf", media_type="application/pdf", size=10, sha256=SHA
    )
    relais.provide_complement(dossier_id=did, actor_id=req, send_id=sid, message="FLAIR jointe")
    assert send_state(relais, did, sid) == "in_progress"

    relais.give_opinion(
        dossier_id=did, actor_id=rec, send_id=sid, report="Occlusion M1 gauche.", conclusion="Thrombectomie"
    )
    d = relais.get_dossier(dossier_id=did, actor_id=req)
    assert d.state == "answered"
    assert d.sends[0]["state"] == "answered"
    assert d.sends[0]["opinion"] == {
        "report": "Occlusion M1 gauche.", "conclusion": "Thrombectomie", "recommendations": "", "follow_up": "", "by": rec
    }
    assert d.sends[0]["answered_on"] is not None
    assert [x["document_id"] for x in d.documents] == [doc]

    relais.close_dossier(dossier_id=did, actor_id=req, note="Patient transféré")
    d = relais.get_dossier(dossier_id=did, actor_id=req)
    assert d.state == "closed"
    assert d.sends[0]["state"] == "answered"  # an answered send stays answered
    assert d.version == 9
    assert event_names(relais, did) == [
        "Created", "RecipientAddressed", "Sent", "Accepted", "ComplementRequested", "DocumentAttached",
        "ComplementProvided", "OpinionGiven", "Closed",
    ]


def test_opinion_can_be_given_without_explicit_accept(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=sid, report="RAS")
    assert send_state(relais, did, sid) == "answered"
    assert state(relais, did) == "answered"


def test_opinion_refused_while_complement_pending(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.request_complement(dossier_id=did, actor_id=world["recipient"], send_id=sid, message="Scanner ?")
    refused(relais, did, SendStateError, lambda: relais.give_opinion(
        dossier_id=did, actor_id=world["recipient"], send_id=sid, report="RAS"))
    refused(relais, did, SendStateError, lambda: relais.accept(
        dossier_id=did, actor_id=world["recipient"], send_id=sid))


def test_provide_complement_refused_when_none_requested(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    refused(relais, did, SendStateError, lambda: relais.provide_complement(
        dossier_id=did, actor_id=world["requester"], send_id=sid, message="tenez"))


def test_documents_may_be_added_after_sending_by_the_requester_only(relais, world, sent_dossier):
    """A result arriving after sending joins the dossier as an event of its own (it used to be refused
    unless a complement was requested); the recipient does not add documents to the requester's dossier."""
    did = sent_dossier["dossier_id"]
    doc = relais.attach_document(dossier_id=did, actor_id=world["requester"], filename="bio.pdf",
                                 media_type="application/pdf", size=1, sha256=SHA)
    assert doc in {d["document_id"] for d in relais.get_dossier(dossier_id=did, actor_id=world["requester"]).documents}
    refused(relais, did, NotAllowedError, lambda: relais.attach_document(
        dossier_id=did, actor_id=world["recipient"], filename="b.pdf", media_type="application/pdf", size=1, sha256=SHA))
    refused(relais, did, DossierNotDraftError, lambda: relais.remove_document(
        dossier_id=did, actor_id=world["requester"], document_id=doc))


def test_imaging_may_arrive_after_sending(relais, world, sent_dossier):
    did = sent_dossier["dossier_id"]
    relais.attach_imaging(dossier_id=did, actor_id=world["requester"], study_instance_uid="1.2.3", source="file_import")
    relais.attach_imaging(dossier_id=did, actor_id=None, study_instance_uid="1.2.4", source="dicom_store")
    assert {s["study_instance_uid"] for s in relais.get_dossier(dossier_id=did, actor_id=world["requester"]).imaging} == {
        "1.2.3", "1.2.4"}
    relais.cancel_dossier(dossier_id=did, actor_id=world["requester"], reason="Doublon")
    refused(relais, did, DossierClosedError, lambda: relais.attach_imaging(
        dossier_id=did, actor_id=None, study_instance_uid="1.2.5", source="dicom_store"))


def test_close_refused_while_requests_pending_and_no_answer(relais, world, sent_dossier):
    did = sent_dossier["dossier_id"]
    err = refused(relais, did, DossierStateError, lambda: relais.close_dossier(
        dossier_id=did, actor_id=world["requester"]))
    assert type(err) is DossierStateError


def test_draft_cannot_be_closed_only_cancelled(relais, world):
    did = new_dossier(relais, world)
    err = refused(relais, did, DossierStateError, lambda: relais.close_dossier(dossier_id=did, actor_id=world["requester"]))
    assert type(err) is DossierStateError
    relais.cancel_dossier(dossier_id=did, actor_id=world["requester"], reason="Doublon")
    assert state(relais, did) == "cancelled"


# ------------------------------------------------------------------ cancel


@ON_POSTGRES
def test_cancel_before_answer(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=sid)
    relais.cancel_dossier(dossier_id=did, actor_id=world["requester"], reason="Patient décédé")
    d = relais.get_dossier(dossier_id=did, actor_id=world["requester"])
    assert d.state == "cancelled"
    assert d.sends[0]["state"] == "cancelled"
    assert event_names(relais, did)[-1] == "Cancelled"
    refused(relais, did, DossierClosedError, lambda: relais.give_opinion(
        dossier_id=did, actor_id=world["recipient"], send_id=sid, report="trop tard"))


def test_cancel_refused_after_an_answer(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=sid, report="Avis")
    err = refused(relais, did, DossierStateError, lambda: relais.cancel_dossier(
        dossier_id=did, actor_id=world["requester"], reason="oups"))
    assert type(err) is DossierStateError


def test_cancel_requires_a_reason(relais, world, sent_dossier):
    did = sent_dossier["dossier_id"]
    err = refused(relais, did, InvalidFieldError, lambda: relais.cancel_dossier(
        dossier_id=did, actor_id=world["requester"], reason="  "))
    assert err.field == "reason"


# ------------------------------------------------------------------ decline


@pytest.mark.parametrize("reason_code", ["not_competent", "insufficient_information", "unavailable", "redirected"])
def test_decline_with_reason_code(relais, world, sent_dossier, reason_code):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.decline(dossier_id=did, actor_id=world["recipient"], send_id=sid, reason_code=reason_code)
    d = relais.get_dossier(dossier_id=did, actor_id=world["requester"])
    assert d.state == "declined"
    assert d.sends[0]["state"] == "declined"
    assert d.sends[0]["decline"] == {"reason_code": reason_code, "reason": ""}
    (declined,) = [e for e in relais.events.get(UUID(did)) if type(e) is Dossier.Declined]
    assert declined.reason_code == reason_code


@ON_POSTGRES
def test_decline_other_requires_text(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    err = refused(relais, did, InvalidFieldError, lambda: relais.decline(
        dossier_id=did, actor_id=world["recipient"], send_id=sid, reason_code="other"))
    assert err.field == "reason"
    err = refused(relais, did, InvalidFieldError, lambda: relais.decline(
        dossier_id=did, actor_id=world["recipient"], send_id=sid, reason_code="other", reason="   "))
    assert err.field == "reason"
    relais.decline(dossier_id=did, actor_id=world["recipient"], send_id=sid, reason_code="other",
                   reason="Matériel en panne")
    assert relais.repository.get(UUID(did)).sends[sid]["decline"] == {"reason_code": "other", "reason": "Matériel en panne"}


def test_decline_unknown_reason_code(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    err = refused(relais, did, InvalidFieldError, lambda: relais.decline(
        dossier_id=did, actor_id=world["recipient"], send_id=sid, reason_code="bored", reason="x"))
    assert err.field == "reason_code"


def test_decline_after_accept_then_nothing_more(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=sid)
    relais.decline(dossier_id=did, actor_id=world["recipient"], send_id=sid, reason_code="not_competent")
    assert send_state(relais, did, sid) == "declined"
    for action in (
        lambda: relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=sid),
        lambda: relais.decline(dossier_id=did, actor_id=world["recipient"], send_id=sid, reason_code="unavailable"),
        lambda: relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=sid, report="x"),
        lambda: relais.request_complement(dossier_id=did, actor_id=world["recipient"], send_id=sid, message="x"),
    ):
        refused(relais, did, SendStateError, action)


def test_declined_dossier_can_be_closed(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.decline(dossier_id=did, actor_id=world["recipient"], send_id=sid, reason_code="unavailable")
    relais.close_dossier(dossier_id=did, actor_id=world["requester"])
    d = relais.get_dossier(dossier_id=did, actor_id=world["requester"])
    assert (d.state, d.sends[0]["state"]) == ("closed", "declined")


# ------------------------------------------------------------------ forward


@ON_POSTGRES
def test_forward_to_a_colleague_who_accepts(relais, world, more, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    rec, colleague = world["recipient"], more["colleague"]
    relais.accept(dossier_id=did, actor_id=rec, send_id=sid)
    relais.forward(dossier_id=did, actor_id=rec, send_id=sid, to_practitioner_id=colleague, note="Tu connais ce patient")
    send = relais.repository.get(UUID(did)).sends[sid]
    assert send["state"] == "requested"  # the new assignee must accept
    assert (send["establishment_id"], send["service_id"], send["practitioner_id"]) == (
        world["montpellier"], None, colleague)
    assert state(relais, did) == "requested"

    # the previous assignee is no longer a recipient: the application hides the dossier...
    refused(relais, did, ForbiddenError, lambda: relais.accept(dossier_id=did, actor_id=rec, send_id=sid))
    refused(relais, did, ForbiddenError, lambda: relais.give_opinion(
        dossier_id=did, actor_id=rec, send_id=sid, report="x"))

    relais.accept(dossier_id=did, actor_id=colleague, send_id=sid)
    send = relais.repository.get(UUID(did)).sends[sid]
    assert (send["state"], send["accepted_by"]) == ("in_progress", colleague)
    relais.give_opinion(dossier_id=did, actor_id=colleague, send_id=sid, report="Avis du confrère")
    assert relais.repository.get(UUID(did)).sends[sid]["opinion"]["by"] == colleague
    assert event_names(relais, did)[3:] == ["Accepted", "Forwarded", "Accepted", "OpinionGiven"]


def test_forward_to_another_team(relais, world, more, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.forward(dossier_id=did, actor_id=world["recipient"], send_id=sid, to_service_id=more["oncall"])
    refused(relais, did, ForbiddenError, lambda: relais.accept(
        dossier_id=did, actor_id=more["colleague"], send_id=sid))  # neuro, not on call
    relais.accept(dossier_id=did, actor_id=more["oncall_doc"], send_id=sid)
    assert send_state(relais, did, sid) == "in_progress"


def test_previous_assignee_not_allowed_at_domain_level():
    """On the aggregate itself, the previous assignee gets NotAllowedError."""
    d, actors, sid = sent_aggregate()
    d.forward(send_id=sid, to={"establishment_id": "mtp", "service_id": None, "practitioner_id": "colleague"},
              note="", actor=actors["recipient"], occurred_at=T0 + timedelta(minutes=10))
    d.collect_events()
    version = d.version
    with pytest.raises(NotAllowedError):
        d.accept(send_id=sid, actor=actors["recipient"], occurred_at=T0 + timedelta(minutes=10))
    assert d.version == version and d.collect_events() == []
    colleague = Actor(practitioner_id="colleague", role="clinician", establishment_id="mtp", service_ids=("neuro",))
    d.accept(send_id=sid, actor=colleague, occurred_at=T0 + timedelta(minutes=10))
    assert d.sends[sid]["state"] == "in_progress"


def test_forward_to_same_recipient_or_nobody_refused(relais, world, more, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    err = refused(relais, did, InvalidFieldError, lambda: relais.forward(
        dossier_id=did, actor_id=world["recipient"], send_id=sid, to_service_id=world["neuro"]))
    assert err.field == "to"
    err = refused(relais, did, InvalidFieldError, lambda: relais.forward(
        dossier_id=did, actor_id=world["recipient"], send_id=sid))
    assert err.field == "to"


def test_forward_to_someone_not_working_there_refused(relais, world, more, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    err = refused(relais, did, InvalidFieldError, lambda: relais.forward(
        dossier_id=did, actor_id=world["recipient"], send_id=sid, to_practitioner_id=more["nimes_doc"]))
    assert err.field == "to_practitioner_id"
    err = refused(relais, did, InvalidFieldError, lambda: relais.forward(
        dossier_id=did, actor_id=world["recipient"], send_id=sid, to_service_id=more["radio"]))
    assert err.field == "to_service_id"


# ------------------------------------------------------------------ several recipients


@ON_POSTGRES
def test_several_recipients_summarised_state(relais, world, more):
    req = world["requester"]
    did = new_dossier(relais, world)
    mtp = relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=world["montpellier"],
                                   service_id=world["neuro"])
    nim = relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=more["nimes"],
                                   service_id=more["radio"])
    relais.send_dossier(dossier_id=did, actor_id=req)
    assert (state(relais, did), send_state(relais, did, mtp), send_state(relais, did, nim)) == (
        "requested", "requested", "requested")

    relais.decline(dossier_id=did, actor_id=more["nimes_doc"], send_id=nim, reason_code="unavailable")
    assert state(relais, did) == "requested"  # one declined, one still requested

    relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=mtp)
    assert state(relais, did) == "in_progress"

    relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=mtp, report="Avis")
    assert state(relais, did) == "answered"  # answered + declined
    d = relais.get_dossier(dossier_id=did, actor_id=req)
    assert {s["send_id"]: s["state"] for s in d.sends} == {mtp: "answered", nim: "declined"}


def test_several_recipients_one_answered_one_requested_is_in_progress(relais, world, more):
    req = world["requester"]
    did = new_dossier(relais, world)
    mtp = relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=world["montpellier"],
                                   service_id=world["neuro"])
    nim = relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=more["nimes"])
    relais.send_dossier(dossier_id=did, actor_id=req)
    relais.give_opinion(dossier_id=did, actor_id=more["nimes_doc"], send_id=nim, report="Avis de Nîmes")
    assert state(relais, did) == "in_progress"
    # closing with one answer closes the other, still requested, send
    relais.close_dossier(dossier_id=did, actor_id=req)
    d = relais.repository.get(UUID(did))
    assert (d.state, d.sends[mtp]["state"], d.sends[nim]["state"]) == ("closed", "closed", "answered")


def test_all_recipients_declined(relais, world, more):
    req = world["requester"]
    did = new_dossier(relais, world)
    mtp = relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=world["montpellier"],
                                   service_id=world["neuro"])
    nim = relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=more["nimes"])
    relais.send_dossier(dossier_id=did, actor_id=req)
    relais.decline(dossier_id=did, actor_id=world["recipient"], send_id=mtp, reason_code="not_competent")
    relais.decline(dossier_id=did, actor_id=more["nimes_doc"], send_id=nim, reason_code="redirected")
    assert state(relais, did) == "declined"


def test_a_recipient_cannot_answer_another_recipients_send(relais, world, more):
    req = world["requester"]
    did = new_dossier(relais, world)
    mtp = relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=world["montpellier"],
                                   service_id=world["neuro"])
    relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=more["nimes"])
    relais.send_dossier(dossier_id=did, actor_id=req)
    # Nîmes can read the dossier (it is a recipient) but the Montpellier send is not theirs
    relais.get_dossier(dossier_id=did, actor_id=more["nimes_doc"])
    refused(relais, did, NotAllowedError, lambda: relais.accept(dossier_id=did, actor_id=more["nimes_doc"], send_id=mtp))
    refused(relais, did, NotAllowedError, lambda: relais.give_opinion(
        dossier_id=did, actor_id=more["nimes_doc"], send_id=mtp, report="x"))


def test_duplicate_recipient_refused(relais, world, sent_dossier):
    did = sent_dossier["dossier_id"]
    err = refused(relais, did, InvalidFieldError, lambda: relais.address_recipient(
        dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"], service_id=world["neuro"]))
    assert err.field == "recipient"


def test_unknown_send_id(relais, world, sent_dossier):
    did = sent_dossier["dossier_id"]
    refused(relais, did, UnknownSendError, lambda: relais.accept(
        dossier_id=did, actor_id=world["recipient"], send_id="00000000-0000-0000-0000-000000000000"))


# ------------------------------------------------------------------ addressing after sending


@ON_POSTGRES
def test_add_recipient_after_sending_then_send_again(relais, world, more, sent_dossier):
    did, first = sent_dossier["dossier_id"], sent_dossier["send_id"]
    req = world["requester"]
    before = relais.repository.get(UUID(did))
    first_sent_on, first_send_sent_on = before.first_sent_on, before.sends[first]["sent_on"]

    second = relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=more["nimes"],
                                      service_id=more["radio"])
    assert send_state(relais, did, second) == "pending"
    assert state(relais, did) == "requested"
    with pytest.raises(ForbiddenError):  # not sent to Nîmes yet
        relais.get_dossier(dossier_id=did, actor_id=more["nimes_doc"])

    relais.send_dossier(dossier_id=did, actor_id=req)
    after = relais.repository.get(UUID(did))
    assert after.sends[second]["state"] == "requested"
    assert after.sends[first]["state"] == "requested"
    assert after.first_sent_on == first_sent_on
    assert after.sends[first]["sent_on"] == first_send_sent_on
    sent_events = [e for e in relais.events.get(UUID(did)) if type(e).__name__ == "Sent"]
    assert [e.send_ids for e in sent_events] == [[first], [second]]
    relais.get_dossier(dossier_id=did, actor_id=more["nimes_doc"])  # now readable

    err = refused(relais, did, DossierStateError, lambda: relais.send_dossier(dossier_id=did, actor_id=req))
    assert type(err) is DossierStateError


def test_pending_recipient_can_be_removed_but_not_a_sent_one(relais, world, more, sent_dossier):
    did, first = sent_dossier["dossier_id"], sent_dossier["send_id"]
    req = world["requester"]
    second = relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=more["nimes"])
    relais.remove_recipient(dossier_id=did, actor_id=req, send_id=second)
    assert second not in relais.repository.get(UUID(did)).sends
    refused(relais, did, SendStateError, lambda: relais.remove_recipient(dossier_id=did, actor_id=req, send_id=first))


def test_send_without_recipient_refused(relais, world):
    did = new_dossier(relais, world)
    err = refused(relais, did, DossierStateError, lambda: relais.send_dossier(dossier_id=did, actor_id=world["requester"]))
    assert type(err) is DossierStateError


# ------------------------------------------------------------------ consent


@pytest.mark.parametrize("consent", [None, "refused"])
@ON_POSTGRES
def test_consent_missing_or_refused_blocks_sending(relais, world, consent):
    req = world["requester"]
    did = new_dossier(relais, world, consent=consent)
    relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=world["montpellier"],
                             service_id=world["neuro"])
    refused(relais, did, ConsentMissingError, lambda: relais.send_dossier(dossier_id=did, actor_id=req))
    assert state(relais, did) == "draft"
    relais.record_consent(dossier_id=did, actor_id=req, status="given", note="Recueilli oralement")
    relais.send_dossier(dossier_id=did, actor_id=req)
    assert state(relais, did) == "requested"
    assert relais.repository.get(UUID(did)).consent["status"] == "given"


def test_consent_withdrawn_before_sending_blocks_sending(relais, world):
    req = world["requester"]
    did = new_dossier(relais, world, consent="given")
    relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=world["montpellier"])
    relais.record_consent(dossier_id=did, actor_id=req, status="refused")
    refused(relais, did, ConsentMissingError, lambda: relais.send_dossier(dossier_id=did, actor_id=req))


def test_unknown_consent_status(relais, world):
    did = new_dossier(relais, world, consent=None)
    err = refused(relais, did, InvalidFieldError, lambda: relais.record_consent(
        dossier_id=did, actor_id=world["requester"], status="maybe"))
    assert err.field == "consent"


# ------------------------------------------------------------------ editing


def test_draft_edit(relais, world):
    did = new_dossier(relais, world)
    doc = relais.attach_document(dossier_id=did, actor_id=world["requester"], filename="cr.pdf",
                                 media_type="application/pdf", size=3, sha256=SHA)
    relais.edit_draft(dossier_id=did, actor_id=world["requester"], question="Nouvelle question", urgency="urgent")
    relais.remove_document(dossier_id=did, actor_id=world["requester"], document_id=doc)
    d = relais.get_dossier(dossier_id=did, actor_id=world["requester"])
    assert (d.question, d.urgency, d.documents, d.version) == ("Nouvelle question", "urgent", (), 4)
    # an edit with no change records nothing
    assert relais.edit_draft(dossier_id=did, actor_id=world["requester"]) is None
    assert version_of(relais, did) == 4


@pytest.mark.parametrize(
    "action",
    [
        lambda r, w, did: r.edit_draft(dossier_id=did, actor_id=w["requester"], question="Autre question"),
        lambda r, w, did: r.edit_draft(dossier_id=did, actor_id=w["requester"], urgency="urgent"),
        lambda r, w, did: r.record_consent(dossier_id=did, actor_id=w["requester"], status="refused"),
        lambda r, w, did: r.remove_document(dossier_id=did, actor_id=w["requester"], document_id="x"),
    ],
    ids=["question", "urgency", "consent", "remove_document"],
)
def test_editing_a_sent_dossier_is_refused(relais, world, sent_dossier, action):
    did = sent_dossier["dossier_id"]
    err = refused(relais, did, DossierNotDraftError, lambda: action(relais, world, did))
    assert type(err) is DossierNotDraftError


# ------------------------------------------------------------------ closed dossier


@pytest.fixture()
def closed_dossier(relais, world, sent_dossier) -> dict:
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=sid, report="Avis")
    relais.close_dossier(dossier_id=did, actor_id=world["requester"])
    assert state(relais, did) == "closed"
    return sent_dossier


CLOSED_ACTIONS = {
    "edit": lambda r, w, did, sid: r.edit_draft(dossier_id=did, actor_id=w["requester"], question="?"),
    "consent": lambda r, w, did, sid: r.record_consent(dossier_id=did, actor_id=w["requester"], status="given"),
    "attach_document": lambda r, w, did, sid: r.attach_document(
        dossier_id=did, actor_id=w["requester"], filename="a.pdf", media_type="application/pdf", size=1, sha256=SHA),
    "remove_document": lambda r, w, did, sid: r.remove_document(dossier_id=did, actor_id=w["requester"], document_id="x"),
    "attach_imaging": lambda r, w, did, sid: r.attach_imaging(
        dossier_id=did, actor_id=w["requester"], study_instance_uid="1.2.3", source="dicom_store"),
    "attach_imaging_by_system": lambda r, w, did, sid: r.attach_imaging(
        dossier_id=did, actor_id=None, study_instance_uid="1.2.3", source="dicom_store"),
    "address": lambda r, w, did, sid: r.address_recipient(
        dossier_id=did, actor_id=w["requester"], establishment_id=w["toulouse"]),
    "send": lambda r, w, did, sid: r.send_dossier(dossier_id=did, actor_id=w["requester"]),
    "close": lambda r, w, did, sid: r.close_dossier(dossier_id=did, actor_id=w["requester"]),
    "cancel": lambda r, w, did, sid: r.cancel_dossier(dossier_id=did, actor_id=w["requester"], reason="x"),
    "provide_complement": lambda r, w, did, sid: r.provide_complement(
        dossier_id=did, actor_id=w["requester"], send_id=sid, message="x"),
    "accept": lambda r, w, did, sid: r.accept(dossier_id=did, actor_id=w["recipient"], send_id=sid),
    "decline": lambda r, w, did, sid: r.decline(
        dossier_id=did, actor_id=w["recipient"], send_id=sid, reason_code="unavailable"),
    "give_opinion": lambda r, w, did, sid: r.give_opinion(
        dossier_id=did, actor_id=w["recipient"], send_id=sid, report="encore"),
    "request_complement": lambda r, w, did, sid: r.request_complement(
        dossier_id=did, actor_id=w["recipient"], send_id=sid, message="x"),
    "forward": lambda r, w, did, sid: r.forward(
        dossier_id=did, actor_id=w["recipient"], send_id=sid, to_practitioner_id=w["outsider"]),
}


@pytest.mark.parametrize("name", sorted(CLOSED_ACTIONS))
def test_anything_on_a_closed_dossier_is_refused(relais, world, closed_dossier, name):
    did, sid = closed_dossier["dossier_id"], closed_dossier["send_id"]
    refused(relais, did, DossierClosedError, lambda: CLOSED_ACTIONS[name](relais, world, did, sid))


@pytest.mark.parametrize("name", ["edit", "attach_document", "address", "accept", "give_opinion", "cancel"])
def test_anything_on_a_cancelled_dossier_is_refused(relais, world, sent_dossier, name):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.cancel_dossier(dossier_id=did, actor_id=world["requester"], reason="Erreur de patient")
    refused(relais, did, DossierClosedError, lambda: CLOSED_ACTIONS[name](relais, world, did, sid))


# ------------------------------------------------------------------ who may answer


@pytest.mark.parametrize(
    "action",
    [
        lambda r, a, did, sid: r.accept(dossier_id=did, actor_id=a, send_id=sid),
        lambda r, a, did, sid: r.decline(dossier_id=did, actor_id=a, send_id=sid, reason_code="unavailable"),
        lambda r, a, did, sid: r.give_opinion(dossier_id=did, actor_id=a, send_id=sid, report="auto-avis"),
        lambda r, a, did, sid: r.request_complement(dossier_id=did, actor_id=a, send_id=sid, message="x"),
        lambda r, a, did, sid: r.forward(dossier_id=did, actor_id=a, send_id=sid, to_service_id=None),
    ],
    ids=["accept", "decline", "give_opinion", "request_complement", "forward"],
)
def test_requester_cannot_answer_own_send(relais, world, sent_dossier, action):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    refused(relais, did, NotAllowedError, lambda: action(relais, world["requester"], did, sid))


def test_outsider_cannot_answer(relais, world, sent_dossier):
    """Same establishment as the recipient, but not in its service: the application hides the dossier."""
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    refused(relais, did, ForbiddenError, lambda: relais.accept(dossier_id=did, actor_id=world["outsider"], send_id=sid))
    refused(relais, did, ForbiddenError, lambda: relais.give_opinion(
        dossier_id=did, actor_id=world["outsider"], send_id=sid, report="x"))
    with pytest.raises(ForbiddenError):
        relais.get_dossier(dossier_id=did, actor_id=world["outsider"])


def test_outsider_not_allowed_at_domain_level():
    d, actors, sid = sent_aggregate()
    version = d.version
    for command in (
        lambda a: d.accept(send_id=sid, actor=a, occurred_at=T0 + timedelta(minutes=10)),
        lambda a: d.decline(send_id=sid, reason_code="unavailable", reason="", actor=a, occurred_at=T0 + timedelta(minutes=10)),
        lambda a: d.give_opinion(send_id=sid, report="x", conclusion="", actor=a, occurred_at=T0 + timedelta(minutes=10)),
    ):
        for who in ("outsider", "requester"):
            with pytest.raises(NotAllowedError):
                command(actors[who])
    assert d.version == version and d.collect_events() == []


@pytest.mark.parametrize(
    "action",
    [
        lambda r, w, did, sid: r.send_dossier(dossier_id=did, actor_id=w["recipient"]),
        lambda r, w, did, sid: r.cancel_dossier(dossier_id=did, actor_id=w["recipient"], reason="x"),
        lambda r, w, did, sid: r.close_dossier(dossier_id=did, actor_id=w["recipient"]),
        lambda r, w, did, sid: r.address_recipient(
            dossier_id=did, actor_id=w["recipient"], establishment_id=w["toulouse"]),
        lambda r, w, did, sid: r.provide_complement(dossier_id=did, actor_id=w["recipient"], send_id=sid, message="x"),
    ],
    ids=["send", "cancel", "close", "address", "provide_complement"],
)
def test_recipient_cannot_do_requester_things(relais, world, sent_dossier, action):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    refused(relais, did, NotAllowedError, lambda: action(relais, world, did, sid))


def test_auditor_cannot_act(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    refused(relais, did, ForbiddenError, lambda: relais.accept(dossier_id=did, actor_id=world["auditor"], send_id=sid))
    refused(relais, did, ForbiddenError, lambda: relais.cancel_dossier(
        dossier_id=did, actor_id=world["auditor"], reason="x"))


# ------------------------------------------------------------------ the aggregate on its own

T0 = datetime(2025, 6, 2, 8, 30, tzinfo=UTC)


def sent_aggregate() -> tuple[Dossier, dict[str, Actor], str]:
    actors = {
        "requester": Actor(practitioner_id="req", role="clinician", establishment_id="tls"),
        "recipient": Actor(practitioner_id="rec", role="clinician", establishment_id="mtp", service_ids=("neuro",)),
        "outsider": Actor(practitioner_id="out", role="clinician", establishment_id="mtp"),
    }
    d = Dossier(
        workflow="stroke_opinion", requester={"establishment_id": "tls", "practitioner_id": "req", "service_id": None},
        patient={"birth_name": "DUPONT"}, question="?", urgency="stat",
        consent={"status": "given", "note": "", "occurred_at": T0.isoformat()}, imaging_source="none",
        actor=actors["requester"].as_dict(), occurred_at=T0, imported_from=None,
    )
    d.address(recipient={"send_id": "s1", "establishment_id": "mtp", "service_id": "neuro", "practitioner_id": None,
                         "region": "OCC", "department": "34", "channel": None},
              actor=actors["requester"], occurred_at=T0 + timedelta(minutes=1))
    d.send(actor=actors["requester"], occurred_at=T0 + timedelta(minutes=2))
    d.collect_events()
    return d, actors, "s1"


def test_aggregate_lifecycle_events_and_business_time():
    d, actors, sid = sent_aggregate()
    assert d.version == 3 and d.state == "requested"
    t = T0 + timedelta(minutes=5)
    d.accept(send_id=sid, actor=actors["recipient"], occurred_at=t)
    d.give_opinion(send_id=sid, report="r", conclusion="c", actor=actors["recipient"], occurred_at=t)
    d.close(note="", actor=actors["requester"], occurred_at=t)
    events = d.collect_events()
    assert [type(e).__name__ for e in events] == ["Accepted", "OpinionGiven", "Closed"]
    assert all(e.occurred_at == t for e in events)
    assert events[0].actor == actors["recipient"].as_dict()
    assert (d.state, d.closed_on, d.last_occurred_at, d.version) == ("closed", t, t, 6)


def test_aggregate_refusals_leave_no_pending_event():
    d, actors, sid = sent_aggregate()
    cases = [
        (DossierNotDraftError, lambda: d.edit(changes={"question": "x"}, actor=actors["requester"], occurred_at=T0)),
        (InvalidFieldError, lambda: d.decline(send_id=sid, reason_code="other", reason="", actor=actors["recipient"],
                                              occurred_at=T0)),
        (InvalidFieldError, lambda: d.decline(send_id=sid, reason_code="nope", reason="x", actor=actors["recipient"],
                                              occurred_at=T0)),
        (NotAllowedError, lambda: d.cancel(reason="x", actor=actors["recipient"], occurred_at=T0)),
        (UnknownSendError, lambda: d.accept(send_id="nope", actor=actors["recipient"], occurred_at=T0)),
        (InvalidFieldError, lambda: d.address(
            recipient={"send_id": "s2", "establishment_id": "paris", "region": "IDF", "department": "75"},
            actor=actors["requester"], occurred_at=T0)),
        (InvalidFieldError, lambda: d.address(
            recipient={"send_id": "s3", "establishment_id": "nimes", "region": "OCC", "department": "30",
                       "channel": "email_invitation"},
            actor=actors["requester"], occurred_at=T0)),
    ]
    for error, command in cases:
        with pytest.raises(error):
            command()
        assert d.version == 3
        assert d.collect_events() == []
    assert d.sends[sid]["state"] == "requested"
    assert set(d.sends) == {sid}
