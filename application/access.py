"""Reading a dossier as a user: access traced, timeline, actions allowed now, replay at version N."""

from __future__ import annotations

from dataclasses import dataclass, field

from application.access_log import AccessLog
from application.actors import Actors
from application.base import Core, parse_uuid
from application.dossier_views import DossierDetails, HistoryEntry, as_seen_by, details_of, history_of
from application.errors import ForbiddenError, NotFoundError
from domain.dossier import Dossier, was_sent
from domain.values import Actor, Role, SendState, Workflow

WORKING = (SendState.REQUESTED, SendState.IN_PROGRESS)


@dataclass(frozen=True)
class Workspace:
    """A dossier as one user sees it now: details, history, and what they may do on it."""

    dossier: DossierDetails
    history: tuple[HistoryEntry, ...]
    requester_side: bool
    actions: frozenset[str]  # dossier-level: edit, cancel, close
    send_actions: dict[str, frozenset[str]] = field(default_factory=dict)  # send_id → accept, decline, …, post_message


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
            if was_sent(s):  # the thread of a send opens with its sending (Dossier.post_message)
                per_send[sid] = frozenset({"post_message"})
            if s["state"] == SendState.ON_HOLD:
                per_send[sid] = frozenset({"provide_complement", "post_message"})
    for sid, s in d.sends.items():
        if not d.is_sent_to(actor, sid):
            continue
        acts: set[str] = set(per_send.get(sid, ())) | {"post_message"}
        if d.workflow == Workflow.IMAGING_TRANSFER:  # no opinion asked: the recipient acknowledges receipt
            if s["state"] in WORKING:
                acts |= {"acknowledge_receipt", "forward", "decline"}
        else:
            if s["state"] == SendState.REQUESTED:
                acts.add("accept")
            if s["state"] in WORKING:
                acts |= {"decline", "request_complement", "forward", "give_opinion"}
        if acts:
            per_send[sid] = frozenset(acts)
    return frozenset(dossier_actions), per_send


class AccessUseCases:
    """Every read of patient data goes through here and leaves an Access event, granted or denied."""

    def __init__(self, core: Core, actors: Actors, access_log: AccessLog) -> None:
        self.core = core
        self.actors = actors
        self.access_log = access_log

    def _reader(self, actor_id: str, establishment_id: str | None, role: str, dossier_id: str, kind: str) -> Actor:
        """The actor in this role; someone not holding it is refused, and the attempt traced."""
        try:
            return self.actors.actor_for(practitioner_id=actor_id, establishment_id=establishment_id, role=role)
        except ForbiddenError as e:
            uid = parse_uuid(dossier_id, "télédossier")
            if self.core.exists(uid):
                self.access_log.record_access(
                    dossier_id=str(uid), kind=kind, outcome="denied", reason=str(e),
                    actor={"practitioner_id": actor_id, "role": role, "establishment_id": establishment_id or ""},
                )
            raise

    def _readable(
        self, dossier_id: str, actor: Actor, kind: str, target: str = "", version: int | None = None,
    ) -> Dossier:
        """Loads the dossier if `actor` may read it; records the access either way."""
        d = self.core.load(Dossier, dossier_id, "télédossier")
        if not d.may_read(actor):
            self.access_log.record_access(
                dossier_id=str(d.id), actor=actor.as_dict(), kind=kind, target=target, outcome="denied",
                reason="ce télédossier ne concerne pas l'utilisateur", dossier_version=d.version,
            )
            raise ForbiddenError("ce télédossier ne vous concerne pas")
        if version is not None:
            if not 1 <= version <= d.version:
                raise NotFoundError(f"version {version} inexistante (1 à {d.version})")
            d = self.core.load(Dossier, dossier_id, "télédossier", version=version)
        self.access_log.record_access(
            dossier_id=str(d.id), actor=actor.as_dict(), kind=kind, target=target, dossier_version=d.version
        )
        return d

    def _history(self, d: Dossier, up_to: int | None = None) -> tuple[HistoryEntry, ...]:
        return history_of(self.core.events_of(d.id, up_to=up_to))

    def open_dossier(
        self, *, dossier_id: str, actor_id: str, establishment_id: str | None = None, role: str = Role.CLINICIAN,
        kind: str = "dossier", target: str = "",
    ) -> Workspace:
        """The dossier page: details, timeline and allowed actions; the view is traced."""
        actor = self._reader(actor_id, establishment_id, role, dossier_id, kind)
        d = self._readable(dossier_id, actor, kind, target)
        actions, per_send = allowed(d, actor)
        history = as_seen_by(d, actor, self._history(d))
        return Workspace(
            dossier=details_of(d, history), history=history, requester_side=d.is_requester(actor),
            actions=actions, send_actions=per_send,
        )

    def dossier_at(
        self, *, dossier_id: str, actor_id: str, version: int, establishment_id: str | None = None,
    ) -> tuple[DossierDetails, tuple[HistoryEntry, ...], int]:
        """Replay (auditors): the dossier exactly as it was at `version`, its events so far, the last version."""
        actor = self._reader(actor_id, establishment_id, Role.AUDITOR, dossier_id, "replay")
        head = self.core.load(Dossier, dossier_id, "télédossier").version
        d = self._readable(dossier_id, actor, "replay", target=f"v{version}", version=version)
        history = self._history(d, up_to=version)
        return details_of(d, history), history, head

    def audit_trail(
        self, *, dossier_id: str, actor_id: str, establishment_id: str | None = None, kind: str = "audit",
    ) -> tuple[DossierDetails, tuple[HistoryEntry, ...]]:
        """Every event with actor, business and recorded time (auditors only); the read is traced."""
        actor = self._reader(actor_id, establishment_id, Role.AUDITOR, dossier_id, kind)
        d = self._readable(dossier_id, actor, kind)
        history = self._history(d)
        return details_of(d, history), history

    def may_read_now(
        self, *, dossier_id: str, actor_id: str, establishment_id: str | None = None, role: str = Role.CLINICIAN,
    ) -> bool:
        """Whether this user may still read the dossier, asked right after their own command (a forward
        hands it away): no access is recorded, nothing is shown."""
        try:
            actor = self.actors.actor_for(practitioner_id=actor_id, establishment_id=establishment_id, role=role)
        except ForbiddenError:
            return False
        return self.core.load(Dossier, dossier_id, "télédossier").may_read(actor)
