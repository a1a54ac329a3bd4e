"""Dossier use cases: create, prepare, send, answer, close — one method each, keyword-only."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

from application.base import SYSTEM_ACTOR, RelaisBase, event_summary, parse_uuid
from application.directory import DirectoryUseCases
from application.errors import ForbiddenError
from domain.directory import Establishment, Practitioner
from domain.dossier import DECLINE_REASONS, FOLLOW_UPS, Dossier
from domain.errors import InvalidFieldError
from domain.values import (
    PARIS,
    Actor,
    Channel,
    Consent,
    ImagingSource,
    Role,
    Urgency,
    Workflow,
    business_time,
    code,
    patient_identity,
    text,
)

QUESTION_MAX = 10_000
REPORT_MAX = 50_000
NOTE_MAX = 5_000


@dataclass(frozen=True)
class DossierDetails:
    """A dossier as its readers see it (never the aggregate itself)."""

    id: str
    number: str
    version: int
    state: str
    workflow: str
    urgency: str
    question: str
    patient: dict
    consent: dict | None
    imaging_source: str
    requester: dict
    documents: tuple[dict, ...]
    imaging: tuple[dict, ...]
    sends: tuple[dict, ...]
    created_on: datetime
    first_sent_on: datetime | None
    imported_from: dict | None


@dataclass(frozen=True)
class HistoryEntry:
    version: int
    event: str
    occurred_at: datetime | None
    recorded_at: datetime
    actor: dict
    data: dict


class DossierUseCases(DirectoryUseCases, RelaisBase):
    """Use cases on dossiers. Every method checks who acts; errors record nothing."""

    def _when(self, occurred_at: datetime | None) -> datetime:
        return business_time(occurred_at, self.clock())

    def _act(
        self,
        dossier_id: str,
        actor_id: str,
        expected_version: int | None,
        action: Callable[[Dossier, Actor, datetime], object],
        occurred_at: datetime | None = None,
        establishment_id: str | None = None,
    ) -> int | None:
        when = self._when(occurred_at)
        dossier = self.load(Dossier, dossier_id, "télédossier")
        actor = self._actor_on(dossier, actor_id, establishment_id)
        if not dossier.may_read(actor):
            raise ForbiddenError("ce télédossier ne vous concerne pas")
        self.check_version(dossier, expected_version)
        action(dossier, actor, when)
        return self.commit(dossier)

    def _actor_on(
        self, dossier: Dossier, actor_id: str, establishment_id: str | None, role: str = Role.CLINICIAN
    ) -> Actor:
        """The actor, for the establishment through which they take part in this dossier.

        A practitioner working in several establishments acts for the one named, else for the
        one that is the dossier's requester or one of its recipients.
        """
        if establishment_id is not None:
            return self.actor_for(practitioner_id=actor_id, establishment_id=establishment_id, role=role)
        try:
            return self.actor_for(practitioner_id=actor_id, role=role)
        except ForbiddenError:
            involved = [dossier.requester["establishment_id"], *(s["establishment_id"] for s in dossier.sends.values())]
            for eid in involved:
                try:
                    return self.actor_for(practitioner_id=actor_id, establishment_id=eid, role=role)
                except ForbiddenError:
                    continue
            raise

    def _recipient(
        self, establishment_id: str, service_id: str | None, practitioner_id: str | None, channel: str | None,
        *, field_prefix: str,
    ) -> dict:
        """Who a send goes to, checked against the directory (service of that establishment,
        practitioner practising there as a clinician), with the establishment's region/department."""
        est = self.load(Establishment, establishment_id, "établissement destinataire")
        if service_id and service_id not in est.services:
            raise InvalidFieldError(f"{field_prefix}service_id", f"service inconnu dans {est.name}")
        if practitioner_id:
            p = self.load(Practitioner, practitioner_id, "professionnel destinataire")
            membership = p.memberships.get(str(est.id))
            if not p.active or not membership or Role.CLINICIAN not in membership["roles"]:
                raise InvalidFieldError(f"{field_prefix}practitioner_id", f"ce professionnel n'exerce pas à {est.name}")
        return {
            "establishment_id": str(est.id),
            "service_id": service_id or None,
            "practitioner_id": str(parse_uuid(practitioner_id, "professionnel")) if practitioner_id else None,
            "region": est.region,
            "department": est.department,
            "channel": code(Channel, channel, "channel") if channel else None,
        }

    # ------------------------------------------------------------------ requester

    def create_dossier(
        self,
        *,
        actor_id: str,
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
        when = self._when(occurred_at)
        actor = self.actor_for(practitioner_id=actor_id, establishment_id=establishment_id)
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
        self.commit(dossier)
        return str(dossier.id)

    def edit_draft(
        self,
        *,
        dossier_id: str,
        actor_id: str,
        expected_version: int | None = None,
        question: str | None = None,
        urgency: str | None = None,
        workflow: str | None = None,
        imaging_source: str | None = None,
        patient: dict | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        changes: dict = {}
        if question is not None:
            changes["question"] = text(question, "question", max_len=QUESTION_MAX)
        if urgency is not None:
            changes["urgency"] = code(Urgency, urgency, "urgency")
        if workflow is not None:
            changes["workflow"] = code(Workflow, workflow, "workflow")
        if imaging_source is not None:
            changes["imaging_source"] = code(ImagingSource, imaging_source, "imaging_source")
        if patient is not None:
            changes["patient"] = patient_identity(**patient, today=self.clock().astimezone(PARIS).date())
        return self._act(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.edit(changes=changes, actor=a, occurred_at=t), occurred_at,
        )

    def record_consent(
        self, *, dossier_id: str, actor_id: str, status: str, note: str = "", expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        status = code(Consent, status, "consent")
        note = text(note, "consent_note", max_len=NOTE_MAX, required=False)
        return self._act(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.record_consent(status=status, note=note, actor=a, occurred_at=t), occurred_at,
        )

    def attach_document(
        self, *, dossier_id: str, actor_id: str, filename: str, media_type: str, size: int, sha256: str,
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
        document = {
            "document_id": str(uuid4()), "filename": filename, "media_type": media_type, "size": size,
            "sha256": sha256, "description": text(description, "description", max_len=500, required=False),
        }
        self._act(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.attach_document(document=document, actor=a, occurred_at=t), occurred_at,
        )
        return document["document_id"]

    def remove_document(
        self, *, dossier_id: str, actor_id: str, document_id: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        return self._act(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.remove_document(document_id=document_id, actor=a, occurred_at=t), occurred_at,
        )

    def attach_imaging(
        self, *, dossier_id: str, actor_id: str | None, study_instance_uid: str, source: str,
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
            when = self._when(occurred_at)
            dossier = self.load(Dossier, dossier_id, "télédossier")
            self.check_version(dossier, expected_version)
            dossier.attach_imaging(study=study, actor=Actor.from_dict(SYSTEM_ACTOR), occurred_at=when)
            return self.commit(dossier)
        return self._act(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.attach_imaging(study=study, actor=a, occurred_at=t), occurred_at,
        )

    def address_recipient(
        self, *, dossier_id: str, actor_id: str, establishment_id: str, service_id: str | None = None,
        practitioner_id: str | None = None, channel: str | None = None, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> str:
        recipient = {
            "send_id": str(uuid4()),
            **self._recipient(establishment_id, service_id, practitioner_id, channel, field_prefix=""),
        }
        self._act(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.address(recipient=recipient, actor=a, occurred_at=t), occurred_at,
        )
        return recipient["send_id"]

    def remove_recipient(
        self, *, dossier_id: str, actor_id: str, send_id: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        return self._act(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.remove_recipient(send_id=send_id, actor=a, occurred_at=t), occurred_at,
        )

    def send_dossier(
        self, *, dossier_id: str, actor_id: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        return self._act(
            dossier_id, actor_id, expected_version, lambda d, a, t: d.send(actor=a, occurred_at=t), occurred_at
        )

    def provide_complement(
        self, *, dossier_id: str, actor_id: str, send_id: str, message: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        message = text(message, "message", max_len=NOTE_MAX)
        return self._act(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.provide_complement(send_id=send_id, message=message, actor=a, occurred_at=t),
            occurred_at,
        )

    def close_dossier(
        self, *, dossier_id: str, actor_id: str, note: str = "", expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        note = text(note, "note", max_len=NOTE_MAX, required=False)
        return self._act(
            dossier_id, actor_id, expected_version, lambda d, a, t: d.close(note=note, actor=a, occurred_at=t),
            occurred_at,
        )

    def cancel_dossier(
        self, *, dossier_id: str, actor_id: str, reason: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        reason = text(reason, "reason", max_len=NOTE_MAX)
        return self._act(
            dossier_id, actor_id, expected_version, lambda d, a, t: d.cancel(reason=reason, actor=a, occurred_at=t),
            occurred_at,
        )

    # ------------------------------------------------------------------ recipient

    def accept(
        self, *, dossier_id: str, actor_id: str, send_id: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        return self._act(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.accept(send_id=send_id, actor=a, occurred_at=t), occurred_at,
        )

    def decline(
        self, *, dossier_id: str, actor_id: str, send_id: str, reason_code: str, reason: str = "",
        expected_version: int | None = None, occurred_at: datetime | None = None,
    ) -> int | None:
        if reason_code not in DECLINE_REASONS:
            raise InvalidFieldError("reason_code", f"motif inconnu (attendu : {', '.join(DECLINE_REASONS)})")
        reason = text(reason, "reason", max_len=NOTE_MAX, required=reason_code == "other")
        return self._act(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.decline(send_id=send_id, reason_code=reason_code, reason=reason, actor=a, occurred_at=t),
            occurred_at,
        )

    def request_complement(
        self, *, dossier_id: str, actor_id: str, send_id: str, message: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        message = text(message, "message", max_len=NOTE_MAX)
        return self._act(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.request_complement(send_id=send_id, message=message, actor=a, occurred_at=t),
            occurred_at,
        )

    def forward(
        self, *, dossier_id: str, actor_id: str, send_id: str, to_establishment_id: str | None = None,
        to_service_id: str | None = None, to_practitioner_id: str | None = None, note: str = "",
        to_channel: str | None = None, expected_version: int | None = None, occurred_at: datetime | None = None,
    ) -> int | None:
        note = text(note, "note", max_len=NOTE_MAX, required=False)

        def action(d: Dossier, a: Actor, t: datetime) -> None:
            to = self._recipient(
                to_establishment_id or d.send_of(send_id)["establishment_id"], to_service_id, to_practitioner_id,
                to_channel, field_prefix="to_",
            )
            d.forward(send_id=send_id, to=to, note=note, actor=a, occurred_at=t)

        return self._act(dossier_id, actor_id, expected_version, action, occurred_at)

    def give_opinion(
        self, *, dossier_id: str, actor_id: str, send_id: str, report: str, conclusion: str = "",
        recommendations: str = "", follow_up: str = "", expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        """The structured opinion: report, conclusion, recommendations, urgency of the follow-up."""
        report = text(report, "report", max_len=REPORT_MAX)
        conclusion = text(conclusion, "conclusion", max_len=NOTE_MAX, required=False)
        recommendations = text(recommendations, "recommendations", max_len=NOTE_MAX, required=False)
        if follow_up and follow_up not in FOLLOW_UPS:
            raise InvalidFieldError("follow_up", f"urgence du suivi inconnue (attendu : {', '.join(FOLLOW_UPS)})")
        return self._act(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.give_opinion(
                send_id=send_id, report=report, conclusion=conclusion, recommendations=recommendations,
                follow_up=follow_up, actor=a, occurred_at=t,
            ),
            occurred_at,
        )

    # ------------------------------------------------------------------ reading

    def get_dossier(self, *, dossier_id: str, actor_id: str, role: str = Role.CLINICIAN) -> DossierDetails:
        d = self.load(Dossier, dossier_id, "télédossier")
        actor = self._actor_on(d, actor_id, None, role)
        if not d.may_read(actor):
            raise ForbiddenError("ce télédossier ne vous concerne pas")
        return DossierDetails(
            id=str(d.id), number=d.number, version=d.version, state=str(d.state), workflow=d.workflow,
            urgency=d.urgency, question=d.question, patient=dict(d.patient), consent=d.consent,
            imaging_source=d.imaging_source, requester=dict(d.requester),
            documents=tuple(d.documents.values()), imaging=tuple(d.imaging.values()),
            sends=tuple(dict(s) for s in d.sends.values()), created_on=d.opened_on,
            first_sent_on=d.first_sent_on, imported_from=d.imported_from,
        )

    def dossier_history(self, *, dossier_id: str, actor_id: str) -> list[HistoryEntry]:
        """Every event of a dossier, in order, with actor and both times (auditors only)."""
        actor = self.actor_for(practitioner_id=actor_id, role=Role.AUDITOR)
        d = self.load(Dossier, dossier_id, "télédossier")
        if not d.may_read(actor):  # pragma: no cover - auditors read everything
            raise ForbiddenError("accès refusé")
        entries = []
        for ev in self.events.get(d.id):
            data = event_summary(ev)
            entries.append(
                HistoryEntry(
                    version=ev.originator_version, event=type(ev).__name__, occurred_at=data.pop("occurred_at", None),
                    recorded_at=ev.timestamp, actor=data.pop("actor", {}), data=data,
                )
            )
        return entries
