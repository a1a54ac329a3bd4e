"""Requester-side dossier use cases: create, prepare, send, close or cancel; and reading a dossier."""

from __future__ import annotations

import re
from datetime import datetime

from application.actors import Actors, Who
from application.base import SYSTEM_ACTOR, Core
from application.commands import DossierCommands, submission_of
from application.deadlines import DeadlineRules
from application.dossier_views import DossierDetails, HistoryEntry, as_seen_by, details_of, history_of
from application.errors import ForbiddenError
from domain.dossier import Dossier
from domain.errors import InvalidFieldError
from domain.submission import Submission
from domain.values import (
    PARIS,
    Actor,
    Consent,
    ImagingSource,
    Json,
    Role,
    Urgency,
    Workflow,
    code,
    patient_identity,
    text,
)

QUESTION_MAX = 10_000
REPORT_MAX = 50_000
NOTE_MAX = 5_000


class DossierUseCases:
    """Use cases of the requester on dossiers, and plain reads. Every method checks who acts;
    errors record nothing."""

    def __init__(self, core: Core, actors: Actors, commands: DossierCommands, deadlines: DeadlineRules) -> None:
        self.core = core
        self.actors = actors
        self.commands = commands
        self.deadlines = deadlines

    def create_dossier(
        self,
        *,
        actor_id: Who,
        workflow: str,
        patient_birth_name: str,
        patient_first_names: str,
        patient_birth_date: str,
        patient_sex: str,
        patient_birth_place_code: str,
        question: str,
        urgency: str = Urgency.ROUTINE,
        consent: str | None = None,
        consent_note: str = "",
        imaging_source: str = ImagingSource.NONE,
        patient_ins: str | None = None,
        patient_used_name: str | None = None,
        requester_service_id: str | None = None,
        establishment_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> str:
        when = self.commands.when(occurred_at)
        actor = self.actors.acting(actor_id, establishment_id)
        if actor.role != Role.CLINICIAN:
            raise ForbiddenError("seul un clinicien peut créer un télédossier")
        workflow = code(Workflow, workflow, "workflow")
        if workflow == Workflow.LEGACY:
            raise InvalidFieldError("workflow", "le module « legacy » n'existe que dans l'historique importé")
        if requester_service_id and requester_service_id not in actor.service_ids:
            raise InvalidFieldError("requester_service_id", "vous n'appartenez pas à ce service")
        consent_state = None
        if consent:
            consent_state = {
                "status": code(Consent, consent, "consent"),
                "note": text(consent_note, "consent_note", max_len=NOTE_MAX, required=False),
                "occurred_at": when.isoformat(),
            }
        submission = submission_of(actor_id)
        if submission is not None and (first := self.core.find(Submission, submission)) is not None:
            return first.dossier_id  # the same form sent again: the dossier it created
        dossier = Dossier(
            workflow=workflow,
            requester={
                "establishment_id": actor.establishment_id,
                "practitioner_id": actor.practitioner_id,
                "service_id": requester_service_id,
            },
            patient=patient_identity(
                birth_name=patient_birth_name, first_names=patient_first_names, birth_date=patient_birth_date,
                sex=patient_sex, birth_place_code=patient_birth_place_code, ins=patient_ins,
                used_name=patient_used_name, today=when.astimezone(PARIS).date(),
            ),
            question=text(question, "question", max_len=QUESTION_MAX),
            urgency=code(Urgency, urgency, "urgency"),
            consent=consent_state,
            imaging_source=code(ImagingSource, imaging_source, "imaging_source"),
            actor=actor.as_dict(),
            occurred_at=when,
            imported_from=None,
        )
        self.commands.save(dossier, actor_id, when)
        if submission is not None and (first := self.core.find(Submission, submission)) is not None:
            return first.dossier_id  # ours, or the one the same form created at the same moment
        return str(dossier.id)

    def edit_draft(
        self,
        *,
        dossier_id: str,
        actor_id: Who,
        expected_version: int | None = None,
        question: str | None = None,
        urgency: str | None = None,
        workflow: str | None = None,
        imaging_source: str | None = None,
        patient: Json | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        changes: Json = {}
        if question is not None:
            changes["question"] = text(question, "question", max_len=QUESTION_MAX)
        if urgency is not None:
            changes["urgency"] = code(Urgency, urgency, "urgency")
        if workflow is not None:
            changes["workflow"] = code(Workflow, workflow, "workflow")
        if imaging_source is not None:
            changes["imaging_source"] = code(ImagingSource, imaging_source, "imaging_source")
        if patient is not None:
            changes["patient"] = patient_identity(**patient, today=self.core.clock().astimezone(PARIS).date())
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.edit(changes=changes, actor=a, occurred_at=t), occurred_at,
        )

    def record_consent(
        self, *, dossier_id: str, actor_id: Who, status: str, note: str = "", expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        status = code(Consent, status, "consent")
        note = text(note, "consent_note", max_len=NOTE_MAX, required=False)
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.record_consent(status=status, note=note, actor=a, occurred_at=t), occurred_at,
        )

    def attach_document(
        self, *, dossier_id: str, actor_id: Who, filename: str, media_type: str, size: int, sha256: str,
        description: str = "", expected_version: int | None = None, occurred_at: datetime | None = None,
    ) -> str:
        filename = text(filename, "filename", max_len=255)
        if "/" in filename or "\\" in filename:
            raise InvalidFieldError("filename", "nom de fichier sans chemin attendu")
        if not re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", media_type or ""):
            raise InvalidFieldError("media_type", "type de contenu invalide")
        if not re.fullmatch(r"[0-9a-f]{64}", sha256 or ""):
            raise InvalidFieldError("sha256", "empreinte SHA-256 hexadécimale attendue")
        if not isinstance(size, int) or size < 0:
            raise InvalidFieldError("size", "taille invalide")
        document: Json = {
            "document_id": self.commands.new_id(actor_id, "document"), "filename": filename, "media_type": media_type, "size": size,
            "sha256": sha256, "description": text(description, "description", max_len=500, required=False),
        }
        self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.attach_document(document=document, actor=a, occurred_at=t), occurred_at,
        )
        return str(document["document_id"])

    def remove_document(
        self, *, dossier_id: str, actor_id: Who, document_id: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.remove_document(document_id=document_id, actor=a, occurred_at=t), occurred_at,
        )

    def attach_imaging(
        self, *, dossier_id: str, actor_id: Who | None, study_instance_uid: str, source: str,
        description: str = "", modalities: list[str] | None = None, study_date: str | None = None,
        series_count: int = 0, instance_count: int = 0, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        """Attaches a study; `actor_id=None` when the platform itself records a DICOM receipt."""
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", study_instance_uid or "") or len(study_instance_uid) > 64:
            raise InvalidFieldError("study_instance_uid", "UID DICOM invalide")
        study = {
            "study_instance_uid": study_instance_uid,
            "source": code(ImagingSource, source, "source"),
            "description": text(description, "description", max_len=200, required=False),
            "modalities": sorted(set(modalities or [])),
            "study_date": study_date,
            "series_count": int(series_count),
            "instance_count": int(instance_count),
        }
        if actor_id is None:
            return self.commands.run_as(
                Actor.from_dict(SYSTEM_ACTOR), dossier_id, expected_version,
                lambda d, a, t: d.attach_imaging(study=study, actor=a, occurred_at=t), occurred_at,
            )
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.attach_imaging(study=study, actor=a, occurred_at=t), occurred_at,
        )

    def address_recipient(
        self, *, dossier_id: str, actor_id: Who, establishment_id: str, service_id: str | None = None,
        practitioner_id: str | None = None, channel: str | None = None, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> str:
        send_id = self.commands.new_id(actor_id, "send")
        recipient = {
            "send_id": send_id,
            **self.commands.recipient(establishment_id, service_id, practitioner_id, channel, field_prefix=""),
        }
        self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.address(recipient=recipient, actor=a, occurred_at=t), occurred_at,
        )
        return send_id

    def remove_recipient(
        self, *, dossier_id: str, actor_id: Who, send_id: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.remove_recipient(send_id=send_id, actor=a, occurred_at=t), occurred_at,
        )

    def send_dossier(
        self, *, dossier_id: str, actor_id: Who, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        def action(d: Dossier, a: Actor, t: datetime) -> None:
            d.send(actor=a, occurred_at=t, delays_of=self.deadlines.for_dossier(d))

        return self.commands.run(dossier_id, actor_id, expected_version, action, occurred_at)

    def provide_complement(
        self, *, dossier_id: str, actor_id: Who, send_id: str, message: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        message = text(message, "message", max_len=NOTE_MAX)
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.provide_complement(send_id=send_id, message=message, actor=a, occurred_at=t),
            occurred_at,
        )

    def close_dossier(
        self, *, dossier_id: str, actor_id: Who, note: str = "", expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        note = text(note, "note", max_len=NOTE_MAX, required=False)
        return self.commands.run(
            dossier_id, actor_id, expected_version, lambda d, a, t: d.close(note=note, actor=a, occurred_at=t),
            occurred_at,
        )

    def cancel_dossier(
        self, *, dossier_id: str, actor_id: Who, reason: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        reason = text(reason, "reason", max_len=NOTE_MAX)
        return self.commands.run(
            dossier_id, actor_id, expected_version, lambda d, a, t: d.cancel(reason=reason, actor=a, occurred_at=t),
            occurred_at,
        )

    def version_seen(self, *, dossier_id: str, actor_id: Who, seen: int) -> int:
        """The version a page that showed version `seen` shows once its own user's changes made from it
        are counted (a study they attached or imported from the draft's imaging step): the last version
        up to which every later event is theirs. A change by anyone else stops it there, so that the
        page's next step still meets that change as a conflict."""
        d = self.core.load(Dossier, dossier_id, "télédossier")
        actor = self.commands.acting_on(d, actor_id)
        version = seen
        for e in self.core.events_of(d.id):
            if e.originator_version <= seen:
                continue
            if getattr(e, "actor", {}).get("practitioner_id") != actor.practitioner_id:
                break
            version = e.originator_version
        return version

    # ------------------------------------------------------------------ reading

    def get_dossier(self, *, dossier_id: str, actor_id: Who, role: str = Role.CLINICIAN) -> DossierDetails:
        """The dossier's details, if the actor may read it (not traced: for pages that trace their own read).
        A session's `Acting` reads in its own role; `role` is for a practitioner id."""
        d = self.core.load(Dossier, dossier_id, "télédossier")
        actor = self.actors.of(actor_id, d, role)
        if not d.may_read(actor):
            raise ForbiddenError("ce télédossier ne vous concerne pas")
        return details_of(d, as_seen_by(d, actor, history_of(self.core.events_of(d.id))))  # the thread, milestones too

    def dossier_history(self, *, dossier_id: str, actor_id: str) -> list[HistoryEntry]:
        """Every event of a dossier, in order, with actor and both times (auditors only)."""
        actor = self.actors.actor_for(practitioner_id=actor_id, role=Role.AUDITOR)
        d = self.core.load(Dossier, dossier_id, "télédossier")
        if not d.may_read(actor):  # pragma: no cover - auditors read everything
            raise ForbiddenError("accès refusé")
        return list(history_of(self.core.events_of(d.id)))
