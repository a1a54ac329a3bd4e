"""The access log: every read of patient data, and every refusal, recorded as an Access event."""

from __future__ import annotations

from datetime import datetime

from application.base import Core, parse_uuid
from application.errors import ForbiddenError, NotFoundError
from domain.access import ACCESS_KINDS, Access
from domain.errors import NotAllowedError
from domain.values import Json


class AccessLog:
    """Records Access events (granted or denied); the audit reads them back through a projection."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def record_access(
        self, *, dossier_id: str, actor: Json, kind: str, target: str = "", outcome: str = "granted",
        reason: str = "", dossier_version: int | None = None, occurred_at: datetime | None = None,
    ) -> str:
        if kind not in ACCESS_KINDS:
            raise ValueError(f"unknown access kind {kind}")
        access = Access(
            dossier_id=str(dossier_id), dossier_version=dossier_version, kind=kind, target=target, outcome=outcome,
            reason=reason[:500], actor=dict(actor), occurred_at=occurred_at or self.core.clock(),
        )
        self.core.commit(access)
        return str(access.id)

    def trace_denied(self, *, dossier_id: str, actor: Json, kind: str, reason: str, target: str = "") -> None:
        """A dossier refused before anything was read (a page reserved to another role): traced
        when the dossier exists."""
        try:
            uid = parse_uuid(dossier_id, "télédossier")
        except NotFoundError:
            return
        if self.core.exists(uid):
            self.record_access(dossier_id=str(uid), actor=actor, kind=kind, target=target, outcome="denied", reason=reason)

    def trace_refusal(self, *, dossier_id: str, actor: Json, what: str, error: Exception) -> None:
        """A command refused for want of rights (403) is traced like a denied read."""
        if isinstance(error, (ForbiddenError, NotAllowedError)):
            try:
                self.record_access(
                    dossier_id=str(parse_uuid(dossier_id, "télédossier")), actor=actor, kind="command",
                    target=what, outcome="denied", reason=str(error),
                )
            except NotFoundError:
                pass
