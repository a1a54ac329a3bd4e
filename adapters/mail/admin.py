"""What an administrator sees of notification mails: deliveries not sent yet or failed (with their
attempts and last error) for the members of their establishment, and « Réessayer » on a failed one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from adapters.database import DictPool

CHANNEL = "relais_mail"  # the delivery loop wakes on it (adapters/mail/delivery.py)
SHOWN = ("pending", "sending", "failed")


@dataclass(frozen=True)
class MailRow:
    id: str
    number: str
    kind: str
    urgency: str
    address: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime


MEMBER = (
    "EXISTS (SELECT 1 FROM dir_memberships d WHERE d.practitioner_id = m.practitioner_id "
    "AND d.establishment_id = %(establishment)s)"
)


def deliveries(pool: DictPool, establishment_id: str, limit: int = 200) -> list[MailRow]:
    """Mails pending, being sent or failed of the establishment's members: failed first, then oldest."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT m.id, n.number, n.kind, n.urgency, m.address, m.state, m.attempts, m.next_attempt_at, "
            "m.last_error, m.created_at FROM notification_mails m JOIN notifications n ON n.id = m.id "
            f"WHERE m.state = ANY(%(states)s) AND {MEMBER} "
            "ORDER BY (m.state = 'failed') DESC, m.created_at LIMIT %(limit)s",
            {"states": list(SHOWN), "establishment": establishment_id, "limit": limit},
        ).fetchall()
    return [MailRow(**{**r, "id": str(r["id"])}) for r in rows]


def counts(pool: DictPool, establishment_id: str) -> dict[str, int]:
    """Mails by state (all states) of the establishment's members."""
    with pool.connection() as conn:
        rows = conn.execute(
            f"SELECT m.state, count(*) AS n FROM notification_mails m WHERE {MEMBER} GROUP BY m.state",
            {"establishment": establishment_id},
        ).fetchall()
    return {r["state"]: r["n"] for r in rows}


def retry(pool: DictPool, mail_id: str, establishment_id: str | None, now: datetime) -> bool:
    """A failed mail pending again now, its attempts from zero (the loop is woken); False when it is not
    a failed mail (of the establishment's members, when one is given)."""
    scope = f" AND {MEMBER}" if establishment_id is not None else ""
    with pool.connection() as conn, conn.transaction():
        row = conn.execute(
            "UPDATE notification_mails m SET state = 'pending', attempts = 0, next_attempt_at = %(now)s, "
            f"message_id = NULL WHERE m.id = %(id)s AND m.state = 'failed'{scope} RETURNING m.id",
            {"now": now, "id": mail_id, "establishment": establishment_id},
        ).fetchone()
        if row is not None:
            conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
    return row is not None
