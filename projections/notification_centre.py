"""The in-app notification centre's queries: one practitioner's notifications (written by the
notifications projection, projections/notifications.py), unread counts, marking read.

Every query is scoped to one practitioner, server-side: nobody reads or marks another's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from projections.notifications import NOTIFICATIONS_CHANNEL

CHANNEL = NOTIFICATIONS_CHANNEL  # what the web listens to: {"practitioners": [...], "dossier", "kind", "urgency"}
URGENT = ("stat", "asap", "urgent")  # « Immédiate », « Dès que possible », « Urgente »: sound and desktop notification
LIST_SIZE = 50


@dataclass(frozen=True)
class Notification:
    id: str
    dossier_id: str
    number: str
    kind: str
    workflow: str
    urgency: str
    deadline: datetime | None
    detail: dict[str, Any]
    occurred_at: datetime
    read_at: datetime | None

    @property
    def unread(self) -> bool:
        return self.read_at is None

    @property
    def urgent(self) -> bool:
        return self.urgency in URGENT


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


COLUMNS = """id::text AS id, dossier_id::text AS dossier_id, number, kind, workflow, urgency, deadline, detail,
             occurred_at, read_at"""


class NotificationCentre:
    """Queries on the `notifications` table for one practitioner at a time."""

    def __init__(self, pool: ConnectionPool[Connection[DictRow]]):
        self.pool = pool

    def unread(self, practitioner_id: str) -> int:
        me = _uuid(practitioner_id)
        if me is None:
            return 0
        with self.pool.connection() as conn:
            row = conn.execute("SELECT count(*) AS n FROM notifications WHERE practitioner_id = %s AND read_at IS NULL",
                               (me,)).fetchone()
        return int(row["n"]) if row else 0

    def latest(self, practitioner_id: str, limit: int = LIST_SIZE, dossier_id: str | None = None) -> list[Notification]:
        """Newest first (when recorded, then when it happened); of one dossier if `dossier_id`."""
        me = _uuid(practitioner_id)
        if me is None:
            return []
        where, params = "practitioner_id = %s", [me]
        if dossier_id is not None:
            did = _uuid(dossier_id)
            if did is None:
                return []
            where += " AND dossier_id = %s"
            params.append(did)
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM notifications WHERE {where} "
                "ORDER BY created_at DESC, occurred_at DESC, id DESC LIMIT %s", [*params, limit],
            ).fetchall()
        return [Notification(**r) for r in rows]

    def bell(self, practitioner_id: str, dossier_id: str) -> tuple[int, Notification | None]:
        """What a new notification about `dossier_id` tells my pages: my unread count and my newest
        notification about that dossier — one connection, one round trip each."""
        me, did = _uuid(practitioner_id), _uuid(dossier_id)
        if me is None:
            return 0, None
        with self.pool.connection() as conn:
            row = conn.execute(
                f"""SELECT (SELECT count(*) FROM notifications WHERE practitioner_id = %(me)s AND read_at IS NULL) AS unread,
                           n.* FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT {COLUMNS} FROM notifications
                             WHERE practitioner_id = %(me)s AND dossier_id = %(did)s
                             ORDER BY created_at DESC, occurred_at DESC, id DESC LIMIT 1) n ON true""",
                {"me": me, "did": did},
            ).fetchone()
        if row is None:
            return 0, None
        unread = int(row.pop("unread"))
        return unread, Notification(**row) if row["id"] is not None else None

    def get(self, practitioner_id: str, notification_id: str) -> Notification | None:
        """One of my notifications (None: not mine, or no such notification)."""
        me, nid = _uuid(practitioner_id), _uuid(notification_id)
        if me is None or nid is None:
            return None
        with self.pool.connection() as conn:
            row = conn.execute(f"SELECT {COLUMNS} FROM notifications WHERE id = %s AND practitioner_id = %s",
                               (nid, me)).fetchone()
        return Notification(**row) if row else None

    def mark_read(self, practitioner_id: str, notification_id: str) -> bool:
        """Marks one of my notifications read; False when it is not mine (nothing changed then)."""
        me, nid = _uuid(practitioner_id), _uuid(notification_id)
        if me is None or nid is None:
            return False
        with self.pool.connection() as conn:
            cur = conn.execute(
                "UPDATE notifications SET read_at = coalesce(read_at, now()) WHERE id = %s AND practitioner_id = %s",
                (nid, me),
            )
            return cur.rowcount == 1

    def mark_all_read(self, practitioner_id: str, dossier_id: str | None = None) -> int:
        """Marks my unread notifications read (of one dossier if `dossier_id`); how many."""
        me = _uuid(practitioner_id)
        if me is None:
            return 0
        where, params = "practitioner_id = %s AND read_at IS NULL", [me]
        if dossier_id is not None:
            did = _uuid(dossier_id)
            if did is None:
                return 0
            where += " AND dossier_id = %s"
            params.append(did)
        with self.pool.connection() as conn:
            return conn.execute(f"UPDATE notifications SET read_at = now() WHERE {where}", params).rowcount
