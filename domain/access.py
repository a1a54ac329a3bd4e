"""The Access aggregate: one view of patient data (dossier, document, image, report), one stream each."""

from __future__ import annotations

from datetime import datetime

from eventsourcing.domain import Aggregate, event

from domain.values import Json

# What was looked at (or tried to be): the dossier page, one document, one imaging study,
# the printable report, the auditor's history/replay/export, a command refused.
ACCESS_KINDS = {
    "dossier": "Consultation du télédossier",
    "document": "Ouverture d'un document",
    "imaging": "Consultation d'une imagerie",
    "report": "Compte rendu imprimable",
    "report_pdf": "Compte rendu PDF (téléchargement)",
    "audit": "Historique (audit)",
    "replay": "Rejeu (audit)",
    "export": "Export de la piste d'audit",
    "command": "Action sur le télédossier",
}
OUTCOMES = {"granted": "autorisé", "denied": "refusé"}


class Access(Aggregate):
    """An access to a dossier's patient data by someone, granted or denied (R6316-4 traceability).

    Each access is its own stream of one event: recording never reads anything first and never
    conflicts with another viewer, and the dossier's own stream holds only what happened to it.
    """

    TOPIC = "relais:Access"

    class Created(Aggregate.Created):
        """Someone viewed (or was refused) a dossier's patient data; the stream's only event."""

        TOPIC = "relais:Access.Created"

        dossier_id: str
        dossier_version: int | None
        kind: str
        target: str
        outcome: str
        reason: str
        actor: Json
        occurred_at: datetime

    @event(Created)
    def __init__(
        self,
        *,
        dossier_id: str,
        dossier_version: int | None,
        kind: str,
        target: str,
        outcome: str,
        reason: str,
        actor: Json,
        occurred_at: datetime,
    ) -> None:
        self.dossier_id = dossier_id
        self.dossier_version = dossier_version
        self.kind = kind
        self.target = target
        self.outcome = outcome
        self.reason = reason
        self.actor = actor
        self.occurred_at = occurred_at
