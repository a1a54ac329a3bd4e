"""The Dossier aggregate (télédossier): its whole lifecycle as events, per-recipient sends.

Longer than the house's ~400 lines on purpose: it is one aggregate, whose commands, events and
invariants must be read together (a command checks, then calls the @event method that mutates).
Its events are declared classes (typed, topics pinned), listed first in lifecycle order. They stay
here: moved to a module of their own, Dossier.Sent would still resolve at run time but would no
longer be a type for mypy (a class attribute is not a type alias; annotated, it becomes a field of the
aggregate).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.deadlines import Deadline, DelaysOf
from domain.errors import (
    ConsentMissingError,
    DossierClosedError,
    DossierNotDraftError,
    DossierStateError,
    InvalidFieldError,
    NotAllowedError,
    SendStateError,
    UnknownDocumentError,
    UnknownSendError,
)
from domain.identifiers import OCCITANIE
from domain.values import (
    ACTIVE_SEND_STATES,
    CLOCK_SKEW,
    Actor,
    Channel,
    Consent,
    DossierState,
    ImagingSource,
    Json,
    Role,
    SendState,
    Urgency,
    Workflow,
)

SYSTEM_ROLE = "system"  # the platform itself (imports, DICOM node), never a person

DECLINE_REASONS = {
    "not_competent": "Hors du champ de compétence",
    "insufficient_information": "Informations insuffisantes",
    "unavailable": "Indisponible",
    "redirected": "Orienter vers un autre établissement",
    "other": "Autre motif",
}


MILESTONES = {
    "door": "Arrivée du patient",
    "imaging": "Imagerie disponible",
    "sent": "Demande envoyée",
    "accepted": "Prise en charge",
    "opinion": "Avis rendu",
    "decision": "Décision",
}
RECORDED_MILESTONES = ("door", "imaging", "decision")  # by a person; the others are their own events


FOLLOW_UPS = {
    "none": "Pas de suivi particulier",
    "scheduled": "Consultation programmée",
    "prompt": "Sous 48 heures",
    "immediate": "Immédiate (appel ou transfert)",
}


def summary_state(*, sent: bool, closed: bool, cancelled: bool, send_states: Iterable[str]) -> DossierState:
    """A dossier's state, from its own facts and its sends' states: the one rule (Dossier.state; the
    inbox read model uses it, and its SQL form is tested against it on every combination)."""
    if cancelled:
        return DossierState.CANCELLED
    if closed:
        return DossierState.CLOSED
    if not sent:
        return DossierState.DRAFT
    states = {s for s in send_states if s != SendState.PENDING}
    if states & {SendState.IN_PROGRESS, SendState.ON_HOLD}:
        return DossierState.IN_PROGRESS
    if SendState.REQUESTED in states:
        return DossierState.IN_PROGRESS if SendState.ANSWERED in states else DossierState.REQUESTED
    if SendState.ANSWERED in states:
        return DossierState.ANSWERED
    return DossierState.DECLINED


def was_sent(send: Json) -> bool:
    """Whether a send was sent (it carries when: `sent_on`, set by `Sent` and kept through forwards).

    The one rule by which a recipient may open a dossier and act on it: a send addressed and never
    sent (a draft's, or one added after sending) never does, whatever state it ended in — removed,
    or cancelled or closed with its dossier. Not its state: `cancelled` and `closed` are the end of
    sends sent and never sent alike. The inbox stores each send's `sent_on` to apply the same rule
    (projections/inbox_queries.py, WAS_SENT)."""
    return bool(send.get("sent_on"))


def _addressed_to(target: Json, actor: Actor) -> bool:
    """Whether a clinician `actor` is who `target` names (a send, or the target of its escalation):
    the practitioner named, else a member of the service named, else anyone of the establishment."""
    if actor.establishment_id != target["establishment_id"]:
        return False
    practitioner_id: str | None = target.get("practitioner_id")
    if practitioner_id:
        return practitioner_id == actor.practitioner_id
    if target.get("service_id"):
        return target["service_id"] in actor.service_ids
    return True


def dossier_number(dossier_id: UUID) -> str:
    """A short, stable, human-readable number derived from the dossier id (e.g. TD-7F3AQ2KD9M)."""
    return "TD-" + base64.b32encode(dossier_id.bytes).decode()[:10]


class Dossier(Aggregate):
    """One tele-expertise case: patient, question, documents, imaging, recipients and answers."""

    TOPIC = "relais:Dossier"

    # ------------------------------------------------------------------ events, in lifecycle order

    class Created(Aggregate.Created):
        """A dossier opened as a draft, or imported from the legacy platform's history (`imported_from`)."""

        TOPIC = "relais:Dossier.Created"

        workflow: str
        requester: Json
        patient: Json
        question: str
        urgency: str
        consent: Json | None
        imaging_source: str
        actor: Json
        occurred_at: datetime
        imported_from: Json | None

    class DraftEdited(Aggregate.Event):
        """Draft fields changed: `changes` maps each field edited to its new value."""

        TOPIC = "relais:Dossier.DraftEdited"

        changes: Json
        actor: Json
        occurred_at: datetime

    class ConsentRecorded(Aggregate.Event):
        """The patient's consent as the requester recorded it (`status`: a Consent value)."""

        TOPIC = "relais:Dossier.ConsentRecorded"

        status: str
        note: str
        actor: Json
        occurred_at: datetime

    class DocumentAttached(Aggregate.Event):
        """A document joined, to the draft or in answer to a complement request."""

        TOPIC = "relais:Dossier.DocumentAttached"

        document: Json
        actor: Json
        occurred_at: datetime

    class DocumentRemoved(Aggregate.Event):
        TOPIC = "relais:Dossier.DocumentRemoved"

        document_id: str
        actor: Json
        occurred_at: datetime

    class ImagingAttached(Aggregate.Event):
        """A study joined (or updated, same Study Instance UID); also after sending. `study["identities"]`
        lists the DICOM patient identities accepted (instances of others stay out of the dossier).
        v2 added `override`: who confirmed that images whose identity differs from the dossier's patient
        are this patient's, and which differences (trait, dossier value, DICOM value); v1: None."""

        TOPIC = "relais:Dossier.ImagingAttached"
        class_version = 2

        study: Json
        override: Json | None
        actor: Json
        occurred_at: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["override"] = None

    class ImagingHeld(Aggregate.Event):
        """Images of a received study kept out of the dossier because their patient identity does not
        match: `reason` "auto_refused" (an awaited exam or a retrieve not attached automatically),
        "quarantined" (instances arriving after attachment) or "ambiguous" (a study of a Patient ID that
        several open dossiers await: attached to none of them); `identities` the identities held, with
        their differences and instance counts. The requester is told; a notification can follow it."""

        TOPIC = "relais:Dossier.ImagingHeld"

        study_instance_uid: str
        received_study_id: str
        reason: str
        identities: list[Json]
        actor: Json
        occurred_at: datetime

    class ImagingAwaited(Aggregate.Event):
        """An exam awaited by its Accession Number, or (v2) by the patient's ID at the establishment's
        gateway (`patient_id`, with its `issuer` when known): a study received with that Accession
        Number, or of that Patient ID soon after the await, attaches itself. "": not named."""

        TOPIC = "relais:Dossier.ImagingAwaited"
        class_version = 2

        accession_number: str
        patient_id: str
        issuer: str
        actor: Json
        occurred_at: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["patient_id"] = ""
            state["issuer"] = ""

    class ImagingDetached(Aggregate.Event):
        TOPIC = "relais:Dossier.ImagingDetached"

        study_instance_uid: str
        actor: Json
        occurred_at: datetime

    class RecipientAddressed(Aggregate.Event):
        """A recipient added: a send, pending until the dossier is sent."""

        TOPIC = "relais:Dossier.RecipientAddressed"

        recipient: Json
        actor: Json
        occurred_at: datetime

    class RecipientRemoved(Aggregate.Event):
        """A pending send dropped."""

        TOPIC = "relais:Dossier.RecipientRemoved"

        send_id: str
        actor: Json
        occurred_at: datetime

    class Sent(Aggregate.Event):
        """The dossier sent to every pending recipient (`send_ids`). v2 added `deadlines`: per send id, its
        deadline (`started_at`, `accept_by`, `answer_by` as ISO times, and `basis`: the delays in minutes
        and "default" or "service"), see domain/deadlines.py; v1 events (and sends without one): none."""

        TOPIC = "relais:Dossier.Sent"
        class_version = 2

        send_ids: list[str]
        deadlines: dict[str, Json]
        actor: Json
        occurred_at: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["deadlines"] = {}

    class ComplementProvided(Aggregate.Event):
        """The requester answered a complement request: the send is in progress again. v2 added the
        documents (`document_ids`) and studies (`study_uids`) given with the answer; v1: none."""

        TOPIC = "relais:Dossier.ComplementProvided"
        class_version = 2

        send_id: str
        message: str
        document_ids: list[str]
        study_uids: list[str]
        actor: Json
        occurred_at: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["document_ids"] = []
            state["study_uids"] = []

    class Closed(Aggregate.Event):
        """The requester closed the dossier; its open sends close with it."""

        TOPIC = "relais:Dossier.Closed"

        note: str
        actor: Json
        occurred_at: datetime

    class Cancelled(Aggregate.Event):
        """The requester cancelled the dossier; its open sends are cancelled with it."""

        TOPIC = "relais:Dossier.Cancelled"

        reason: str
        actor: Json
        occurred_at: datetime

    class Accepted(Aggregate.Event):
        """A recipient took the send in charge."""

        TOPIC = "relais:Dossier.Accepted"

        send_id: str
        actor: Json
        occurred_at: datetime

    class Declined(Aggregate.Event):
        """A recipient declined. v2 added `reason_code` (v1 had free text only)."""

        TOPIC = "relais:Dossier.Declined"
        class_version = 2

        send_id: str
        reason_code: str
        reason: str
        actor: Json
        occurred_at: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reason_code"] = "other"

    class ComplementRequested(Aggregate.Event):
        """A recipient asked the requester for more: the send is on hold."""

        TOPIC = "relais:Dossier.ComplementRequested"

        send_id: str
        message: str
        actor: Json
        occurred_at: datetime

    class Forwarded(Aggregate.Event):
        """A recipient handed the send to a colleague or a team (`to`), who must accept it. v2 added
        `deadline`: the new assignee's (accept delay from now, the answer deadline promised kept); v1: None."""

        TOPIC = "relais:Dossier.Forwarded"
        class_version = 2

        send_id: str
        to: Json
        note: str
        deadline: Json | None
        actor: Json
        occurred_at: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["deadline"] = None

    class Escalated(Aggregate.Event):
        """A send not accepted by its deadline, handed by the platform to `to` as well (the recipient
        service's on-call pool or backup practitioner, same establishment: `establishment_id`,
        `service_id` or `practitioner_id`), who may now accept and answer it; the first recipient keeps it."""

        TOPIC = "relais:Dossier.Escalated"

        send_id: str
        to: Json
        reason: str
        actor: Json
        occurred_at: datetime

    class OpinionGiven(Aggregate.Event):
        """A recipient answered. v2 made the report structured: `recommendations` and `follow_up`
        (urgency of the follow-up, a FOLLOW_UPS code) beside the report and its conclusion;
        v1 events read as no recommendation and follow-up not stated ("")."""

        TOPIC = "relais:Dossier.OpinionGiven"
        class_version = 2

        send_id: str
        report: str
        conclusion: str
        recommendations: str
        follow_up: str
        actor: Json
        occurred_at: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["recommendations"] = ""
            state["follow_up"] = ""

    class FormAnswered(Aggregate.Event):
        """The workflow's structured form answered, on the draft (a FHIR QuestionnaireResponse): `form`
        names the definition (`id`, `version`, see domain/forms), `answers` maps each item's code to its
        value as validated. Each save replaces the answers; a dossier keeps the version it started with."""

        TOPIC = "relais:Dossier.FormAnswered"

        form: Json
        answers: Json
        actor: Json
        occurred_at: datetime

    class MilestoneRecorded(Aggregate.Event):
        """A time in the care of the patient, as it happened (`milestone`: a MILESTONES code recorded by a
        person, `at`: its ISO time, which may precede the event), e.g. the arrival at the door or the
        decision taken. Sending, acceptance and opinion are milestones already recorded by their events."""

        TOPIC = "relais:Dossier.MilestoneRecorded"

        milestone: str
        at: str
        note: str
        actor: Json
        occurred_at: datetime

    class MessagePosted(Aggregate.Event):
        """A message of the thread of one send, between its requester and its recipient (FHIR Communication):
        text and the documents (`document_ids`) or studies (`study_uids`) of the dossier it points to."""

        TOPIC = "relais:Dossier.MessagePosted"

        send_id: str
        message_id: str
        text: str
        document_ids: list[str]
        study_uids: list[str]
        actor: Json
        occurred_at: datetime

    class ReceiptAcknowledged(Aggregate.Event):
        """The recipient of an imaging transfer acknowledged receipt (no opinion is asked): the send is
        done (answered); `note` says what was done with the images (e.g. exported to its PACS)."""

        TOPIC = "relais:Dossier.ReceiptAcknowledged"

        send_id: str
        note: str
        actor: Json
        occurred_at: datetime

    class ReportIssued(Aggregate.Event):
        """The opinion report of a send produced as a PDF: `report` holds its id, the blob's SHA-256 and
        size, and its media type; the bytes are stored immutably under that SHA-256 (adapters/blobs)."""

        TOPIC = "relais:Dossier.ReportIssued"

        send_id: str
        report: Json
        actor: Json
        occurred_at: datetime

    # ------------------------------------------------------------------ creation

    @event(Created)
    def __init__(
        self,
        *,
        workflow: str,
        requester: Json,
        patient: Json,
        question: str,
        urgency: str,
        consent: Json | None,
        imaging_source: str,
        actor: Json,
        occurred_at: datetime,
        imported_from: Json | None,
    ) -> None:
        self.workflow = workflow
        self.requester = requester
        self.patient = patient
        self.question = question
        self.urgency = urgency
        self.consent = consent
        self.imaging_source = imaging_source
        self.imported_from = imported_from
        self.created_by = actor
        self.opened_on = occurred_at
        self.documents: dict[str, Json] = {}
        self.imaging: dict[str, Json] = {}
        self.sends: dict[str, Json] = {}
        self.first_sent_on: datetime | None = None
        self.closed_on: datetime | None = None
        self.cancelled_on: datetime | None = None
        self.last_occurred_at = occurred_at

    @classmethod
    def imported(
        cls, *, dossier_id: UUID, workflow: str, requester: Json, imaging_source: str, actor: Actor,
        occurred_at: datetime, imported_from: Json,
    ) -> Dossier:
        """A dossier of the legacy platform's history, created by the system (the import) with a
        deterministic id. No patient identity, question or consent is taken over: they stay in the
        legacy platform's records; `imported_from` says where it came from."""
        if actor.role != SYSTEM_ROLE or not imported_from:
            raise NotAllowedError("seul l'import de l'historique crée un télédossier importé")
        return cls._create(
            cls.Created, id=dossier_id, workflow=workflow, requester=requester, patient={}, question="",
            urgency=Urgency.ROUTINE.value, consent=None, imaging_source=imaging_source, actor=actor.as_dict(),
            occurred_at=occurred_at, imported_from=imported_from,
        )

    # ------------------------------------------------------------------ reading

    @property
    def number(self) -> str:
        return dossier_number(self.id)

    @property
    def is_draft(self) -> bool:
        return self.first_sent_on is None and not self.is_over

    @property
    def is_over(self) -> bool:
        return self.closed_on is not None or self.cancelled_on is not None

    @property
    def state(self) -> str:
        return summary_state(
            sent=self.first_sent_on is not None, closed=self.closed_on is not None,
            cancelled=self.cancelled_on is not None, send_states=[s["state"] for s in self.sends.values()],
        )

    def send_of(self, send_id: str) -> Json:
        try:
            return self.sends[send_id]
        except KeyError:
            raise UnknownSendError(f"envoi inconnu : {send_id}") from None

    def is_requester(self, actor: Actor) -> bool:
        return actor.role == Role.CLINICIAN and actor.establishment_id == self.requester["establishment_id"]

    def is_recipient(self, actor: Actor, send_id: str) -> bool:
        send = self.send_of(send_id)
        if actor.role != Role.CLINICIAN:
            return False
        if _addressed_to(send, actor):
            return True
        escalated: Json | None = send.get("escalated_to")
        return escalated is not None and _addressed_to(escalated, actor)

    def is_sent_to(self, actor: Actor, send_id: str) -> bool:
        """`actor` is the recipient of this send and it was sent to them (`was_sent`)."""
        return was_sent(self.send_of(send_id)) and self.is_recipient(actor, send_id)

    def may_read(self, actor: Actor) -> bool:
        """Clinicians of the requester side, or the recipient of a send that was sent; auditors always."""
        if actor.role == Role.AUDITOR:
            return True
        if self.is_requester(actor):
            return True
        return any(self.is_sent_to(actor, sid) for sid in self.sends)

    # ------------------------------------------------------------------ guards

    def _open(self, occurred_at: datetime | None = None) -> None:
        if self.is_over:
            raise DossierClosedError("le télédossier est clôturé ou annulé")
        if occurred_at is not None and occurred_at < self.opened_on:
            raise InvalidFieldError("occurred_at", "date antérieure à la création du télédossier")

    def _draft(self, occurred_at: datetime | None = None) -> None:
        self._open(occurred_at)
        if not self.is_draft:
            raise DossierNotDraftError("le télédossier a été envoyé : il ne peut plus être modifié")

    def _replays_history(self, actor: Actor) -> bool:
        """The system replaying the legacy platform's history into an imported dossier (the import);
        it may then act as requester and recipient. Never on a live dossier."""
        return actor.role == SYSTEM_ROLE and self.imported_from is not None

    def _as_requester(self, actor: Actor) -> None:
        if not (self.is_requester(actor) or self._replays_history(actor)):
            raise NotAllowedError("seul l'établissement requérant peut faire cela")

    def _as_recipient(self, actor: Actor, send_id: str) -> Json:
        send = self.send_of(send_id)
        if not was_sent(send) or not (self.is_recipient(actor, send_id) or self._replays_history(actor)):
            raise NotAllowedError("ce télédossier ne vous est pas adressé")
        return send

    def _send_in(self, send: Json, *states: str) -> None:
        if send["state"] not in states:
            raise SendStateError(
                f"action impossible : l'envoi est à l'état « {send['state']} »"
            )

    @staticmethod
    def _after_sending(send: Json, occurred_at: datetime) -> None:
        """A recipient's action cannot predate the sending (answer delays are never negative)."""
        if send["sent_on"] and occurred_at < datetime.fromisoformat(send["sent_on"]):
            raise InvalidFieldError("occurred_at", "date antérieure à l'envoi du télédossier")

    def _complement_pending(self) -> bool:
        return any(s["state"] == SendState.ON_HOLD for s in self.sends.values())

    # ------------------------------------------------------------------ requester commands

    def edit(self, *, changes: Json, actor: Actor, occurred_at: datetime) -> None:
        self._draft(occurred_at)
        self._as_requester(actor)
        allowed = {"question", "urgency", "patient", "workflow", "imaging_source"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidFieldError(sorted(unknown)[0], "champ non modifiable")
        if changes:
            self._edited(changes=changes, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(DraftEdited)
    def _edited(self, changes: Json, actor: Json, occurred_at: datetime) -> None:
        for key, value in changes.items():
            setattr(self, key, value)
        self.last_occurred_at = occurred_at

    def record_consent(self, *, status: str, note: str, actor: Actor, occurred_at: datetime) -> None:
        self._draft(occurred_at)
        self._as_requester(actor)
        self._consent_recorded(status=status, note=note, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(ConsentRecorded)
    def _consent_recorded(self, status: str, note: str, actor: Json, occurred_at: datetime) -> None:
        self.consent = {"status": status, "note": note, "occurred_at": occurred_at.isoformat()}
        self.last_occurred_at = occurred_at

    def attach_document(self, *, document: Json, actor: Actor, occurred_at: datetime) -> None:
        self._open(occurred_at)
        self._as_requester(actor)
        # after sending too: a result arriving later, or the answer to a complement request (as its own event,
        # which the thread or the complement answer then points to)
        if document["document_id"] in self.documents:
            raise InvalidFieldError("document_id", "document déjà joint")
        self._document_attached(document=document, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(DocumentAttached)
    def _document_attached(self, document: Json, actor: Json, occurred_at: datetime) -> None:
        self.documents[document["document_id"]] = dict(document, attached_on=occurred_at.isoformat())
        self.last_occurred_at = occurred_at

    def remove_document(self, *, document_id: str, actor: Actor, occurred_at: datetime) -> None:
        self._draft(occurred_at)
        self._as_requester(actor)
        if document_id not in self.documents:
            raise UnknownDocumentError(f"document inconnu : {document_id}")
        self._document_removed(document_id=document_id, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(DocumentRemoved)
    def _document_removed(self, document_id: str, actor: Json, occurred_at: datetime) -> None:
        del self.documents[document_id]
        self.last_occurred_at = occurred_at

    def attach_imaging(self, *, study: Json, actor: Actor, occurred_at: datetime, override: Json | None = None) -> None:
        """Imaging may arrive after sending too (a gateway push often follows a stroke dossier).
        An `override` (differences confirmed by the requester) is a person's act, never the platform's."""
        self._open(occurred_at)
        if actor.role != "system":
            self._as_requester(actor)
        elif override:
            raise InvalidFieldError("override", "seul un clinicien peut confirmer l'identité du patient des images")
        if study["source"] == ImagingSource.NONE:
            raise InvalidFieldError("source", "une étude jointe a une source d'imagerie")
        if override is not None:
            override = dict(override, by=actor.as_dict(), at=occurred_at.isoformat())
        self._imaging_attached(study=study, override=override, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(ImagingAttached)
    def _imaging_attached(self, study: Json, override: Json | None, actor: Json, occurred_at: datetime) -> None:
        uid = study["study_instance_uid"]
        previous = self.imaging.get(uid, {})
        self.imaging[uid] = dict(previous, **study, attached_on=occurred_at.isoformat())
        if override:
            self.imaging[uid]["overrides"] = [*previous.get("overrides", []), override]
        self.last_occurred_at = occurred_at

    def hold_imaging(
        self, *, study_instance_uid: str, received_study_id: str, reason: str, identities: list[Json], actor: Actor,
        occurred_at: datetime,
    ) -> None:
        """Records that images were kept out of the dossier for their patient identity (see ImagingHeld)."""
        if reason not in ("auto_refused", "quarantined", "ambiguous"):
            raise InvalidFieldError("reason", "auto_refused, quarantined ou ambiguous")
        self._imaging_held(
            study_instance_uid=study_instance_uid, received_study_id=received_study_id, reason=reason,
            identities=identities, actor=actor.as_dict(), occurred_at=occurred_at,
        )

    @property
    def imaging_held(self) -> list[Json]:
        """Images kept out for their identity, oldest first (absent from older snapshots)."""
        return list(self.__dict__.get("_held_imaging", []))

    @event(ImagingHeld)
    def _imaging_held(
        self, study_instance_uid: str, received_study_id: str, reason: str, identities: list[Json], actor: Json,
        occurred_at: datetime,
    ) -> None:
        self._held_imaging = [*self.imaging_held, {
            "study_instance_uid": study_instance_uid, "received_study_id": received_study_id, "reason": reason,
            "identities": identities, "at": occurred_at.isoformat(),
        }]

    def await_imaging(
        self, *, accession_number: str = "", patient_id: str = "", issuer: str = "", actor: Actor, occurred_at: datetime,
    ) -> None:
        """Names the exam awaited — its Accession Number, or the patient's ID at the gateway (and its issuer
        if known): a study received with it attaches itself. Awaiting a Patient ID again renews it."""
        self._open(occurred_at)
        self._as_requester(actor)
        accession_number, patient_id, issuer = (x.strip() for x in (accession_number or "", patient_id or "", issuer or ""))
        if issuer and not patient_id:
            raise InvalidFieldError("issuer", "l'émetteur accompagne un identifiant patient")
        if not accession_number and not patient_id:
            raise InvalidFieldError("accession_number", "numéro d'examen (accession number) ou identifiant patient attendu")
        if accession_number and len(accession_number) > 16:
            raise InvalidFieldError("accession_number", "numéro d'examen (accession number) de 1 à 16 caractères")
        for name, value in (("patient_id", patient_id), ("issuer", issuer)):
            if len(value) > 64 or "\\" in value or not value.isprintable():
                raise InvalidFieldError(name, "identifiant DICOM de 64 caractères au plus, sans « \\ »")
        if accession_number in self.awaited_accessions:
            accession_number = ""
        if accession_number or patient_id:
            self._imaging_awaited(accession_number=accession_number, patient_id=patient_id, issuer=issuer,
                                  actor=actor.as_dict(), occurred_at=occurred_at)

    @property
    def awaited_accessions(self) -> list[str]:
        return list(self.__dict__.get("_awaited_accessions", []))  # absent from older snapshots

    @property
    def awaited_patients(self) -> list[Json]:
        """{"id", "issuer", "at"} of each Patient ID awaited, the last await of each (absent from older snapshots)."""
        return [dict(p) for p in self.__dict__.get("_awaited_patients", [])]

    @event(ImagingAwaited)
    def _imaging_awaited(self, accession_number: str, patient_id: str, issuer: str, actor: Json, occurred_at: datetime) -> None:
        if accession_number:
            self._awaited_accessions = [*self.awaited_accessions, accession_number]
        if patient_id:
            self._awaited_patients = [
                *(p for p in self.awaited_patients if (p["id"], p["issuer"]) != (patient_id, issuer)),
                {"id": patient_id, "issuer": issuer, "at": occurred_at.isoformat()},
            ]
        self.last_occurred_at = occurred_at

    def detach_imaging(self, *, study_instance_uid: str, actor: Actor, occurred_at: datetime) -> None:
        self._draft(occurred_at)
        self._as_requester(actor)
        if study_instance_uid not in self.imaging:
            raise InvalidFieldError("study_instance_uid", "étude non jointe à ce télédossier")
        self._imaging_detached(
            study_instance_uid=study_instance_uid, actor=actor.as_dict(), occurred_at=occurred_at
        )

    @event(ImagingDetached)
    def _imaging_detached(self, study_instance_uid: str, actor: Json, occurred_at: datetime) -> None:
        del self.imaging[study_instance_uid]
        self.last_occurred_at = occurred_at

    def address(self, *, recipient: Json, actor: Actor, occurred_at: datetime) -> None:
        """Adds a recipient (a future send). Allowed while the dossier is open, also after sending."""
        self._open(occurred_at)
        self._as_requester(actor)
        if recipient["send_id"] in self.sends:
            raise InvalidFieldError("send_id", "envoi déjà existant")
        if recipient["region"] != OCCITANIE and not recipient.get("channel"):
            raise InvalidFieldError("channel", "canal inter-régional obligatoire pour un destinataire hors région")
        if recipient["region"] == OCCITANIE and recipient.get("channel"):
            raise InvalidFieldError("channel", "pas de canal inter-régional pour un destinataire de la région")
        if recipient.get("channel"):
            Channel(recipient["channel"])
        key = (recipient["establishment_id"], recipient.get("service_id"), recipient.get("practitioner_id"))
        # The legacy history names establishments only: its sends to two services of one
        # establishment are two sends to the same recipient here.
        for s in () if self._replays_history(actor) else self.sends.values():
            if s["state"] in ACTIVE_SEND_STATES | {SendState.PENDING} and (
                s["establishment_id"], s["service_id"], s["practitioner_id"]
            ) == key:
                raise InvalidFieldError("recipient", "ce destinataire est déjà adressé")
        self._recipient_addressed(recipient=recipient, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(RecipientAddressed)
    def _recipient_addressed(self, recipient: Json, actor: Json, occurred_at: datetime) -> None:
        self.sends[recipient["send_id"]] = {
            "send_id": recipient["send_id"],
            "establishment_id": recipient["establishment_id"],
            "service_id": recipient.get("service_id"),
            "practitioner_id": recipient.get("practitioner_id"),
            "region": recipient["region"],
            "department": recipient.get("department"),
            "channel": recipient.get("channel"),
            "state": SendState.PENDING.value,
            "sent_on": None,
            "answered_on": None,
            "opinion": None,
        }
        self.last_occurred_at = occurred_at

    def remove_recipient(self, *, send_id: str, actor: Actor, occurred_at: datetime) -> None:
        self._open(occurred_at)
        self._as_requester(actor)
        self._send_in(self.send_of(send_id), SendState.PENDING)
        self._recipient_removed(send_id=send_id, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(RecipientRemoved)
    def _recipient_removed(self, send_id: str, actor: Json, occurred_at: datetime) -> None:
        del self.sends[send_id]
        self.last_occurred_at = occurred_at

    def send(self, *, actor: Actor, occurred_at: datetime, delays_of: DelaysOf | None = None) -> list[str]:
        """Sends the dossier to every recipient addressed and not yet sent to; `delays_of` gives each
        send's delays (the application's rule: the recipient service's, else the platform's table), whose
        deadline is recorded with the sending."""
        self._open(occurred_at)
        self._as_requester(actor)
        # Imported dossiers were sent on the legacy platform, whose consent records stayed there.
        if not self._replays_history(actor) and (not self.consent or self.consent.get("status") != Consent.GIVEN):
            raise ConsentMissingError("consentement du patient non recueilli : envoi impossible")
        pending = [sid for sid, s in self.sends.items() if s["state"] == SendState.PENDING]
        if not pending:
            raise DossierStateError("aucun destinataire à qui envoyer")
        deadlines = {}
        for sid in pending:
            found = delays_of(self.sends[sid]) if delays_of is not None else None
            if found is not None:
                deadlines[sid] = Deadline.starting(occurred_at, found[0]).as_record(found)
        self._sent(send_ids=pending, deadlines=deadlines, actor=actor.as_dict(), occurred_at=occurred_at)
        return pending

    @event(Sent)
    def _sent(self, send_ids: list[str], deadlines: dict[str, Json], actor: Json, occurred_at: datetime) -> None:
        for sid in send_ids:
            self.sends[sid]["state"] = SendState.REQUESTED.value
            self.sends[sid]["sent_on"] = occurred_at.isoformat()
            if sid in deadlines:
                self.sends[sid]["deadline"] = deadlines[sid]
        if self.first_sent_on is None:
            self.first_sent_on = occurred_at
        self.last_occurred_at = occurred_at

    def provide_complement(
        self, *, send_id: str, message: str, actor: Actor, occurred_at: datetime,
        document_ids: list[str] | None = None, study_uids: list[str] | None = None,
    ) -> None:
        """Answers a complement request with text and documents or studies of the dossier (attached first)."""
        self._open(occurred_at)
        self._as_requester(actor)
        send = self.send_of(send_id)
        self._send_in(send, SendState.ON_HOLD)
        self._after_sending(send, occurred_at)
        document_ids, study_uids = self._pointed(document_ids or [], study_uids or [])
        if not (message.strip() or document_ids or study_uids):
            raise InvalidFieldError("message", "répondez par un message, un document ou des images")
        self._complement_provided(
            send_id=send_id, message=message, document_ids=document_ids, study_uids=study_uids,
            actor=actor.as_dict(), occurred_at=occurred_at,
        )

    @event(ComplementProvided)
    def _complement_provided(
        self, send_id: str, message: str, document_ids: list[str], study_uids: list[str], actor: Json,
        occurred_at: datetime,
    ) -> None:
        self.sends[send_id]["state"] = SendState.IN_PROGRESS.value
        self.last_occurred_at = occurred_at

    def _pointed(self, document_ids: list[str], study_uids: list[str]) -> tuple[list[str], list[str]]:
        """Documents and studies a message points to: each must be the dossier's (once each, in order)."""
        for d in document_ids:
            if d not in self.documents:
                raise UnknownDocumentError(f"document inconnu : {d}")
        for u in study_uids:
            if u not in self.imaging:
                raise InvalidFieldError("study_uids", "étude non jointe à ce télédossier")
        return list(dict.fromkeys(document_ids)), list(dict.fromkeys(study_uids))

    def post_message(
        self, *, send_id: str, message_id: str, text: str, actor: Actor, occurred_at: datetime,
        document_ids: list[str] | None = None, study_uids: list[str] | None = None,
    ) -> None:
        """A message in the thread of a send that was sent, by its requester side or its recipient."""
        self._open(occurred_at)
        send = self.send_of(send_id)
        if not was_sent(send):
            raise SendStateError("la discussion s'ouvre avec l'envoi")
        if not (self.is_requester(actor) or self.is_recipient(actor, send_id)):
            raise NotAllowedError("seuls le requérant et le destinataire de cet envoi échangent ici")
        self._after_sending(send, occurred_at)
        if message_id in self.__dict__.get("_message_ids", ()):
            raise InvalidFieldError("message_id", "message déjà enregistré")
        document_ids, study_uids = self._pointed(document_ids or [], study_uids or [])
        if not (text.strip() or document_ids or study_uids):
            raise InvalidFieldError("text", "message vide")
        if len(text) > 10_000:
            raise InvalidFieldError("text", "message trop long (10 000 caractères au plus)")
        self._message_posted(
            send_id=send_id, message_id=message_id, text=text, document_ids=document_ids, study_uids=study_uids,
            actor=actor.as_dict(), occurred_at=occurred_at,
        )

    @event(MessagePosted)
    def _message_posted(
        self, send_id: str, message_id: str, text: str, document_ids: list[str], study_uids: list[str], actor: Json,
        occurred_at: datetime,
    ) -> None:
        self._message_ids = {*self.__dict__.get("_message_ids", ()), message_id}
        self.last_occurred_at = occurred_at

    def close(self, *, note: str, actor: Actor, occurred_at: datetime) -> None:
        self._open(occurred_at)
        self._as_requester(actor)
        if self.first_sent_on is None:
            raise DossierStateError("un brouillon s'annule, il ne se clôture pas")
        if occurred_at < self.first_sent_on:
            raise InvalidFieldError("occurred_at", "date antérieure à l'envoi du télédossier")
        states = {s["state"] for s in self.sends.values()}
        if SendState.ANSWERED not in states and states & ACTIVE_SEND_STATES and not self._replays_history(actor):
            raise DossierStateError("clôture impossible : aucun avis rendu et des demandes sont en cours (annuler ?)")
        self._closed(note=note, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(Closed)
    def _closed(self, note: str, actor: Json, occurred_at: datetime) -> None:
        for s in self.sends.values():
            if s["state"] in ACTIVE_SEND_STATES or s["state"] == SendState.PENDING:
                s["state"] = SendState.CLOSED.value
        self.closed_on = occurred_at
        self.last_occurred_at = occurred_at

    def cancel(self, *, reason: str, actor: Actor, occurred_at: datetime) -> None:
        self._open(occurred_at)
        self._as_requester(actor)
        if any(s["state"] == SendState.ANSWERED for s in self.sends.values()):
            raise DossierStateError("annulation impossible : un avis a déjà été rendu (clôturer ?)")
        self._cancelled(reason=reason, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(Cancelled)
    def _cancelled(self, reason: str, actor: Json, occurred_at: datetime) -> None:
        for s in self.sends.values():
            if s["state"] in ACTIVE_SEND_STATES or s["state"] == SendState.PENDING:
                s["state"] = SendState.CANCELLED.value
        self.cancelled_on = occurred_at
        self.last_occurred_at = occurred_at

    # ------------------------------------------------------------------ recipient commands

    def accept(self, *, send_id: str, actor: Actor, occurred_at: datetime) -> None:
        self._open(occurred_at)
        send = self._as_recipient(actor, send_id)
        self._send_in(send, SendState.REQUESTED)
        self._after_sending(send, occurred_at)
        self._accepted(send_id=send_id, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(Accepted)
    def _accepted(self, send_id: str, actor: Json, occurred_at: datetime) -> None:
        self.sends[send_id]["state"] = SendState.IN_PROGRESS.value
        self.sends[send_id]["accepted_by"] = actor["practitioner_id"]
        self.last_occurred_at = occurred_at

    def decline(self, *, send_id: str, reason_code: str, reason: str, actor: Actor, occurred_at: datetime) -> None:
        self._open(occurred_at)
        send = self._as_recipient(actor, send_id)
        self._send_in(send, SendState.REQUESTED, SendState.IN_PROGRESS)
        self._after_sending(send, occurred_at)
        if reason_code not in DECLINE_REASONS:
            raise InvalidFieldError("reason_code", f"motif inconnu (attendu : {', '.join(DECLINE_REASONS)})")
        if reason_code == "other" and not reason:
            raise InvalidFieldError("reason", "précisez le motif du refus")
        self._declined(send_id=send_id, reason_code=reason_code, reason=reason, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(Declined)
    def _declined(self, send_id: str, reason_code: str, reason: str, actor: Json, occurred_at: datetime) -> None:
        self.sends[send_id]["state"] = SendState.DECLINED.value
        self.sends[send_id]["decline"] = {"reason_code": reason_code, "reason": reason}
        self.last_occurred_at = occurred_at

    def request_complement(self, *, send_id: str, message: str, actor: Actor, occurred_at: datetime) -> None:
        self._open(occurred_at)
        send = self._as_recipient(actor, send_id)
        self._send_in(send, SendState.REQUESTED, SendState.IN_PROGRESS)
        self._after_sending(send, occurred_at)
        self._complement_requested(send_id=send_id, message=message, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(ComplementRequested)
    def _complement_requested(self, send_id: str, message: str, actor: Json, occurred_at: datetime) -> None:
        self.sends[send_id]["state"] = SendState.ON_HOLD.value
        self.last_occurred_at = occurred_at

    def forward(
        self, *, send_id: str, to: Json, note: str, actor: Actor, occurred_at: datetime, delays_of: DelaysOf | None = None,
    ) -> None:
        """Hands a send to a colleague or another team; the new assignee must accept it, within their own
        accept delay (`delays_of(to)`), and the answer deadline the requester was promised stays."""
        self._open(occurred_at)
        send = self._as_recipient(actor, send_id)
        self._send_in(send, SendState.REQUESTED, SendState.IN_PROGRESS)
        self._after_sending(send, occurred_at)
        if to.get("region", send["region"]) != OCCITANIE and not to.get("channel"):
            raise InvalidFieldError("channel", "canal inter-régional obligatoire pour un destinataire hors région")
        if not (to.get("practitioner_id") or to.get("service_id")):
            raise InvalidFieldError("to", "indiquez un confrère ou une équipe")
        if (to.get("service_id"), to.get("practitioner_id")) == (send["service_id"], send["practitioner_id"]) and (
            to["establishment_id"] == send["establishment_id"]
        ):
            raise InvalidFieldError("to", "le télédossier est déjà adressé à ce destinataire")
        deadline = None
        found = delays_of(to) if delays_of is not None else None
        if found is not None:
            previous = self.deadline_of(send_id)
            deadline = Deadline.starting(occurred_at, found[0], previous.answer_by if previous else None).as_record(found)
        self._forwarded(
            send_id=send_id, to=to, note=note, deadline=deadline, actor=actor.as_dict(), occurred_at=occurred_at
        )

    @event(Forwarded)
    def _forwarded(self, send_id: str, to: Json, note: str, deadline: Json | None, actor: Json, occurred_at: datetime) -> None:
        send = self.sends[send_id]
        if deadline is not None:
            send["deadline"] = deadline
        send["establishment_id"] = to["establishment_id"]
        send["service_id"] = to.get("service_id")
        send["practitioner_id"] = to.get("practitioner_id")
        if "region" in to:
            send["region"] = to["region"]
            send["department"] = to.get("department")
            send["channel"] = to.get("channel")
        send.pop("accepted_by", None)
        send.pop("escalated_to", None)  # the new assignee's own deadline starts (DeadlineSet)
        send["state"] = SendState.REQUESTED.value
        self.last_occurred_at = occurred_at

    def give_opinion(
        self, *, send_id: str, report: str, conclusion: str, actor: Actor, occurred_at: datetime,
        recommendations: str = "", follow_up: str = "",
    ) -> None:
        self._open(occurred_at)
        send = self._as_recipient(actor, send_id)
        self._send_in(send, SendState.REQUESTED, SendState.IN_PROGRESS)
        self._after_sending(send, occurred_at)
        if follow_up and follow_up not in FOLLOW_UPS:
            raise InvalidFieldError("follow_up", f"urgence du suivi inconnue (attendu : {', '.join(FOLLOW_UPS)})")
        self._opinion_given(
            send_id=send_id, report=report, conclusion=conclusion, recommendations=recommendations,
            follow_up=follow_up, actor=actor.as_dict(), occurred_at=occurred_at,
        )

    @event(OpinionGiven)
    def _opinion_given(
        self, send_id: str, report: str, conclusion: str, recommendations: str, follow_up: str, actor: Json,
        occurred_at: datetime,
    ) -> None:
        send = self.sends[send_id]
        send["state"] = SendState.ANSWERED.value
        send["answered_on"] = occurred_at.isoformat()
        send["opinion"] = {
            "report": report, "conclusion": conclusion, "recommendations": recommendations, "follow_up": follow_up,
            "by": actor["practitioner_id"],
        }
        self.last_occurred_at = occurred_at

    # ------------------------------------------------------------------ deadlines (the platform)

    def deadline_of(self, send_id: str) -> Deadline | None:
        """The send's deadline as last set (None: none set — history, or sent before deadlines existed)."""
        recorded = self.send_of(send_id).get("deadline")
        return Deadline.of(recorded) if recorded else None

    def escalate(self, *, send_id: str, to: Json, reason: str, actor: Actor, occurred_at: datetime) -> None:
        """Hands a send not accepted in time to `to` as well (the platform, past the accept deadline)."""
        if actor.role != SYSTEM_ROLE:
            raise NotAllowedError("seule la plateforme escalade un envoi")
        self._open(occurred_at)
        send = self.send_of(send_id)
        self._send_in(send, SendState.REQUESTED)
        if to.get("establishment_id") != send["establishment_id"] or not (to.get("service_id") or to.get("practitioner_id")):
            raise InvalidFieldError("to", "escalade vers une astreinte ou un professionnel du même établissement")
        target = {"establishment_id": to["establishment_id"], "service_id": to.get("service_id") or None,
                  "practitioner_id": to.get("practitioner_id") or None}
        if send.get("escalated_to") == target:
            raise SendStateError("envoi déjà escaladé vers ce destinataire")
        if (target["service_id"], target["practitioner_id"]) == (send["service_id"], send["practitioner_id"]):
            raise InvalidFieldError("to", "l'escalade doit désigner un autre destinataire que l'envoi lui-même")
        self._escalated(send_id=send_id, to=target, reason=reason, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(Escalated)
    def _escalated(self, send_id: str, to: Json, reason: str, actor: Json, occurred_at: datetime) -> None:
        self.sends[send_id]["escalated_to"] = dict(to)
        self.last_occurred_at = occurred_at

    # ------------------------------------------------------------------ workflows: form, milestones, receipt, report

    @property
    def form(self) -> Json | None:
        """The structured form answered (`id`, `version`, `answers`), None if none (absent from older snapshots)."""
        form: Json | None = self.__dict__.get("_form")
        return form

    def answer_form(self, *, form: Json, answers: Json, actor: Actor, occurred_at: datetime) -> None:
        """Records the answers to the workflow's form, already validated against its definition (`form`:
        its `id` and `version`). A dossier keeps the form version it was first answered with (unless its
        workflow, hence its form, changed on the draft)."""
        self._draft(occurred_at)
        self._as_requester(actor)
        if not form.get("id") or not isinstance(form.get("version"), int):
            raise InvalidFieldError("form", "formulaire sans identifiant ni version")
        if self.form is not None and self.form["id"] == form["id"] and self.form["version"] != form["version"]:
            raise InvalidFieldError("form", "ce télédossier a été commencé avec une autre version du formulaire")
        # another form id: the draft's workflow changed since, and its form with it (the new answers replace the old)
        if self.form is not None and self.form["answers"] == answers:
            return
        self._form_answered(form={"id": form["id"], "version": form["version"]}, answers=answers,
                            actor=actor.as_dict(), occurred_at=occurred_at)

    @event(FormAnswered)
    def _form_answered(self, form: Json, answers: Json, actor: Json, occurred_at: datetime) -> None:
        self._form = dict(form, answers=answers)
        self.last_occurred_at = occurred_at

    @property
    def milestones(self) -> dict[str, str]:
        """Milestones recorded by a person: code → ISO time (the last recorded for each)."""
        return dict(self.__dict__.get("_milestones", {}))

    def record_milestone(self, *, milestone: str, at: datetime, note: str, actor: Actor, occurred_at: datetime) -> None:
        """A milestone as it happened (by the requester side; the decision may also come after an opinion)."""
        self._open(occurred_at)
        self._as_requester(actor)
        if milestone not in RECORDED_MILESTONES:
            raise InvalidFieldError("milestone", f"jalon inconnu (attendu : {', '.join(RECORDED_MILESTONES)})")
        if at.tzinfo is None:
            raise InvalidFieldError("at", "heure sans fuseau")
        if at > occurred_at + CLOCK_SKEW:
            raise InvalidFieldError("at", "heure dans le futur")
        self._milestone_recorded(milestone=milestone, at=at.isoformat(), note=note, actor=actor.as_dict(),
                                 occurred_at=occurred_at)

    @event(MilestoneRecorded)
    def _milestone_recorded(self, milestone: str, at: str, note: str, actor: Json, occurred_at: datetime) -> None:
        self._milestones = {**self.milestones, milestone: at}
        self.last_occurred_at = occurred_at

    def acknowledge_receipt(self, *, send_id: str, note: str, actor: Actor, occurred_at: datetime) -> None:
        """An imaging transfer received: its send is done; the dossier closes when none is left to do."""
        self._open(occurred_at)
        if self.workflow != Workflow.IMAGING_TRANSFER:
            raise DossierStateError("l'accusé de réception clôt un transfert d'imagerie ; ici, un avis est attendu")
        send = self._as_recipient(actor, send_id)
        self._send_in(send, SendState.REQUESTED, SendState.IN_PROGRESS)
        self._after_sending(send, occurred_at)
        self._receipt_acknowledged(send_id=send_id, note=note, actor=actor.as_dict(), occurred_at=occurred_at)
        if not any(s["state"] in ACTIVE_SEND_STATES for s in self.sends.values()):
            self._closed(note="Réception de l'imagerie accusée par le destinataire", actor=actor.as_dict(),
                         occurred_at=occurred_at)

    @event(ReceiptAcknowledged)
    def _receipt_acknowledged(self, send_id: str, note: str, actor: Json, occurred_at: datetime) -> None:
        send = self.sends[send_id]
        send["state"] = SendState.ANSWERED.value
        send["answered_on"] = occurred_at.isoformat()
        send["receipt"] = {"note": note, "by": actor["practitioner_id"]}
        self.last_occurred_at = occurred_at

    def issue_report(self, *, send_id: str, report: Json, actor: Actor, occurred_at: datetime) -> None:
        """Records the PDF of a send's opinion report (the platform produces it once the opinion is given)."""
        send = self.send_of(send_id)
        if actor.role != SYSTEM_ROLE and not self.is_recipient(actor, send_id):
            raise NotAllowedError("le compte rendu est produit par la plateforme ou le destinataire")
        if send.get("opinion") is None and send.get("receipt") is None:
            raise SendStateError("aucun avis rendu : pas de compte rendu")
        for key in ("report_id", "sha256", "size", "media_type"):
            if not report.get(key):
                raise InvalidFieldError("report", f"compte rendu sans {key}")
        self._report_issued(send_id=send_id, report=report, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(ReportIssued)
    def _report_issued(self, send_id: str, report: Json, actor: Json, occurred_at: datetime) -> None:
        self.sends[send_id]["reports"] = [*self.sends[send_id].get("reports", []), dict(report, issued_on=occurred_at.isoformat())]
        self.last_occurred_at = occurred_at
