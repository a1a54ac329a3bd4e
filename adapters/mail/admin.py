"""What an administrator sees of notification mails: deliveries not sent yet or failed (with their
attempts and last error), and « Réessayer » on a failed one. Administrators act on the whole platform
(as on the directory)."""

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


def deliveries(pool: DictPool, limit: int = 200) -> list[MailRow]:
    """Mails pending, being sent or failed: failed first, then oldest."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT m.id, n.number, n.kind, n.urgency, m.address, m.state, m.attempts, m.next_attempt_at, "
            "m.last_error, m.created_at FROM notification_mails m JOIN notifications n ON n.id = m.id "
            "WHERE m.state = ANY(%(states)s) "
            "ORDER BY (m.state = 'failed') DESC, m.created_at LIMIT %(limit)s",
            {"states": list(SHOWN), "limit": limit},
        ).fetchall()
    return [MailRow(**{**r, "id": str(r["id"])}) for r in rows]


def counts(pool: DictPool) -> dict[str, int]:
    """Mails by state (all states)."""
    with pool.connection() as conn:
        rows = conn.execute("SELECT state, count(*) AS n FROM notification_mails GROUP BY state").fetchall()
    return {r["state"]: r["n"] for r in rows}


def retry(pool: DictPool, mail_id: str, now: datetime) -> bool:
    """A failed mail pending again now, its attempts from zero (the loop is woken); False when it is not
    a failed mail."""
    with pool.connection() as conn, conn.transaction():
        row = conn.execute(
            "UPDATE notification_mails SET state = 'pending', attempts = 0, next_attempt_at = %s, "
            "message_id = NULL WHERE id = %s AND state = 'failed' RETURNING id", (now, mail_id),
        ).fetchone()
        if row is not None:
            conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
    return row is not None
