"""Inbox read model: one row per dossier and per send, unread markers, and a pg_notify per change.

Every dossier event updates the rows in the same transaction as the tracking position (exactly
once) and ends with `pg_notify('relais_inbox', …)` naming the establishments concerned: the web
learns of a change only once it is committed and visible (server-sent events to open inboxes).
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from psycopg import Cursor

from domain.access import Access
from domain.dossier import Dossier
from projections.base import PostgresView
from projections.inbox_queries import InboxQueries

CHANNEL = "relais_inbox"
ACTIVE = ("requested", "in_progress", "on_hold")


def folded(text: str | None) -> str:
    """Lower case without accents, for searching names typed any way."""
    text = unicodedata.normalize("NFKD", text or "")
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def summary_state(draft: bool, closed: bool, cancelled: bool, states: list[str]) -> str:
    """The dossier's state from its sends' states (the same rule as Dossier.state)."""
    if cancelled:
        return "cancelled"
    if closed:
        return "closed"
    if draft:
        return "draft"
    live = {s for s in states if s != "pending"}
    if live & {"in_progress", "on_hold"}:
        return "in_progress"
    if "requested" in live:
        return "in_progress" if "answered" in live else "requested"
    if "answered" in live:
        return "answered"
    return "declined"


class PostgresInboxView(InboxQueries, PostgresView):
    ddl = (
        """CREATE TABLE IF NOT EXISTS inbox_dossiers (
            id uuid PRIMARY KEY, number text NOT NULL, workflow text NOT NULL, urgency text NOT NULL,
            state text NOT NULL, imaging_source text NOT NULL, consent text,
            birth_name text NOT NULL, first_names text NOT NULL, used_name text, birth_date date,
            sex text NOT NULL, ins text, search text NOT NULL,
            requester_establishment_id uuid NOT NULL, requester_practitioner_id uuid,
            requester_service_id uuid, documents integer NOT NULL DEFAULT 0, imaging integer NOT NULL DEFAULT 0,
            created_on timestamptz NOT NULL, first_sent_on timestamptz, over_on timestamptz,
            last_activity_at timestamptz NOT NULL, last_actor_id text NOT NULL, version integer NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS inbox_sends (
            send_id uuid PRIMARY KEY, dossier_id uuid NOT NULL, establishment_id uuid NOT NULL,
            service_id uuid, practitioner_id uuid, state text NOT NULL, sent_on timestamptz,
            answered_on timestamptz)""",
        """CREATE TABLE IF NOT EXISTS inbox_views (
            practitioner_id text NOT NULL, dossier_id uuid NOT NULL, version integer NOT NULL,
            viewed_at timestamptz NOT NULL, PRIMARY KEY (practitioner_id, dossier_id))""",
        "CREATE INDEX IF NOT EXISTS inbox_sends_recipient ON inbox_sends (establishment_id, state)",
        "CREATE INDEX IF NOT EXISTS inbox_sends_dossier ON inbox_sends (dossier_id)",
        """CREATE INDEX IF NOT EXISTS inbox_dossiers_requester
            ON inbox_dossiers (requester_establishment_id, state, last_activity_at DESC)""",
        "CREATE INDEX IF NOT EXISTS inbox_dossiers_activity ON inbox_dossiers (last_activity_at DESC, id DESC)",
        "CREATE INDEX IF NOT EXISTS inbox_dossiers_number ON inbox_dossiers (number)",
        "CREATE INDEX IF NOT EXISTS inbox_dossiers_name ON inbox_dossiers (birth_name text_pattern_ops)",
    )
    tables = ("inbox_dossiers", "inbox_sends", "inbox_views")


def _uuid(value: Any) -> str | None:
    return str(value) if value else None


class InboxProjection(Projection[PostgresInboxView]):
    """Keeps the inbox tables in step with dossier events and the views recorded by Access events."""

    name = "inbox"
    topics = (
        "relais:Dossier.Created", "relais:Dossier.DraftEdited", "relais:Dossier.ConsentRecorded",
        "relais:Dossier.DocumentAttached", "relais:Dossier.DocumentRemoved", "relais:Dossier.ImagingAttached",
        "relais:Dossier.ImagingDetached", "relais:Dossier.RecipientAddressed", "relais:Dossier.RecipientRemoved",
        "relais:Dossier.Sent", "relais:Dossier.ComplementProvided", "relais:Dossier.Closed",
        "relais:Dossier.Cancelled", "relais:Dossier.Accepted", "relais:Dossier.Declined",
        "relais:Dossier.ComplementRequested", "relais:Dossier.Forwarded", "relais:Dossier.OpinionGiven",
        "relais:Access.Created",
    )

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.apply(tracking)

    def _dossier(self, e: Any, tracking: Tracking, change: Any = None, extra: tuple[str, ...] = ()) -> None:
        """Applies `change(curs)`, then the dossier's summary (state, version, activity), then notifies."""

        def write(curs: Cursor) -> None:
            before = set(extra)
            curs.execute("SELECT establishment_id::text AS e FROM inbox_sends WHERE dossier_id = %s", (e.originator_id,))
            before |= {r["e"] for r in curs.fetchall()}
            if change is not None:
                change(curs)
            self._touch(curs, e, before)

        self.view.apply(tracking, write)

    @staticmethod
    def _touch(curs: Cursor, e: Any, establishments: set[str]) -> None:
        curs.execute(
            "SELECT first_sent_on IS NULL AS draft, state, requester_establishment_id::text AS req "
            "FROM inbox_dossiers WHERE id = %s", (e.originator_id,),
        )
        row = curs.fetchone()
        if row is None:  # pragma: no cover - a dossier's first event is always Created
            return
        curs.execute("SELECT state, establishment_id::text AS e FROM inbox_sends WHERE dossier_id = %s", (e.originator_id,))
        sends = curs.fetchall()
        state = summary_state(
            row["draft"], row["state"] == "closed", row["state"] == "cancelled", [s["state"] for s in sends]
        )
        occurred = getattr(e, "occurred_at", None) or e.timestamp
        curs.execute(
            "UPDATE inbox_dossiers SET state = %s, version = %s, last_activity_at = greatest(last_activity_at, %s), "
            "last_actor_id = %s WHERE id = %s",
            (state, e.originator_version, occurred, (e.actor or {}).get("practitioner_id", ""), e.originator_id),
        )
        concerned = sorted(establishments | {row["req"]} | {s["e"] for s in sends if s["state"] != "pending"})
        payload = {"d": str(e.originator_id), "v": e.originator_version, "t": type(e).__name__, "e": concerned}
        curs.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(payload)))

    # ---------------------------------------------------------------- requester side

    @process_event.register
    def _(self, e: Dossier.Created, tracking: Tracking) -> None:
        p, r = e.patient or {}, e.requester  # imported legacy history carries no patient identity
        search = " ".join(folded(x) for x in (p.get("birth_name"), p.get("used_name"), p.get("first_names")) if x)

        def insert(curs: Cursor) -> None:
            from domain.dossier import dossier_number

            curs.execute(
                """INSERT INTO inbox_dossiers (id, number, workflow, urgency, state, imaging_source, consent,
                   birth_name, first_names, used_name, birth_date, sex, ins, search, requester_establishment_id,
                   requester_practitioner_id, requester_service_id, created_on, last_activity_at, last_actor_id,
                   version)
                   VALUES (%s, %s, %s, %s, 'draft', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (id) DO NOTHING""",
                (e.originator_id, dossier_number(e.originator_id), e.workflow, e.urgency, e.imaging_source,
                 (e.consent or {}).get("status"), p.get("birth_name", ""), p.get("first_names", ""), p.get("used_name"),
                 p.get("birth_date") or None, p.get("sex", ""), p.get("ins"), search, r["establishment_id"], _uuid(r.get("practitioner_id")),
                 _uuid(r.get("service_id")), e.occurred_at, e.occurred_at, e.actor.get("practitioner_id", ""),
                 e.originator_version),
            )

        self._dossier(e, tracking, insert)

    @process_event.register
    def _(self, e: Dossier.DraftEdited, tracking: Tracking) -> None:
        def change(curs: Cursor) -> None:
            c = e.changes
            for key in ("workflow", "urgency", "imaging_source"):
                if key in c:
                    curs.execute(f"UPDATE inbox_dossiers SET {key} = %s WHERE id = %s", (c[key], e.originator_id))
            if "patient" in c:
                p = c["patient"]
                search = " ".join(folded(x) for x in (p.get("birth_name"), p.get("used_name"), p.get("first_names")) if x)
                curs.execute(
                    "UPDATE inbox_dossiers SET birth_name = %s, first_names = %s, used_name = %s, birth_date = %s, "
                    "sex = %s, ins = %s, search = %s WHERE id = %s",
                    (p["birth_name"], p["first_names"], p.get("used_name"), p["birth_date"], p["sex"], p.get("ins"),
                     search, e.originator_id),
                )

        self._dossier(e, tracking, change)

    @process_event.register
    def _(self, e: Dossier.ConsentRecorded, tracking: Tracking) -> None:
        self._dossier(e, tracking, lambda c: c.execute(
            "UPDATE inbox_dossiers SET consent = %s WHERE id = %s", (e.status, e.originator_id)))

    @process_event.register
    def _(self, e: Dossier.DocumentAttached, tracking: Tracking) -> None:
        self._dossier(e, tracking, lambda c: c.execute(
            "UPDATE inbox_dossiers SET documents = documents + 1 WHERE id = %s", (e.originator_id,)))

    @process_event.register
    def _(self, e: Dossier.DocumentRemoved, tracking: Tracking) -> None:
        self._dossier(e, tracking, lambda c: c.execute(
            "UPDATE inbox_dossiers SET documents = greatest(documents - 1, 0) WHERE id = %s", (e.originator_id,)))

    @process_event.register
    def _(self, e: Dossier.ImagingAttached, tracking: Tracking) -> None:
        self._dossier(e, tracking, lambda c: c.execute(
            "UPDATE inbox_dossiers SET imaging = imaging + 1 WHERE id = %s", (e.originator_id,)))

    @process_event.register
    def _(self, e: Dossier.ImagingDetached, tracking: Tracking) -> None:
        self._dossier(e, tracking, lambda c: c.execute(
            "UPDATE inbox_dossiers SET imaging = greatest(imaging - 1, 0) WHERE id = %s", (e.originator_id,)))

    @process_event.register
    def _(self, e: Dossier.RecipientAddressed, tracking: Tracking) -> None:
        r = e.recipient
        self._dossier(e, tracking, lambda c: c.execute(
            "INSERT INTO inbox_sends (send_id, dossier_id, establishment_id, service_id, practitioner_id, state) "
            "VALUES (%s, %s, %s, %s, %s, 'pending') ON CONFLICT (send_id) DO NOTHING",
            (r["send_id"], e.originator_id, r["establishment_id"], _uuid(r.get("service_id")),
             _uuid(r.get("practitioner_id")))))

    @process_event.register
    def _(self, e: Dossier.RecipientRemoved, tracking: Tracking) -> None:
        self._dossier(e, tracking, lambda c: c.execute("DELETE FROM inbox_sends WHERE send_id = %s", (e.send_id,)))

    @process_event.register
    def _(self, e: Dossier.Sent, tracking: Tracking) -> None:
        def change(curs: Cursor) -> None:
            curs.execute(
                "UPDATE inbox_sends SET state = 'requested', sent_on = %s WHERE send_id = ANY(%s::uuid[])",
                (e.occurred_at, list(e.send_ids)),
            )
            curs.execute(
                "UPDATE inbox_dossiers SET first_sent_on = coalesce(first_sent_on, %s) WHERE id = %s",
                (e.occurred_at, e.originator_id),
            )

        self._dossier(e, tracking, change)

    def _over(self, e: Any, tracking: Tracking, state: str) -> None:
        def change(curs: Cursor) -> None:
            curs.execute(
                "UPDATE inbox_sends SET state = %s WHERE dossier_id = %s AND state IN "
                "('pending', 'requested', 'in_progress', 'on_hold')", (state, e.originator_id),
            )
            curs.execute(
                "UPDATE inbox_dossiers SET state = %s, over_on = %s WHERE id = %s", (state, e.occurred_at, e.originator_id)
            )

        self._dossier(e, tracking, change)

    @process_event.register
    def _(self, e: Dossier.Closed, tracking: Tracking) -> None:
        self._over(e, tracking, "closed")

    @process_event.register
    def _(self, e: Dossier.Cancelled, tracking: Tracking) -> None:
        self._over(e, tracking, "cancelled")

    # ---------------------------------------------------------------- recipient side

    def _send_state(self, e: Any, tracking: Tracking, state: str, answered: bool = False) -> None:
        self._dossier(e, tracking, lambda c: c.execute(
            "UPDATE inbox_sends SET state = %s, answered_on = CASE WHEN %s THEN %s ELSE answered_on END "
            "WHERE send_id = %s", (state, answered, e.occurred_at, e.send_id)))

    @process_event.register
    def _(self, e: Dossier.Accepted, tracking: Tracking) -> None:
        self._send_state(e, tracking, "in_progress")

    @process_event.register
    def _(self, e: Dossier.ComplementProvided, tracking: Tracking) -> None:
        self._send_state(e, tracking, "in_progress")

    @process_event.register
    def _(self, e: Dossier.Declined, tracking: Tracking) -> None:
        self._send_state(e, tracking, "declined")

    @process_event.register
    def _(self, e: Dossier.ComplementRequested, tracking: Tracking) -> None:
        self._send_state(e, tracking, "on_hold")

    @process_event.register
    def _(self, e: Dossier.OpinionGiven, tracking: Tracking) -> None:
        self._send_state(e, tracking, "answered", answered=True)

    @process_event.register
    def _(self, e: Dossier.Forwarded, tracking: Tracking) -> None:
        to = e.to
        self._dossier(e, tracking, lambda c: c.execute(
            "UPDATE inbox_sends SET establishment_id = %s, service_id = %s, practitioner_id = %s, state = 'requested' "
            "WHERE send_id = %s",
            (to["establishment_id"], _uuid(to.get("service_id")), _uuid(to.get("practitioner_id")), e.send_id)))

    # ---------------------------------------------------------------- read markers

    @process_event.register
    def _(self, e: Access.Created, tracking: Tracking) -> None:
        if e.outcome != "granted" or e.kind != "dossier" or not e.dossier_version:
            self.view.apply(tracking)
            return
        self.view.apply(tracking, lambda c: c.execute(
            """INSERT INTO inbox_views VALUES (%s, %s, %s, %s)
               ON CONFLICT (practitioner_id, dossier_id) DO UPDATE
               SET version = greatest(inbox_views.version, EXCLUDED.version), viewed_at = EXCLUDED.viewed_at""",
            (e.actor.get("practitioner_id", ""), e.dossier_id, e.dossier_version, e.occurred_at)))
