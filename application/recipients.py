"""Recipient-side dossier use cases: accept, decline, ask for a complement, forward, give the opinion."""

from __future__ import annotations

from datetime import datetime

from application.access import allowed
from application.actors import Who
from application.commands import DossierCommands
from application.deadlines import DeadlineRules
from application.dossiers import NOTE_MAX, REPORT_MAX
from application.errors import ForbiddenError
from domain.dossier import DECLINE_REASONS, FOLLOW_UPS, Dossier
from domain.errors import InvalidFieldError
from domain.values import Actor, text


class RecipientUseCases:
    """Use cases of a send's recipient; the aggregate checks the actor is that recipient."""

    def __init__(self, commands: DossierCommands, deadlines: DeadlineRules) -> None:
        self.commands = commands
        self.deadlines = deadlines

    def accept(
        self, *, dossier_id: str, actor_id: Who, send_id: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.accept(send_id=send_id, actor=a, occurred_at=t), occurred_at,
        )

    def decline(
        self, *, dossier_id: str, actor_id: Who, send_id: str, reason_code: str, reason: str = "",
        expected_version: int | None = None, occurred_at: datetime | None = None,
    ) -> int | None:
        if reason_code not in DECLINE_REASONS:
            raise InvalidFieldError("reason_code", f"motif inconnu (attendu : {', '.join(DECLINE_REASONS)})")
        reason = text(reason, "reason", max_len=NOTE_MAX, required=reason_code == "other")
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.decline(send_id=send_id, reason_code=reason_code, reason=reason, actor=a, occurred_at=t),
            occurred_at,
        )

    def request_complement(
        self, *, dossier_id: str, actor_id: Who, send_id: str, message: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        message = text(message, "message", max_len=NOTE_MAX)
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.request_complement(send_id=send_id, message=message, actor=a, occurred_at=t),
            occurred_at,
        )

    def forward(
        self, *, dossier_id: str, actor_id: Who, send_id: str, to_establishment_id: str | None = None,
        to_service_id: str | None = None, to_practitioner_id: str | None = None, note: str = "",
        to_channel: str | None = None, expected_version: int | None = None, occurred_at: datetime | None = None,
    ) -> int | None:
        note = text(note, "note", max_len=NOTE_MAX, required=False)

        def action(d: Dossier, a: Actor, t: datetime) -> None:
            to = self.commands.recipient(
                to_establishment_id or d.send_of(send_id)["establishment_id"], to_service_id, to_practitioner_id,
                to_channel, field_prefix="to_",
            )
            d.forward(send_id=send_id, to=to, note=note, actor=a, occurred_at=t, delays_of=self.deadlines.for_dossier(d))

        return self.commands.run(dossier_id, actor_id, expected_version, action, occurred_at)

    def may_forward(self, *, dossier_id: str, actor_id: Who, send_id: str = "") -> None:
        """Nothing if the actor may forward now this send of the dossier (any of its sends when none is
        named): the forward form's directory search. NotFoundError for an unknown or invalid dossier,
        ForbiddenError for a dossier that is not theirs or a send they may not forward. Records nothing."""
        dossier = self.commands.core.load(Dossier, dossier_id, "télédossier")
        actor = self.commands.acting_on(dossier, actor_id)
        per_send = allowed(dossier, actor)[1]
        sends = [send_id] if send_id else list(per_send)
        if not any("forward" in per_send.get(sid, ()) for sid in sends):
            raise ForbiddenError("vous ne pouvez pas transférer cet envoi du télédossier")

    def give_opinion(
        self, *, dossier_id: str, actor_id: Who, send_id: str, report: str, conclusion: str = "",
        recommendations: str = "", follow_up: str = "", expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        """The structured opinion: report, conclusion, recommendations, urgency of the follow-up."""
        report = text(report, "report", max_len=REPORT_MAX)
        conclusion = text(conclusion, "conclusion", max_len=NOTE_MAX, required=False)
        recommendations = text(recommendations, "recommendations", max_len=NOTE_MAX, required=False)
        if follow_up and follow_up not in FOLLOW_UPS:
            raise InvalidFieldError("follow_up", f"urgence du suivi inconnue (attendu : {', '.join(FOLLOW_UPS)})")
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.give_opinion(
                send_id=send_id, report=report, conclusion=conclusion, recommendations=recommendations,
                follow_up=follow_up, actor=a, occurred_at=t,
            ),
            occurred_at,
        )
