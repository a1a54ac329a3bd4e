"""Deadline use cases: a send's deadline set when it is sent or forwarded (the recipient service's
delays, else the platform's table), and the escalation of a send not accepted in time."""

from __future__ import annotations

from dataclasses import dataclass

from application.base import SYSTEM_ACTOR, Core
from application.commands import DossierCommands
from application.errors import NotFoundError
from domain.deadlines import DelaysOf, applies, delays_for
from domain.directory import Establishment, Practitioner
from domain.dossier import Dossier
from domain.errors import DossierError
from domain.values import Actor, Json


@dataclass(frozen=True)
class Escalation:
    """What `escalate_overdue` did: `to` the target it escalated to (None: nothing done), and why not."""

    to: Json | None
    reason: str


class DeadlineRules:
    """The delays of a send (`delays_of`, given to Dossier.send and forward): the recipient service's own,
    else the platform's table."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def overrides(self, send: Json) -> dict[str, Json]:
        """The recipient service's own delays (none for a send to a practitioner or a whole establishment:
        their services' overrides could contradict each other)."""
        if not send.get("service_id"):
            return {}
        try:
            est = self.core.load(Establishment, send["establishment_id"], "établissement")
        except NotFoundError:
            return {}
        overrides: dict[str, Json] = est.services.get(send["service_id"], {}).get("deadlines", {})
        return overrides

    def for_dossier(self, dossier: Dossier) -> DelaysOf:
        """`delays_of` for the sends of this dossier (its workflow and urgency)."""
        return lambda send: delays_for(dossier.workflow, dossier.urgency, self.overrides(send))


class DeadlineUseCases:
    """What the scheduler asks of the application when a send's accept deadline passes."""

    def __init__(self, core: Core, commands: DossierCommands) -> None:
        self.core = core
        self.commands = commands

    def escalation_target(self, send: Json) -> Json | None:
        """Where a late send goes as well: its service's escalation setting, else the establishment's
        on-call pool of the same specialty (the only one, or the first by name). For a send to a
        practitioner, the same rule on each of their services there, in order."""
        try:
            est = self.core.load(Establishment, send["establishment_id"], "établissement")
        except NotFoundError:
            return None
        service_ids: list[str] = []
        if send.get("service_id"):
            service_ids = [send["service_id"]]
        elif send.get("practitioner_id"):
            try:
                p = self.core.load(Practitioner, send["practitioner_id"], "professionnel")
                service_ids = list(p.memberships.get(str(est.id), {}).get("service_ids", []))
            except NotFoundError:
                service_ids = []
        for sid in service_ids:
            service = est.services.get(sid)
            if service is None:
                continue
            setting = service.get("escalation") or {}
            if setting.get("to_practitioner_id"):
                return {"establishment_id": str(est.id), "service_id": None, "practitioner_id": setting["to_practitioner_id"]}
            if setting.get("to_service_id"):
                return {"establishment_id": str(est.id), "service_id": setting["to_service_id"], "practitioner_id": None}
            pools = sorted(
                (s for s in est.services.values()
                 if s["kind"] == "on_call_pool" and s["service_id"] != sid and s["specialty"] == service["specialty"]),
                key=lambda s: s["name"],
            )
            if pools:
                return {"establishment_id": str(est.id), "service_id": pools[0]["service_id"], "practitioner_id": None}
        return None

    def escalate_overdue(self, *, dossier_id: str, send_id: str) -> Escalation:
        """Escalates the send if it is still not accepted past its accept deadline and has a target.
        Idempotent: run again (a scheduler restarted after escalating), it does nothing and says why."""
        dossier = self.core.load(Dossier, dossier_id, "télédossier")
        send = dossier.send_of(send_id)
        deadline = dossier.deadline_of(send_id)
        now = self.core.clock()
        if deadline is None or dossier.is_over or not applies("accept_due", send["state"]):
            return Escalation(None, "sans objet : envoi pris en charge, terminé ou sans délai")
        if now < deadline.accept_by:
            return Escalation(None, "délai de prise en charge non écoulé")
        target = self.escalation_target(send)
        if target is None:
            return Escalation(None, "aucune astreinte ni remplaçant désigné pour ce destinataire")
        if send.get("escalated_to") == target:
            return Escalation(None, "déjà escaladé")
        system = Actor.from_dict(SYSTEM_ACTOR)
        try:
            self.commands.run_as(
                system, dossier_id, None,
                lambda d, a, t: d.escalate(
                    send_id=send_id, to=target, reason="délai de prise en charge dépassé", actor=a, occurred_at=t,
                ),
            )
        except DossierError as e:  # changed meanwhile (accepted, closed): nothing to escalate
            return Escalation(None, str(e))
        return Escalation(target, "escaladé")


