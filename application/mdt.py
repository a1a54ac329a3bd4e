"""MDT session (RCP) use cases: schedule, register and withdraw dossiers, attendance, the decision and its opinion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from application.access_log import AccessLog
from application.actors import Acting, Actors, Who
from application.base import Core
from application.commands import require_version, submission_of
from application.dossiers import NOTE_MAX, REPORT_MAX
from application.errors import ConflictError, ForbiddenError, NotFoundError
from domain.directory import Establishment, Practitioner
from domain.dossier import Dossier
from domain.errors import InvalidFieldError
from domain.mdt import SESSION_TYPES, MdtSession, fiche_text
from domain.submission import Submission, derived_id
from domain.values import Actor, Json, Role, business_time, text

TITLE_MAX = 200
PLACE_MAX = 300


@dataclass(frozen=True)
class AgendaItem:
    """One dossier on a session's agenda as a reader sees it (patient and question only if they may read it)."""

    dossier_id: str
    number: str
    send_id: str
    readable: bool
    patient: Json
    question: str
    form: Json | None
    requester_establishment_id: str
    decision: Json | None
    version: int


@dataclass(frozen=True)
class SessionDetails:
    """A session as its readers see it (never the aggregate itself)."""

    id: str
    version: int
    session_type: str
    label: str
    title: str
    starts_at: datetime
    ends_at: datetime
    duration_minutes: int
    place: str
    video_url: str
    specialties: tuple[str, ...]
    participants: tuple[Json, ...]  # practitioner_id, name, rpps, specialty, email
    coordinator: Json  # practitioner_id, name, rpps, email
    establishment_id: str
    establishment_name: str
    service_id: str
    service_name: str
    agenda: tuple[AgendaItem, ...]
    attendance: tuple[Json, ...]  # participant fields + specialty, status
    quorum: Json
    sequence: int
    cancelled: Json | None
    may_manage: bool


class MdtUseCases:
    """Each command checks who acts through the aggregates; errors record nothing."""

    def __init__(self, core: Core, actors: Actors, access_log: AccessLog) -> None:
        self.core = core
        self.actors = actors
        self.access_log = access_log

    # ------------------------------------------------------------------ helpers

    def _when(self, occurred_at: datetime | None) -> datetime:
        return business_time(occurred_at, self.core.clock())

    def _person(self, practitioner_id: str, field: str) -> Json:
        try:
            p = self.core.load(Practitioner, practitioner_id, "professionnel")
        except NotFoundError:
            raise InvalidFieldError(field, "professionnel inconnu") from None
        if not p.active:
            raise InvalidFieldError(field, f"{p.display_name} : compte désactivé")
        return {"practitioner_id": str(p.id), "name": p.display_name, "rpps": p.rpps, "specialty": p.specialty}

    def _session(self, session_id: str) -> MdtSession:
        return self.core.load(MdtSession, session_id, "séance de RCP")

    def _save(self, who: Who, what: str, *aggregates: MdtSession | Dossier) -> int | None:
        """Commits, with the form's submission when it has a token (the same form sent again runs nothing)."""
        submission = submission_of(who)
        if submission is None or not isinstance(who, Acting):
            return self.core.commit(*aggregates)
        record = Submission(practitioner_id=who.practitioner_id, token=who.token, dossier_id=what,
                            occurred_at=self.core.clock())
        return self.core.commit(*aggregates, record)

    def _done_before(self, who: Who) -> bool:
        submission = submission_of(who)
        return submission is not None and self.core.exists(submission)

    def _run(
        self, session_id: str, who: Who, expected_version: int | None, action: Callable[[MdtSession, Actor], object],
    ) -> int | None:
        """Loads the session, acts as `who` on the version they read, commits (once per form)."""
        session = self._session(session_id)
        actor = self.actors.acting(who)
        if self._done_before(who):
            return None
        require_version(who, expected_version)
        if expected_version is not None and session.version != expected_version:
            raise ConflictError(f"la séance a changé depuis votre lecture (version {expected_version} → {session.version}) : "
                                "rien n'a été enregistré, rechargez la page")
        action(session, actor)
        return self._save(who, str(session.id), session)

    # ------------------------------------------------------------------ commands

    def schedule_session(
        self, *, actor_id: Who, service_id: str, starts_at: datetime, duration_minutes: int, place: str = "",
        video_url: str = "", specialties: list[str] | None = None, participant_ids: list[str] | None = None,
        session_type: str = "kidney_transplant", title: str = "", occurred_at: datetime | None = None,
    ) -> str:
        """A new session organised by the actor's service; the actor coordinates it. Returns its id (derived from
        the form's token: the same form sent twice schedules one session)."""
        actor = self.actors.acting(actor_id)
        if actor.role != Role.CLINICIAN:
            raise ForbiddenError("seul un clinicien organise une séance de RCP")
        submission = submission_of(actor_id)
        session_id = derived_id(submission, "mdt-session") if submission is not None else uuid4()
        if self.core.exists(session_id):
            return str(session_id)
        est = self.core.load(Establishment, actor.establishment_id, "établissement")
        service = est.services.get(service_id)
        if service is None:
            raise InvalidFieldError("service_id", f"service inconnu dans {est.name}")
        if session_type not in SESSION_TYPES:
            raise InvalidFieldError("session_type", "type de séance inconnu")
        participants = [self._person(pid, "participant_ids") for pid in dict.fromkeys(participant_ids or [])]
        session = MdtSession.schedule(
            session_id=session_id, session_type=session_type, title=text(title, "title", max_len=TITLE_MAX, required=False),
            starts_at=starts_at, duration_minutes=duration_minutes,
            place=text(place, "place", max_len=PLACE_MAX, required=False),
            video_url=text(video_url, "video_url", max_len=PLACE_MAX, required=False),
            specialties=specialties or list(SESSION_TYPES[session_type]["specialties"]), participants=participants,
            service={"service_id": service_id, "establishment_id": str(est.id)}, actor=actor,
            occurred_at=self._when(occurred_at),
        )
        self._save(actor_id, str(session.id), session)
        return str(session.id)

    def reschedule_session(
        self, *, session_id: str, actor_id: Who, starts_at: datetime, duration_minutes: int, place: str = "",
        video_url: str = "", expected_version: int | None = None, occurred_at: datetime | None = None,
    ) -> int | None:
        when = self._when(occurred_at)
        place = text(place, "place", max_len=PLACE_MAX, required=False)
        video_url = text(video_url, "video_url", max_len=PLACE_MAX, required=False)
        return self._run(session_id, actor_id, expected_version, lambda s, a: s.reschedule(
            starts_at=starts_at, duration_minutes=duration_minutes, place=place, video_url=video_url, actor=a,
            occurred_at=when,
        ))

    def cancel_session(
        self, *, session_id: str, actor_id: Who, reason: str = "", expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        when = self._when(occurred_at)
        reason = text(reason, "reason", max_len=NOTE_MAX, required=False)
        return self._run(session_id, actor_id, expected_version,
                         lambda s, a: s.cancel(reason=reason, actor=a, occurred_at=when))

    def register_dossier(
        self, *, session_id: str, dossier_id: str, actor_id: Who, occurred_at: datetime | None = None,
    ) -> int | None:
        """Puts a dossier the actor may read on the session's agenda (idempotent)."""
        when = self._when(occurred_at)
        dossier = self.core.load(Dossier, dossier_id, "télédossier")

        def action(s: MdtSession, a: Actor) -> None:
            if not dossier.may_read(a):
                raise ForbiddenError("ce télédossier ne vous concerne pas")
            s.register(dossier=dossier, actor=a, occurred_at=when)

        return self._run(session_id, actor_id, None, action)

    def withdraw_dossier(
        self, *, session_id: str, dossier_id: str, actor_id: Who, reason: str = "", occurred_at: datetime | None = None,
    ) -> int | None:
        when = self._when(occurred_at)
        reason = text(reason, "reason", max_len=NOTE_MAX, required=False)
        return self._run(session_id, actor_id, None, lambda s, a: s.withdraw(
            dossier_id=dossier_id, reason=reason, actor=a, occurred_at=when))

    def record_attendance(
        self, *, session_id: str, actor_id: Who, practitioner_id: str, specialty: str, status: str,
        occurred_at: datetime | None = None,
    ) -> int | None:
        """A participant's attendance (present, remote, absent) for a specialty; the same again records nothing."""
        when = self._when(occurred_at)
        participant = self._person(practitioner_id, "practitioner_id")
        participant.pop("specialty", None)
        return self._run(session_id, actor_id, None, lambda s, a: s.record_attendance(
            participant=participant, specialty=specialty, status=status, actor=a, occurred_at=when))

    def record_decision(
        self, *, session_id: str, dossier_id: str, actor_id: Who, decision: str, proposal: str = "",
        rationale: str = "", follow_up: str = "", occurred_at: datetime | None = None,
    ) -> int | None:
        """The session's decision on a registered dossier (quorum required), and the same decision given as
        the opinion on the dossier's send to the session's establishment: both saved in one transaction."""
        when = self._when(occurred_at)
        decision = text(decision, "decision", max_len=NOTE_MAX)
        fiche = {
            "proposal": text(proposal, "proposal", max_len=REPORT_MAX, required=False),
            "rationale": text(rationale, "rationale", max_len=REPORT_MAX, required=False),
            "follow_up": text(follow_up, "follow_up", max_len=NOTE_MAX, required=False),
        }
        session = self._session(session_id)
        dossier = self.core.load(Dossier, dossier_id, "télédossier")
        actor = self.actors.acting(actor_id)
        if self._done_before(actor_id):
            return None
        if not dossier.may_read(actor):
            raise ForbiddenError("ce télédossier ne vous concerne pas")
        send_id = session.record_decision(dossier_id=str(dossier.id), decision=decision, fiche=fiche, actor=actor,
                                          occurred_at=when)
        recorded = session.agenda[str(dossier.id)]["decision"]
        report = fiche_text(label=session.label, starts_at=session.starts_at, decision=decision, fiche=fiche,
                            participants=recorded["participants"])
        dossier.give_opinion(send_id=send_id, report=report, conclusion=decision, recommendations=fiche["follow_up"],
                             actor=actor, occurred_at=when)
        return self._save(actor_id, str(session.id), dossier, session)

    # ------------------------------------------------------------------ reading

    def _contact(self, practitioner_id: str) -> Json:
        p = self.core.find(Practitioner, UUID(practitioner_id))
        if p is None:
            return {"practitioner_id": practitioner_id, "name": "", "rpps": "", "email": ""}
        return {"practitioner_id": practitioner_id, "name": p.display_name, "rpps": p.rpps, "email": p.email}

    def mdt_session(self, *, session_id: str, actor_id: Who, trace: bool = True) -> SessionDetails:
        """The session page: the session, its agenda (patient and question of the dossiers the reader may read,
        each such read traced), attendance and the quorum now. ForbiddenError for another establishment."""
        session = self._session(session_id)
        actor = self.actors.acting(actor_id)
        if not session.may_read(actor):
            raise ForbiddenError("cette séance de RCP ne vous concerne pas")
        est = self.core.load(Establishment, session.establishment_id, "établissement")
        agenda = []
        for did in session.registered():
            item = session.agenda[did]
            d = self.core.find(Dossier, UUID(did))
            readable = d is not None and d.may_read(actor)
            if readable and trace and d is not None:
                self.access_log.record_access(dossier_id=did, actor=actor.as_dict(), kind="dossier",
                                              target=f"mdt:{session.id}", dossier_version=d.version)
            agenda.append(AgendaItem(
                dossier_id=did, number=d.number if d else "", send_id=item["send_id"], readable=readable,
                patient=dict(d.patient) if d and readable else {}, question=d.question if d and readable else "",
                form=d.form if d and readable else None,
                requester_establishment_id=d.requester["establishment_id"] if d else "",
                decision=item["decision"], version=d.version if d else 0,
            ))
        participants = []
        for p in session.participants:
            contact = self._contact(p["practitioner_id"])
            participants.append({**p, "email": contact["email"]})
        return SessionDetails(
            id=str(session.id), version=session.version, session_type=session.session_type, label=session.label,
            title=session.title, starts_at=session.starts_at, ends_at=session.ends_at,
            duration_minutes=session.duration_minutes, place=session.place, video_url=session.video_url,
            specialties=tuple(session.specialties), participants=tuple(participants),
            coordinator=self._contact(session.coordinator_id), establishment_id=session.establishment_id,
            establishment_name=est.name, service_id=session.service_id,
            service_name=est.services.get(session.service_id, {}).get("name", ""), agenda=tuple(agenda),
            attendance=tuple({**a["participant"], "specialty": a["specialty"], "status": a["status"]}
                             for a in session.attendance.values()),
            quorum=session.quorum_state(), sequence=session.sequence, cancelled=session.cancelled,
            may_manage=session.may_manage(actor),
        )
