"""The MdtSession aggregate (RCP): a scheduled multidisciplinary meeting, its agenda, attendance, quorum and decisions."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.dossier import Dossier, was_sent
from domain.errors import DossierStateError, InvalidFieldError, NotAllowedError, RelaisError
from domain.values import ACTIVE_SEND_STATES, PARIS, Actor, Json, Role

# Session types: what they discuss (the dossiers' workflow), their default specialties and their quorum
# (the least number of distinct specialties present, in the room or remotely, for a decision).
SESSION_TYPES: dict[str, Json] = {
    "kidney_transplant": {
        "label": "RCP greffe rénale",
        "workflow": "kidney_transplant_mdt",
        "specialties": ["néphrologie", "urologie", "anesthésie-réanimation", "immunologie"],
    },
}
QUORUM = {"kidney_transplant": 3}

# Specialties as the directory names them (a service's or a practitioner's `specialty`, lower case).
SPECIALTIES = (
    "néphrologie", "urologie", "anesthésie-réanimation", "immunologie", "radiologie", "cardiologie",
    "chirurgie vasculaire", "infectiologie", "psychiatrie", "diététique", "pharmacie",
)
ATTENDANCE = {"present": "présent", "remote": "à distance", "absent": "absent"}
ATTENDING = ("present", "remote")
MAX_DURATION = 12 * 60  # minutes


class MdtError(RelaisError):
    """Base of the errors raised by the MdtSession aggregate."""


class MdtStateError(MdtError, DossierStateError):
    """The session (cancelled) or the dossier (not registered, decided) does not allow the action (a state
    error like a dossier's: the web answers 409 with the message)."""


class QuorumNotMetError(MdtStateError):
    """A decision asked while fewer distinct specialties than the session type's quorum are present."""


class MdtNotAllowedError(MdtError, NotAllowedError):
    """The actor may not manage this session (neither its coordinator nor a clinician of its service)."""


def specialty_label(code: str) -> str:
    return code[:1].upper() + code[1:] if code else ""


def check_specialty(value: str, field: str = "specialty") -> str:
    code = (value or "").strip().lower()
    if not code or len(code) > 100:
        raise InvalidFieldError(field, "spécialité manquante ou trop longue")
    return code


class MdtSession(Aggregate):
    """One MDT meeting (« séance de RCP ») organised by a service of an establishment, run by a coordinator."""

    TOPIC = "relais:MdtSession"

    class Created(Aggregate.Created):
        """The session was scheduled (the stream's first event, pinned as every aggregate's Created): when
        (aware), how long, where (place and/or video link), what type, the
        specialties expected and the practitioners invited, by whom (the coordinator) and for which service."""

        TOPIC = "relais:MdtSession.Created"

        session_type: str
        title: str
        starts_at: datetime
        duration_minutes: int
        place: str
        video_url: str
        specialties: list[str]
        participants: list[Json]
        coordinator_id: str
        establishment_id: str
        service_id: str
        actor: Json
        occurred_at: datetime

    class Rescheduled(Aggregate.Event):
        TOPIC = "relais:MdtSession.Rescheduled"

        starts_at: datetime
        duration_minutes: int
        place: str
        video_url: str
        actor: Json
        occurred_at: datetime

    class DossierRegistered(Aggregate.Event):
        """A dossier sent to the organising establishment is put on the agenda (`send_id`: that send)."""

        TOPIC = "relais:MdtSession.DossierRegistered"

        dossier_id: str
        send_id: str
        actor: Json
        occurred_at: datetime

    class DossierWithdrawn(Aggregate.Event):
        TOPIC = "relais:MdtSession.DossierWithdrawn"

        dossier_id: str
        reason: str
        actor: Json
        occurred_at: datetime

    class AttendanceRecorded(Aggregate.Event):
        """A participant's attendance (`status`: present, remote or absent) for one specialty."""

        TOPIC = "relais:MdtSession.AttendanceRecorded"

        participant: Json  # practitioner_id, name, rpps
        specialty: str
        status: str
        actor: Json
        occurred_at: datetime

    class DecisionRecorded(Aggregate.Event):
        """The decision on one dossier with its « fiche RCP » and the participants present when it was taken."""

        TOPIC = "relais:MdtSession.DecisionRecorded"

        dossier_id: str
        send_id: str
        decision: str
        fiche: Json  # proposal, rationale, follow_up
        participants: list[Json]  # practitioner_id, name, rpps, specialty, status
        actor: Json
        occurred_at: datetime

    class Cancelled(Aggregate.Event):
        TOPIC = "relais:MdtSession.Cancelled"

        reason: str
        actor: Json
        occurred_at: datetime

    @event(Created)
    def __init__(
        self, *, session_type: str, title: str, starts_at: datetime, duration_minutes: int, place: str, video_url: str,
        specialties: list[str], participants: list[Json], coordinator_id: str, establishment_id: str, service_id: str,
        actor: Json, occurred_at: datetime,
    ) -> None:
        self.session_type = session_type
        self.title = title
        self.starts_at = starts_at
        self.duration_minutes = duration_minutes
        self.place = place
        self.video_url = video_url
        self.specialties = list(specialties)
        self.participants = [dict(p) for p in participants]
        self.coordinator_id = coordinator_id
        self.establishment_id = establishment_id
        self.service_id = service_id
        self.agenda: dict[str, Json] = {}  # dossier id -> {send_id, registered_at, withdrawn, decision}
        self.attendance: dict[str, Json] = {}  # practitioner id -> {participant, specialty, status}
        self.sequence = 0  # the invitation's SEQUENCE: bumped when rescheduled or cancelled
        self.cancelled: Json | None = None

    @classmethod
    def schedule(
        cls, *, session_id: UUID, session_type: str, title: str, starts_at: datetime, duration_minutes: int, place: str, video_url: str,
        specialties: list[str], participants: list[Json], service: Json, actor: Actor, occurred_at: datetime,
    ) -> MdtSession:
        """A new session; `service` is the organising service ({service_id, establishment_id}) of the actor,
        who becomes its coordinator."""
        if actor.role != Role.CLINICIAN:
            raise MdtNotAllowedError("seul un clinicien organise une séance de RCP")
        if session_type not in SESSION_TYPES:
            raise InvalidFieldError("session_type", f"type de séance inconnu (attendu : {', '.join(SESSION_TYPES)})")
        if service.get("establishment_id") != actor.establishment_id:
            raise MdtNotAllowedError("le service organisateur doit être de votre établissement")
        codes = _specialties(specialties)
        _when(starts_at, duration_minutes, place, video_url, occurred_at)
        return cls._create(
            cls.Created, id=session_id, session_type=session_type, title=title, starts_at=starts_at, duration_minutes=duration_minutes,
            place=place, video_url=video_url, specialties=codes, participants=participants,
            coordinator_id=actor.practitioner_id, establishment_id=actor.establishment_id,
            service_id=str(service["service_id"]), actor=actor.as_dict(), occurred_at=occurred_at,
        )

    # ------------------------------------------------------------------ reading

    @property
    def label(self) -> str:
        return str(SESSION_TYPES[self.session_type]["label"])

    @property
    def ends_at(self) -> datetime:
        return self.starts_at + timedelta(minutes=self.duration_minutes)

    @property
    def quorum(self) -> int:
        return QUORUM[self.session_type]

    def registered(self) -> list[str]:
        """The dossiers on the agenda (not withdrawn), in registration order."""
        return [d for d, item in self.agenda.items() if not item["withdrawn"]]

    def present_specialties(self) -> list[str]:
        """Distinct specialties of the participants present (in the room or remotely), sorted."""
        return sorted({a["specialty"] for a in self.attendance.values() if a["status"] in ATTENDING})

    def quorum_state(self) -> Json:
        """{met, present: [...], required, missing: [...]} — `missing`: expected specialties nobody attends for."""
        present = self.present_specialties()
        missing = [s for s in self.specialties if s not in present]
        return {"met": len(present) >= self.quorum, "present": present, "required": self.quorum, "missing": missing}

    def may_manage(self, actor: Actor) -> bool:
        """The coordinator, or a clinician of the organising service, acting for the organising establishment."""
        if actor.role != Role.CLINICIAN or actor.establishment_id != self.establishment_id:
            return False
        return actor.practitioner_id == self.coordinator_id or self.service_id in actor.service_ids

    def may_read(self, actor: Actor) -> bool:
        """Clinicians of the organising establishment, and the practitioners invited."""
        if actor.role == Role.CLINICIAN and actor.establishment_id == self.establishment_id:
            return True
        return any(p["practitioner_id"] == actor.practitioner_id for p in self.participants)

    # ------------------------------------------------------------------ guards

    def _manager(self, actor: Actor) -> None:
        if not self.may_manage(actor):
            raise MdtNotAllowedError("seuls le coordinateur de la séance et les cliniciens du service organisateur peuvent faire cela")
        if self.cancelled is not None:
            raise MdtStateError("la séance est annulée")

    def _item(self, dossier_id: str) -> Json:
        item = self.agenda.get(dossier_id)
        if item is None or item["withdrawn"]:
            raise MdtStateError("ce télédossier n'est pas inscrit à la séance")
        return item

    # ------------------------------------------------------------------ commands

    def reschedule(
        self, *, starts_at: datetime, duration_minutes: int, place: str, video_url: str, actor: Actor, occurred_at: datetime,
    ) -> None:
        self._manager(actor)
        _when(starts_at, duration_minutes, place, video_url, occurred_at)
        if (starts_at, duration_minutes, place, video_url) == (self.starts_at, self.duration_minutes, self.place, self.video_url):
            return
        self._rescheduled(starts_at=starts_at, duration_minutes=duration_minutes, place=place, video_url=video_url,
                          actor=actor.as_dict(), occurred_at=occurred_at)

    @event(Rescheduled)
    def _rescheduled(self, starts_at: datetime, duration_minutes: int, place: str, video_url: str, actor: Json,
                     occurred_at: datetime) -> None:
        self.starts_at, self.duration_minutes, self.place, self.video_url = starts_at, duration_minutes, place, video_url
        self.sequence += 1

    def register(self, *, dossier: Dossier, actor: Actor, occurred_at: datetime) -> None:
        """Puts a dossier on the agenda: a dossier of the session type's workflow, sent to the organising
        establishment and still being worked on there. Registering it again changes nothing."""
        self._manager(actor)
        key = str(dossier.id)
        if key in self.agenda and not self.agenda[key]["withdrawn"]:
            return
        workflow = SESSION_TYPES[self.session_type]["workflow"]
        if dossier.workflow != workflow:
            raise InvalidFieldError("dossier_id", "seuls les télédossiers « RCP greffe rénale » s'inscrivent à cette séance")
        if dossier.is_over:
            raise MdtStateError("le télédossier est clôturé ou annulé")
        send_id = next(
            (sid for sid, s in dossier.sends.items()
             if s["establishment_id"] == self.establishment_id and was_sent(s) and s["state"] in ACTIVE_SEND_STATES),
            None,
        )
        if send_id is None:
            raise MdtStateError("ce télédossier n'a pas été adressé à l'établissement de la séance (ou y a déjà sa réponse)")
        self._registered(dossier_id=key, send_id=send_id, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(DossierRegistered)
    def _registered(self, dossier_id: str, send_id: str, actor: Json, occurred_at: datetime) -> None:
        self.agenda[dossier_id] = {"send_id": send_id, "registered_at": occurred_at.isoformat(), "withdrawn": False,
                                   "decision": None}

    def withdraw(self, *, dossier_id: str, reason: str, actor: Actor, occurred_at: datetime) -> None:
        self._manager(actor)
        item = self._item(dossier_id)
        if item["decision"] is not None:
            raise MdtStateError("la décision de la RCP est déjà enregistrée pour ce télédossier")
        self._withdrawn(dossier_id=dossier_id, reason=reason, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(DossierWithdrawn)
    def _withdrawn(self, dossier_id: str, reason: str, actor: Json, occurred_at: datetime) -> None:
        self.agenda[dossier_id]["withdrawn"] = True

    def record_attendance(
        self, *, participant: Json, specialty: str, status: str, actor: Actor, occurred_at: datetime,
    ) -> None:
        """A participant's attendance; the same again changes nothing."""
        self._manager(actor)
        if status not in ATTENDANCE:
            raise InvalidFieldError("status", f"présence inconnue (attendu : {', '.join(ATTENDANCE)})")
        specialty = check_specialty(specialty)
        current = self.attendance.get(participant["practitioner_id"])
        if current and (current["specialty"], current["status"]) == (specialty, status):
            return
        self._attendance_recorded(participant=participant, specialty=specialty, status=status, actor=actor.as_dict(),
                                  occurred_at=occurred_at)

    @event(AttendanceRecorded)
    def _attendance_recorded(self, participant: Json, specialty: str, status: str, actor: Json, occurred_at: datetime) -> None:
        self.attendance[participant["practitioner_id"]] = {"participant": dict(participant), "specialty": specialty,
                                                           "status": status}

    def check_quorum(self) -> None:
        """QuorumNotMetError, in French, naming how many specialties attend and which expected ones are missing."""
        q = self.quorum_state()
        if q["met"]:
            return
        count = len(q["present"])
        missing = ", ".join(q["missing"]) if q["missing"] else f"{q['required'] - count} autre(s) spécialité(s)"
        raise QuorumNotMetError(
            f"quorum non atteint : {count} spécialité{'s' if count > 1 else ''} présente{'s' if count > 1 else ''} "
            f"sur {q['required']} requises (manquent : {missing})"
        )

    def record_decision(
        self, *, dossier_id: str, decision: str, fiche: Json, actor: Actor, occurred_at: datetime,
    ) -> str:
        """The decision on a registered dossier, while the quorum holds; returns the send it answers."""
        self._manager(actor)
        item = self._item(dossier_id)
        if item["decision"] is not None:
            raise MdtStateError("la décision de la RCP est déjà enregistrée pour ce télédossier")
        if not decision.strip():
            raise InvalidFieldError("decision", "champ obligatoire")
        self.check_quorum()
        participants = [
            {**a["participant"], "specialty": a["specialty"], "status": a["status"]}
            for a in self.attendance.values() if a["status"] in ATTENDING
        ]
        self._decision_recorded(
            dossier_id=dossier_id, send_id=item["send_id"], decision=decision, fiche=fiche, participants=participants,
            actor=actor.as_dict(), occurred_at=occurred_at,
        )
        return str(item["send_id"])

    @event(DecisionRecorded)
    def _decision_recorded(
        self, dossier_id: str, send_id: str, decision: str, fiche: Json, participants: list[Json], actor: Json,
        occurred_at: datetime,
    ) -> None:
        self.agenda[dossier_id]["decision"] = {
            "decision": decision, "fiche": dict(fiche), "participants": [dict(p) for p in participants],
            "by": actor, "at": occurred_at.isoformat(),
        }

    def cancel(self, *, reason: str, actor: Actor, occurred_at: datetime) -> None:
        self._manager(actor)
        if any(item["decision"] is not None for item in self.agenda.values()):
            raise MdtStateError("des décisions ont été enregistrées : la séance ne peut plus être annulée")
        self._cancelled(reason=reason, actor=actor.as_dict(), occurred_at=occurred_at)

    @event(Cancelled)
    def _cancelled(self, reason: str, actor: Json, occurred_at: datetime) -> None:
        self.cancelled = {"reason": reason, "at": occurred_at.isoformat()}
        self.sequence += 1


def fiche_text(*, label: str, starts_at: datetime, decision: str, fiche: Json, participants: list[Json]) -> str:
    """The « fiche RCP » as the opinion's report: the session, the proposal, its rationale, the follow-up and
    the participants present (name, RPPS, specialty)."""
    lines = [f"Fiche RCP — {label} du {starts_at.astimezone(PARIS).strftime('%d/%m/%Y à %H:%M')}", "",
             f"Décision : {decision}"]
    for key, title in (("proposal", "Proposition"), ("rationale", "Argumentaire"), ("follow_up", "Suivi")):
        if fiche.get(key):
            lines.append(f"{title} : {fiche[key]}")
    lines += ["", "Participants présents :"]
    for p in participants:
        how = " (à distance)" if p.get("status") == "remote" else ""
        lines.append(f"- {p.get('name', '')}, RPPS {p.get('rpps', '')}, {p.get('specialty', '')}{how}")
    return "\n".join(lines)


def _specialties(values: list[str]) -> list[str]:
    codes: list[str] = []
    for v in values:
        c = check_specialty(v, "specialties")
        if c not in codes:
            codes.append(c)
    if not codes:
        raise InvalidFieldError("specialties", "indiquez au moins une spécialité attendue")
    return codes


def _when(starts_at: datetime, duration_minutes: int, place: str, video_url: str, now: datetime) -> None:
    if starts_at.tzinfo is None:
        raise InvalidFieldError("starts_at", "date sans fuseau horaire")
    if not 0 < duration_minutes <= MAX_DURATION:
        raise InvalidFieldError("duration_minutes", f"durée entre 1 et {MAX_DURATION} minutes")
    if starts_at + timedelta(minutes=duration_minutes) <= now:
        raise InvalidFieldError("date", "cette séance serait déjà terminée : vérifiez la date et l'heure")
    if not (place or video_url):
        raise InvalidFieldError("place", "indiquez un lieu ou un lien de visioconférence")
    if video_url and not video_url.startswith(("https://", "http://")):
        raise InvalidFieldError("video_url", "lien de visioconférence invalide (https://…)")

