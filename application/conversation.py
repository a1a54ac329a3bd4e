"""Use cases after sending that are neither the requester's draft nor the recipient's answer: the thread
of a send, a complement answered with documents, milestones, an imaging transfer's receipt, the report."""

from __future__ import annotations

from datetime import datetime

from application.actors import Who
from application.base import SYSTEM_ACTOR
from application.commands import DossierCommands
from application.dossiers import NOTE_MAX
from domain.values import Actor, Json, text

MESSAGE_MAX = 10_000


class ConversationUseCases:
    """Each method checks who acts through the aggregate; errors record nothing."""

    def __init__(self, commands: DossierCommands) -> None:
        self.commands = commands

    def post_message(
        self, *, dossier_id: str, actor_id: Who, send_id: str, message: str = "", document_ids: list[str] | None = None,
        study_uids: list[str] | None = None, expected_version: int | None = None, occurred_at: datetime | None = None,
    ) -> str:
        """A message in the thread of a send (text and/or documents and studies already in the dossier);
        returns its id (derived from the form's token: the same form sent twice posts once)."""
        body = text(message, "text", max_len=MESSAGE_MAX, required=False)
        message_id = self.commands.new_id(actor_id, "message")
        self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.post_message(
                send_id=send_id, message_id=message_id, text=body, document_ids=document_ids, study_uids=study_uids,
                actor=a, occurred_at=t,
            ),
            occurred_at,
        )
        return message_id

    def answer_complement(
        self, *, dossier_id: str, actor_id: Who, send_id: str, message: str = "", document_ids: list[str] | None = None,
        study_uids: list[str] | None = None, expected_version: int | None = None, occurred_at: datetime | None = None,
    ) -> int | None:
        """The requester's answer to a complement request: text and/or documents or studies of the dossier."""
        body = text(message, "message", max_len=NOTE_MAX, required=False)
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.provide_complement(
                send_id=send_id, message=body, document_ids=document_ids, study_uids=study_uids, actor=a, occurred_at=t,
            ),
            occurred_at,
        )

    def record_milestone(
        self, *, dossier_id: str, actor_id: Who, milestone: str, at: datetime, note: str = "",
        expected_version: int | None = None, occurred_at: datetime | None = None,
    ) -> int | None:
        body = text(note, "note", max_len=500, required=False)
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.record_milestone(milestone=milestone, at=at, note=body, actor=a, occurred_at=t),
            occurred_at,
        )

    def acknowledge_receipt(
        self, *, dossier_id: str, actor_id: Who, send_id: str, note: str = "", expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        body = text(note, "note", max_len=NOTE_MAX, required=False)
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.acknowledge_receipt(send_id=send_id, note=body, actor=a, occurred_at=t), occurred_at,
        )

    def issue_report(self, *, dossier_id: str, send_id: str, report: Json, occurred_at: datetime | None = None) -> int | None:
        """Records a send's report PDF as the platform (its bytes already stored: see ReportIssued)."""
        return self.commands.run_as(
            Actor.from_dict(SYSTEM_ACTOR), dossier_id, None,
            lambda d, a, t: d.issue_report(send_id=send_id, report=report, actor=a, occurred_at=t), occurred_at,
        )
