"""The opinion report of a send: what it is made from, its record by the platform, its traced download."""

from __future__ import annotations

from dataclasses import dataclass, replace
from uuid import NAMESPACE_URL, uuid5

from application.access_log import AccessLog
from application.actors import Actors
from application.base import SYSTEM_ACTOR, Core, parse_uuid
from application.commands import DossierCommands
from application.dossier_views import DossierDetails, HistoryEntry, details_of, history_of
from application.errors import ForbiddenError, NotFoundError
from domain.directory import Establishment, Practitioner
from domain.dossier import Dossier
from domain.errors import SendStateError
from domain.imaging import ReceivedStudy
from domain.values import Actor, Json, Role

# What a report tells of the dossier's life besides the opinion: the technical incidents (R6316-4).
INCIDENT_EVENTS = ("Escalated", "ImagingHeld", "Forwarded", "Declined")
# ... and of its studies' (their own streams): a PACS retrieve or an export to a PACS that did not complete
IMAGING_INCIDENTS = {"RetrieveRecorded": ("failed", "incomplete"), "ExportRecorded": ("failed", "partial")}


class NoReportError(SendStateError):
    """No report for this send: no opinion (or receipt) yet (409, French)."""


class ReportPendingError(NoReportError):
    """The send is answered but its report PDF is not made yet (its job has not run)."""


@dataclass(frozen=True)
class ReportMaterial:
    """Everything a send's report shows, read by the platform at one version of the dossier."""

    dossier: DossierDetails
    send: Json
    history: tuple[HistoryEntry, ...]
    people: dict[str, Json]  # practitioner id → {name, rpps, specialty}
    establishments: dict[str, Json]  # establishment id → {name, finess, services: {id: name}}
    incidents: tuple[HistoryEntry, ...]
    current: Json | None  # the latest report when nothing but reports happened since it was made

    @property
    def version(self) -> int:
        return self.dossier.version

    @property
    def report_id(self) -> str:
        """Deterministic: the same send at the same version makes the same report id."""
        return str(uuid5(NAMESPACE_URL, f"relais:report:{self.dossier.id}:{self.send['send_id']}:{self.version}"))


def has_answer(send: Json) -> bool:
    return send.get("opinion") is not None or send.get("receipt") is not None


def up_to_date(send: Json, history: tuple[HistoryEntry, ...]) -> Json | None:
    """The send's latest report if only reports were recorded after the version it was made from."""
    reports = send.get("reports") or []
    if not reports:
        return None
    latest: Json = reports[-1]
    made_from = int(latest.get("dossier_version") or 0)
    if all(h.event == "ReportIssued" for h in history if h.version > made_from):
        return latest
    return None


class ReportUseCases:
    """The platform reads the dossier to make a report and records it; readers download it, traced."""

    def __init__(self, core: Core, actors: Actors, access_log: AccessLog, commands: DossierCommands) -> None:
        self.core = core
        self.actors = actors
        self.access_log = access_log
        self.commands = commands

    def report_material(self, *, dossier_id: str, send_id: str) -> ReportMaterial:
        """What the report of `send_id` shows now (read by the platform itself: not an access by a user)."""
        d = self.core.load(Dossier, dossier_id, "télédossier")
        send = dict(d.send_of(send_id))
        if not has_answer(send):
            raise NoReportError("aucun avis n'a encore été rendu pour cet envoi : pas de compte rendu")
        history = history_of(self.core.events_of(d.id))
        details = details_of(d, history)
        ids = {d.requester.get("practitioner_id"), send.get("practitioner_id"), (send.get("opinion") or {}).get("by")}
        ids |= {m["actor"].get("practitioner_id") for m in details.messages if m["send_id"] == send_id}
        ids |= {h.actor.get("practitioner_id") for h in history if h.event in ("Forwarded", "Accepted", "ReceiptAcknowledged")
                and h.data.get("send_id") == send_id}
        incidents = tuple(sorted(
            [h for h in history if h.event in INCIDENT_EVENTS and h.data.get("send_id") in (None, send_id)]
            + self._imaging_incidents(details),
            key=lambda h: h.occurred_at or h.recorded_at,
        ))
        targets = [h.data["to"] for h in incidents if isinstance(h.data.get("to"), dict)]
        ids |= {t.get("practitioner_id") for t in targets}
        establishments = {d.requester.get("establishment_id"), send.get("establishment_id")}
        establishments |= {t.get("establishment_id") for t in targets}
        return ReportMaterial(
            dossier=details, send=send, history=history,
            people={str(p): self._person(str(p)) for p in ids if p and p != "system"},
            establishments={str(e): self._establishment(str(e)) for e in establishments if e},
            incidents=incidents, current=up_to_date(send, history),
        )

    def _imaging_incidents(self, details: DossierDetails) -> list[HistoryEntry]:
        """Retrieves and exports of the dossier's studies, for this dossier, that did not complete."""
        out: list[HistoryEntry] = []
        for study in details.imaging:
            if not study.get("received_study_id"):
                continue
            events = [e for e in self.core.events_of(parse_uuid(study["received_study_id"], "examen"))
                      if isinstance(e, ReceivedStudy.RetrieveRecorded | ReceivedStudy.ExportRecorded)
                      and e.dossier_id == details.id and e.status in IMAGING_INCIDENTS[type(e).__name__]]
            out += [replace(h, data=dict(h.data, study=study)) for h in history_of(events)]
        return out

    def _person(self, practitioner_id: str) -> Json:
        try:
            p = self.core.load(Practitioner, practitioner_id, "professionnel")
        except NotFoundError:
            return {"name": "", "rpps": "", "specialty": ""}
        return {"name": f"{p.given_name} {p.family_name}".strip(), "rpps": p.rpps, "specialty": p.specialty or ""}

    def _establishment(self, establishment_id: str) -> Json:
        try:
            e = self.core.load(Establishment, establishment_id, "établissement")
        except NotFoundError:
            return {"name": "", "finess": "", "services": {}}
        return {"name": e.name, "finess": e.finess, "services": {k: v.get("name", "") for k, v in e.services.items()}}

    def reports_due(self, *, dossier_id: str) -> list[tuple[str, int]]:
        """(send id, dossier version) of each answered send whose latest report (if any) is out of date:
        a report to make (asked after every change to a dossier; cheap: one load, no access traced)."""
        d = self.core.load(Dossier, dossier_id, "télédossier")
        answered = [sid for sid, s in d.sends.items() if has_answer(s)]
        if not answered:
            return []
        history = history_of(self.core.events_of(d.id))
        return [(sid, d.version) for sid in answered if up_to_date(d.sends[sid], history) is None]

    def record_report(self, *, dossier_id: str, send_id: str, report: Json, made_from: int) -> int | None:
        """Records the report made from version `made_from` (its bytes already stored); ConflictError when
        the dossier moved meanwhile (the caller makes it again from the new version)."""
        record = dict(report, dossier_version=made_from)
        return self.commands.run_as(
            Actor.from_dict(SYSTEM_ACTOR), dossier_id, made_from,
            lambda d, a, t: d.issue_report(send_id=send_id, report=record, actor=a, occurred_at=t),
        )

    def open_report(
        self, *, dossier_id: str, actor_id: str, send_id: str, establishment_id: str | None = None,
        role: str = Role.CLINICIAN,
    ) -> Json:
        """The latest report of a send, for its requester side, its recipient or an auditor; the download
        is traced (kind report_pdf), and so is a refusal."""
        target = f"send:{send_id[:64]}"
        try:
            actor = self.actors.actor_for(practitioner_id=actor_id, establishment_id=establishment_id, role=role)
        except ForbiddenError as e:
            self.access_log.trace_denied(
                dossier_id=dossier_id, kind="report_pdf", reason=str(e), target=target,
                actor={"practitioner_id": actor_id, "role": role, "establishment_id": establishment_id or ""},
            )
            raise
        d = self.core.load(Dossier, dossier_id, "télédossier")
        send = d.sends.get(send_id)
        if send is None and d.may_read(actor):
            raise NotFoundError("envoi inconnu dans ce télédossier")
        if send is None or not (actor.role == Role.AUDITOR or d.is_requester(actor) or d.is_sent_to(actor, send_id)):
            self.access_log.record_access(
                dossier_id=str(d.id), actor=actor.as_dict(), kind="report_pdf", target=target, outcome="denied",
                reason="ce compte rendu ne concerne pas l'utilisateur", dossier_version=d.version,
            )
            raise ForbiddenError("ce compte rendu ne vous concerne pas")
        reports = send.get("reports") or []
        if not reports:
            if not has_answer(send):
                raise NoReportError("aucun avis n'a encore été rendu pour cet envoi : pas de compte rendu")
            raise ReportPendingError("le compte rendu PDF de cet avis est en cours de production : réessayez dans un instant")
        latest: Json = dict(reports[-1])
        self.access_log.record_access(
            dossier_id=str(d.id), actor=actor.as_dict(), kind="report_pdf", target=f"{target}:{latest['report_id']}",
            dossier_version=d.version,
        )
        return latest
