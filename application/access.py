"""Reading a dossier as a user: access traced, timeline, actions allowed now, replay at version N."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from application.base import RelaisBase, event_summary, parse_uuid
from application.dossiers import DossierDetails, HistoryEntry
from application.errors import ForbiddenError, NotFoundError
from domain.access import ACCESS_KINDS, Access
from domain.dossier import Dossier
from domain.errors import NotAllowedError
from domain.values import Actor, Role, SendState

WORKING = (SendState.REQUESTED, SendState.IN_PROGRESS)


@dataclass(frozen=True)
class Workspace:
    """A dossier as one user sees it now: details, history, and what they may do on it."""

    dossier: DossierDetails
    history: tuple[HistoryEntry, ...]
    requester_side: bool
    actions: frozenset[str]  # dossier-level: edit, cancel, close
    send_actions: dict[str, frozenset[str]] = field(default_factory=dict)  # send_id → accept, decline, …


def details_of(d: Dossier) -> DossierDetails:
    """The reader's dataclass of a dossier aggregate (also for a past version)."""
    return DossierDetails(
        id=str(d.id), number=d.number, version=d.version, state=str(d.state), workflow=d.workflow,
        urgency=d.urgency, question=d.question, patient=dict(d.patient), consent=d.consent,
        imaging_source=d.imaging_source, requester=dict(d.requester),
        documents=tuple(d.documents.values()), imaging=tuple(d.imaging.values()),
        sends=tuple(dict(s) for s in d.sends.values()), created_on=d.opened_on,
        first_sent_on=d.first_sent_on, imported_from=d.imported_from,
    )


def allowed(d: Dossier, actor: Actor) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """What `actor` may do now: the same guards as the aggregate's commands, asked in advance."""
    dossier_actions: set[str] = set()
    per_send: dict[str, frozenset[str]] = {}
    if actor.role != Role.CLINICIAN or d.is_over:
        return frozenset(), per_send
    states = {s["state"] for s in d.sends.values()}
    if d.is_requester(actor):
        if d.is_draft:
            dossier_actions.add("edit")
        if SendState.ANSWERED not in states:
            dossier_actions.add("cancel")
        if d.first_sent_on is not None and (
            SendState.ANSWERED in states or not states & {SendState.REQUESTED, SendState.IN_PROGRESS, SendState.ON_HOLD}
        ):
            dossier_actions.add("close")
        for sid, s in d.sends.items():
            if s["state"] == SendState.ON_HOLD:
                per_send[sid] = frozenset({"provide_complement"})
    for sid, s in d.sends.items():
        if s["state"] == SendState.PENDING or not d.is_recipient(actor, sid):
            continue
        acts: set[str] = set(per_send.get(sid, ()))
        if s["state"] == SendState.REQUESTED:
            acts.add("accept")
        if s["state"] in WORKING:
            acts |= {"decline", "request_complement", "forward", "give_opinion"}
        if acts:
            per_send[sid] = frozenset(acts)
    return frozenset(dossier_actions), per_send


class AccessUseCases(RelaisBase):
    """Every read of patient data goes through here and leaves an Access event, granted or denied."""

    def record_access(
        self, *, dossier_id: str, actor: dict, kind: str, target: str = "", outcome: str = "granted",
        reason: str = "", dossier_version: int | None = None, occurred_at: datetime | None = None,
    ) -> str:
        if kind not in ACCESS_KINDS:
            raise ValueError(f"unknown access kind {kind}")
        access = Access(
            dossier_id=str(dossier_id), dossier_version=dossier_version, kind=kind, target=target, outcome=outcome,
            reason=reason[:500], actor=dict(actor), occurred_at=occurred_at or self.clock(),
        )
        self.commit(access)
        return str(access.id)

    def _reader(self, actor_id: str, establishment_id: str | None, role: str, dossier_id: str, kind: str) -> Actor:
        """The actor in this role; someone not holding it is refused, and the attempt traced."""
        try:
            return self.actor_for(practitioner_id=actor_id, establishment_id=establishment_id, role=role)
        except ForbiddenError as e:
            uid = parse_uuid(dossier_id, "télédossier")
            if self.exists(uid):
                self.record_access(
                    dossier_id=str(uid), kind=kind, outcome="denied", reason=str(e),
                    actor={"practitioner_id": actor_id, "role": role, "establishment_id": establishment_id or ""},
                )
            raise

    def _readable(
        self, dossier_id: str, actor: Actor, kind: str, target: str = "", version: int | None = None,
    ) -> Dossier:
        """Loads the dossier if `actor` may read it; records the access either way."""
        d = self.load(Dossier, dossier_id, "télédossier")
        if not d.may_read(actor):
            self.record_access(
                dossier_id=str(d.id), actor=actor.as_dict(), kind=kind, target=target, outcome="denied",
                reason="ce télédossier ne concerne pas l'utilisateur", dossier_version=d.version,
            )
            raise ForbiddenError("ce télédossier ne vous concerne pas")
        if version is not None:
            if not 1 <= version <= d.version:
                raise NotFoundError(f"version {version} inexistante (1 à {d.version})")
            d = self.load(Dossier, dossier_id, "télédossier", version=version)
        self.record_access(
            dossier_id=str(d.id), actor=actor.as_dict(), kind=kind, target=target, dossier_version=d.version
        )
        return d

    def history_of(self, dossier_id: UUID | str, up_to: int | None = None) -> tuple[HistoryEntry, ...]:
        entries = []
        for ev in self.events.get(parse_uuid(dossier_id, "télédossier"), lte=up_to):
            data = event_summary(ev)
            entries.append(
                HistoryEntry(
                    version=ev.originator_version, event=type(ev).__name__, occurred_at=data.pop("occurred_at", None),
                    recorded_at=ev.timestamp, actor=data.pop("actor", {}), data=data,
                )
            )
        return tuple(entries)

    def open_dossier(
        self, *, dossier_id: str, actor_id: str, establishment_id: str | None = None, role: str = Role.CLINICIAN,
        kind: str = "dossier", target: str = "",
    ) -> Workspace:
        """The dossier page: details, timeline and allowed actions; the view is traced."""
        actor = self._reader(actor_id, establishment_id, role, dossier_id, kind)
        d = self._readable(dossier_id, actor, kind, target)
        actions, per_send = allowed(d, actor)
        return Workspace(
            dossier=details_of(d), history=self.history_of(d.id), requester_side=d.is_requester(actor),
            actions=actions, send_actions=per_send,
        )

    def dossier_at(
        self, *, dossier_id: str, actor_id: str, version: int, establishment_id: str | None = None,
    ) -> tuple[DossierDetails, tuple[HistoryEntry, ...], int]:
        """Replay (auditors): the dossier exactly as it was at `version`, its events so far, the last version."""
        actor = self._reader(actor_id, establishment_id, Role.AUDITOR, dossier_id, "replay")
        head = self.load(Dossier, dossier_id, "télédossier").version
        d = self._readable(dossier_id, actor, "replay", target=f"v{version}", version=version)
        return details_of(d), self.history_of(d.id, up_to=version), head

    def audit_trail(
        self, *, dossier_id: str, actor_id: str, establishment_id: str | None = None, kind: str = "audit",
    ) -> tuple[DossierDetails, tuple[HistoryEntry, ...]]:
        """Every event with actor, business and recorded time (auditors only); the read is traced."""
        actor = self._reader(actor_id, establishment_id, Role.AUDITOR, dossier_id, kind)
        d = self._readable(dossier_id, actor, kind)
        return details_of(d), self.history_of(d.id)

    def may_read_now(
        self, *, dossier_id: str, actor_id: str, establishment_id: str | None = None, role: str = Role.CLINICIAN,
    ) -> bool:
        """Whether this user may still read the dossier, asked right after their own command (a forward
        hands it away): no access is recorded, nothing is shown."""
        try:
            actor = self.actor_for(practitioner_id=actor_id, establishment_id=establishment_id, role=role)
        except ForbiddenError:
            return False
        return self.load(Dossier, dossier_id, "télédossier").may_read(actor)

    def trace_denied(self, *, dossier_id: str, actor: dict, kind: str, reason: str, target: str = "") -> None:
        """A dossier refused before anything was read (a page reserved to another role): traced
        when the dossier exists."""
        try:
            uid = parse_uuid(dossier_id, "télédossier")
        except NotFoundError:
            return
        if self.exists(uid):
            self.record_access(dossier_id=str(uid), actor=actor, kind=kind, target=target, outcome="denied", reason=reason)

    def trace_refusal(self, *, dossier_id: str, actor: dict, what: str, error: Exception) -> None:
        """A command refused for want of rights (403) is traced like a denied read."""
        if isinstance(error, (ForbiddenError, NotAllowedError)):
            try:
                self.record_access(
                    dossier_id=str(parse_uuid(dossier_id, "télédossier")), actor=actor, kind="command",
                    target=what, outcome="denied", reason=str(error),
                )
            except NotFoundError:
                pass
