"""Each practitioner's notification preferences: which notifications reach them by e-mail and how,
and whether the web app plays a sound or shows a desktop notification.

In-app notifications are always recorded; preferences only decide mails (and the web's sound and
desktop notification). « Immédiate » (stat) mails are never held by quiet hours nor the digest.
Stored as one JSON document per practitioner (`notification_preferences`); a practitioner who never
saved any gets the defaults (every kind by mail, at once, sound and desktop on).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from adapters.database import DictPool

# Every kind of notification (column `notifications.kind`, written by projections/notifications.py) and
# what it is called, the same on pages, in the bell, in desktop notifications and in mails' subjects; in
# the order the preferences page lists them.
KIND_LABELS: dict[str, str] = {
    "received": "Nouvelle demande d'avis",
    "complement_provided": "Complément apporté",
    "accepted": "Demande prise en charge",
    "declined": "Demande refusée",
    "complement_requested": "Complément demandé",
    "message": "Nouveau message",
    "opinion_given": "Avis rendu",
    "closed": "Télédossier clôturé",
    "cancelled": "Demande annulée",
    "escalated_to_you": "Demande escaladée vers vous",
    "escalated": "Demande escaladée (délai de prise en charge dépassé)",
    "reminder": "Rappel de délai",
    "deadline_missed": "Délai de réponse dépassé",
}
KINDS: tuple[str, ...] = tuple(KIND_LABELS)

DDL = """
CREATE TABLE IF NOT EXISTS notification_preferences (
    practitioner_id uuid PRIMARY KEY,
    prefs jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Preferences:
    email: bool = True  # mails at all
    kinds: frozenset[str] = field(default_factory=lambda: frozenset(KINDS))  # kinds sent by mail
    urgent_only: bool = False  # mails only for « Immédiate » and « Urgente » dossiers
    quiet_start: time | None = None  # no mail between these hours (Europe/Paris), « Immédiate » excepted
    quiet_end: time | None = None
    digest: bool = False  # one mail a day (07:30 Europe/Paris) instead of one per notification
    sound: bool = True  # the web app plays a sound for « Immédiate »/« Urgente » notifications
    desktop: bool = True  # the web app shows a desktop notification for them

    @property
    def has_quiet_hours(self) -> bool:
        return self.quiet_start is not None and self.quiet_end is not None and self.quiet_start != self.quiet_end

    def in_quiet_hours(self, local: datetime) -> bool:
        """Whether this local (Europe/Paris) moment falls in the quiet hours (which may span midnight)."""
        if not self.has_quiet_hours:
            return False
        assert self.quiet_start is not None and self.quiet_end is not None
        now = local.time().replace(tzinfo=None)
        if self.quiet_start < self.quiet_end:
            return self.quiet_start <= now < self.quiet_end
        return now >= self.quiet_start or now < self.quiet_end

    def to_json(self) -> dict[str, Any]:
        return {
            "email": self.email, "kinds": sorted(self.kinds), "urgent_only": self.urgent_only,
            "quiet_start": self.quiet_start.strftime("%H:%M") if self.quiet_start else None,
            "quiet_end": self.quiet_end.strftime("%H:%M") if self.quiet_end else None,
            "digest": self.digest, "sound": self.sound, "desktop": self.desktop,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preferences:
        """Preferences from their stored form; missing keys take the defaults, unknown kinds are dropped."""
        default = cls()

        def hour(value: Any) -> time | None:
            return time.fromisoformat(value) if isinstance(value, str) and value else None

        kinds = data.get("kinds")
        return cls(
            email=bool(data.get("email", default.email)),
            kinds=frozenset(k for k in kinds if k in KINDS) if isinstance(kinds, list) else default.kinds,
            urgent_only=bool(data.get("urgent_only", default.urgent_only)),
            quiet_start=hour(data.get("quiet_start")), quiet_end=hour(data.get("quiet_end")),
            digest=bool(data.get("digest", default.digest)),
            sound=bool(data.get("sound", default.sound)), desktop=bool(data.get("desktop", default.desktop)),
        )


class PreferenceStore:
    """Preferences by practitioner in PostgreSQL (the defaults for one who never saved any)."""

    def __init__(self, pool: DictPool):
        self.pool = pool

    def create_table(self) -> None:
        """The preferences table (idempotent; `relais db upgrade`)."""
        with self.pool.connection() as conn:
            conn.execute(DDL)

    def get(self, practitioner_id: str) -> Preferences:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT prefs FROM notification_preferences WHERE practitioner_id = %s", (practitioner_id,)
            ).fetchone()
        return Preferences.from_json(row["prefs"]) if row else Preferences()

    def get_many(self, practitioner_ids: list[str]) -> dict[str, Preferences]:
        """Preferences of several practitioners at once (the defaults for those without any)."""
        found: dict[str, Preferences] = {}
        if practitioner_ids:
            with self.pool.connection() as conn:
                for row in conn.execute(
                    "SELECT practitioner_id, prefs FROM notification_preferences WHERE practitioner_id = ANY(%s::uuid[])",
                    (practitioner_ids,),
                ):
                    found[str(row["practitioner_id"])] = Preferences.from_json(row["prefs"])
        return {pid: found.get(pid, Preferences()) for pid in practitioner_ids}

    def save(self, practitioner_id: str, prefs: Preferences) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO notification_preferences (practitioner_id, prefs, updated_at) VALUES (%s, %s, now()) "
                "ON CONFLICT (practitioner_id) DO UPDATE SET prefs = EXCLUDED.prefs, updated_at = now()",
                (practitioner_id, json.dumps(prefs.to_json())),
            )
