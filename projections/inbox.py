"""Inbox read model: one row per dossier and per send, unread markers, and a pg_notify per change.

Buffered (see projections/base.py): events are folded in memory here and each batch is written with
its tracking position in one transaction (projections/inbox_batch.py) — new rows by COPY, changes
to rows written by earlier batches by one set-based UPDATE per table. A rebuild writes each row
about once; a live event is written at most `quiet_after` seconds after it arrives.

Each batch ends with `pg_notify('relais_inbox', …)` in the same transaction, naming the
establishments concerned: the web learns of a change only once it is committed and visible
(server-sent events to open inboxes). One notification per dossier changed by the batch; a
bulk batch (a rebuild, a history import) sends one per group of establishments instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Protocol
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow

from application.history import IMPORT_ACTOR
from domain.access import Access
from domain.dossier import Dossier, dossier_number
from domain.values import Json, folded
from projections.base import BufferedProjection, PostgresView
from projections.inbox_batch import CHANNEL, OPEN_SEND_STATES, InboxBatch, write_batch
from projections.inbox_queries import HISTORY_IMPORT, InboxQueries
from projections.search import search_text

__all__ = ["CHANNEL", "InboxProjection", "PostgresInboxView"]  # CHANNEL: what the web listens to


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
            answered_on timestamptz, accept_by timestamptz, answer_by timestamptz,
            escalated boolean NOT NULL DEFAULT false, escalated_service_id uuid, escalated_practitioner_id uuid)""",
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
        # searching a name anywhere (LIKE '%…%', three letters or more) without reading every dossier
        # (pg_trgm ships with PostgreSQL, the embedded server included, and is a trusted extension)
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE INDEX IF NOT EXISTS inbox_dossiers_search ON inbox_dossiers USING gin (search gin_trgm_ops)",
    )
    tables = ("inbox_dossiers", "inbox_sends", "inbox_views")
    # 1: each send's deadline (accept_by, answer_by) and escalation target; 2: the history import's last actor,
    # and an imported dossier's legacy number in its search text
    schema_version = 2


_UUIDS: dict[str, UUID] = {}


def _id(value: str | UUID) -> UUID:
    """A UUID from an event's id (str or UUID), parsed once per id (establishments, services and
    sends come back in every batch; the cache stops growing at 100,000)."""
    if isinstance(value, UUID):
        return value
    found = _UUIDS.get(value)
    if found is None:
        found = UUID(value)
        if len(_UUIDS) < 100_000:
            _UUIDS[value] = found
    return found


def _uuid(value: str | UUID | None) -> UUID | None:
    """`_id` of an id an event may not have (None then)."""
    return _id(value) if value else None


def _date(value: Any) -> date | None:
    if not value:
        return None
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _deadline(recorded: Mapping[str, Any] | None) -> dict[str, Any]:
    """The send columns of a deadline record (Sent v2 `deadlines[send]`, Forwarded v2 `deadline`);
    nothing when none was recorded (the send keeps the one it had)."""
    if not recorded:
        return {}
    return {"accept_by": _when(recorded.get("accept_by")), "answer_by": _when(recorded.get("answer_by")), "timed": True}


def _escalation(to: Mapping[str, Any] | None) -> dict[str, Any]:
    """The send columns of its escalation target (`to` of Dossier.Escalated; None: cleared by a forward)."""
    return {"escalated": to is not None, "escalated_service_id": _uuid((to or {}).get("service_id")),
            "escalated_practitioner_id": _uuid((to or {}).get("practitioner_id")), "escalation": True}


def _patient(p: Mapping[str, Any]) -> dict[str, Any]:
    """The patient columns of an identity (imported legacy history carries none)."""
    return {
        "birth_name": p.get("birth_name") or "", "first_names": p.get("first_names") or "",
        "used_name": p.get("used_name"), "birth_date": _date(p.get("birth_date")), "sex": p.get("sex") or "",
        "ins": p.get("ins"), "search": search_text(p),
    }


class DossierEvent(Protocol):
    """What the inbox reads of any dossier event (every `Dossier` event class has these)."""

    @property
    def originator_id(self) -> UUID: ...
    @property
    def originator_version(self) -> int: ...
    @property
    def timestamp(self) -> datetime: ...
    @property
    def actor(self) -> Json: ...
    @property
    def occurred_at(self) -> datetime: ...


class SendEvent(DossierEvent, Protocol):
    """A dossier event about one of its sends (accepted, declined, answered…)."""

    @property
    def send_id(self) -> str: ...


class InboxProjection(BufferedProjection[PostgresInboxView]):
    """Keeps the inbox tables in step with dossier events and the views recorded by Access events."""

    batch: InboxBatch

    name = "inbox"
    topics = (
        "relais:Dossier.Created", "relais:Dossier.DraftEdited", "relais:Dossier.ConsentRecorded",
        "relais:Dossier.DocumentAttached", "relais:Dossier.DocumentRemoved", "relais:Dossier.ImagingAttached",
        "relais:Dossier.ImagingDetached", "relais:Dossier.RecipientAddressed", "relais:Dossier.RecipientRemoved",
        "relais:Dossier.Sent", "relais:Dossier.ComplementProvided", "relais:Dossier.Closed",
        "relais:Dossier.Cancelled", "relais:Dossier.Accepted", "relais:Dossier.Declined",
        "relais:Dossier.ComplementRequested", "relais:Dossier.Forwarded", "relais:Dossier.OpinionGiven",
        "relais:Dossier.Escalated", "relais:Dossier.MessagePosted", "relais:Dossier.ReceiptAcknowledged",
        "relais:Access.Created",
    )
    # Live: a send reaches the recipient's open inbox quickly; a burst still makes one batch.
    quiet_after = 0.03
    max_delay = 0.3

    def new_batch(self) -> InboxBatch:
        return InboxBatch()

    # -------------------------------------------------------------- folding: helpers

    def _summary(self, e: DossierEvent) -> None:
        """What every dossier event changes: version, last activity, last actor."""
        b: InboxBatch = self.batch
        occurred = getattr(e, "occurred_at", None) or e.timestamp
        actor = (e.actor or {}).get("practitioner_id") or ""
        if (e.actor or {}).get("name") == IMPORT_ACTOR["name"] and actor == IMPORT_ACTOR["practitioner_id"]:
            actor = HISTORY_IMPORT  # the legacy history: read by everyone (no news), never a flood of unread rows
        row = b.dossiers.get(e.originator_id)
        if row is not None:
            row["version"] = e.originator_version
            row["last_activity_at"] = max(row["last_activity_at"], occurred)
            row["last_actor_id"] = actor
        else:
            patch = b.patches.setdefault(e.originator_id, {})
            patch["version"] = e.originator_version
            patch["activity"] = max(patch.get("activity", occurred), occurred)
            patch["actor"] = actor
        b.touched[e.originator_id] = (e.originator_version, type(e).__name__)

    def _set(self, e: DossierEvent, **values: Any) -> None:
        """Sets dossier columns (last value wins)."""
        row = self.batch.dossiers.get(e.originator_id)
        target = row if row is not None else self.batch.patches.setdefault(e.originator_id, {})
        target.update(values)

    def _add(self, e: DossierEvent, column: str, delta: int) -> None:
        row = self.batch.dossiers.get(e.originator_id)
        if row is not None:
            row[column] = max(row[column] + delta, 0)
        else:
            patch = self.batch.patches.setdefault(e.originator_id, {})
            patch[column + "_delta"] = patch.get(column + "_delta", 0) + delta

    def _send(self, send_id: str, **values: Any) -> dict[str, Any] | None:
        """Sets columns of a send; returns its row when it is in memory (addressed in this batch)."""
        sid = _id(send_id)
        row = self.batch.sends.get(sid)
        if row is not None:
            row.update(values)
            return row
        self.batch.send_patches.setdefault(sid, {}).update(values)
        return None

    # -------------------------------------------------------------- folding: events

    def _created(self, e: Dossier.Created) -> None:
        r = e.requester or {}
        self.batch.dossiers[e.originator_id] = {
            "id": e.originator_id, "number": dossier_number(e.originator_id), "workflow": e.workflow,
            "urgency": e.urgency, "state": "draft", "imaging_source": e.imaging_source,
            "consent": (e.consent or {}).get("status"), **_patient(e.patient or {}),
            "requester_establishment_id": _uuid(r["establishment_id"]),
            "requester_practitioner_id": _uuid(r.get("practitioner_id")),
            "requester_service_id": _uuid(r.get("service_id")), "documents": 0, "imaging": 0,
            "created_on": e.occurred_at, "first_sent_on": None, "over_on": None,
            "last_activity_at": e.occurred_at, "last_actor_id": "", "version": e.originator_version,
        }
        imported = getattr(e, "imported_from", None)
        if imported:  # no patient to search by: found by its legacy number, or as « historique importé »
            self.batch.dossiers[e.originator_id]["search"] = folded(f"historique importe {imported.get('legacy_id', '')}")
        self._summary(e)

    def _edited(self, e: Dossier.DraftEdited) -> None:
        c = e.changes
        values: dict[str, Any] = {k: c[k] for k in ("workflow", "urgency", "imaging_source") if k in c}
        if "patient" in c:
            values.update(_patient(c["patient"]))
            if e.originator_id not in self.batch.dossiers:
                values["has_patient"] = True
        self._set(e, **values)
        self._summary(e)

    def _consent(self, e: Dossier.ConsentRecorded) -> None:
        if e.originator_id in self.batch.dossiers:
            self._set(e, consent=e.status)
        else:
            self._set(e, consent=e.status, has_consent=True)
        self._summary(e)

    def _document_attached(self, e: Dossier.DocumentAttached) -> None:
        self._add(e, "documents", 1)
        self._summary(e)

    def _document_removed(self, e: Dossier.DocumentRemoved) -> None:
        self._add(e, "documents", -1)
        self._summary(e)

    def _imaging_attached(self, e: Dossier.ImagingAttached) -> None:
        self._add(e, "imaging", 1)
        self._summary(e)

    def _imaging_detached(self, e: Dossier.ImagingDetached) -> None:
        self._add(e, "imaging", -1)
        self._summary(e)

    def _addressed(self, e: Dossier.RecipientAddressed) -> None:
        r = e.recipient
        sid = _id(r["send_id"])
        self.batch.sends[sid] = {
            "send_id": sid, "dossier_id": e.originator_id, "establishment_id": _uuid(r["establishment_id"]),
            "service_id": _uuid(r.get("service_id")), "practitioner_id": _uuid(r.get("practitioner_id")),
            "state": "pending", "sent_on": None, "answered_on": None, "accept_by": None, "answer_by": None,
            "escalated": False, "escalated_service_id": None, "escalated_practitioner_id": None,
        }
        self.batch.sends_of.setdefault(e.originator_id, []).append(sid)
        self._summary(e)

    def _removed(self, e: Dossier.RecipientRemoved) -> None:
        b = self.batch
        sid = _id(e.send_id)
        row = b.sends.pop(sid, None)
        if row is not None:
            b.sends_of[e.originator_id].remove(sid)
            b.extra.setdefault(e.originator_id, set()).add(row["establishment_id"])
        else:
            b.send_patches.pop(sid, None)
            b.removed.add(sid)
        self._summary(e)

    def _sent(self, e: Dossier.Sent) -> None:
        deadlines = getattr(e, "deadlines", None) or {}  # none for history imports and v1 events
        for send_id in e.send_ids:
            self._send(send_id, state="requested", sent_on=e.occurred_at, **_deadline(deadlines.get(send_id)))
        row = self.batch.dossiers.get(e.originator_id)
        if row is not None:
            if row["first_sent_on"] is None:
                row["first_sent_on"] = e.occurred_at
        else:
            self.batch.patches.setdefault(e.originator_id, {}).setdefault("first_sent_on", e.occurred_at)
        self._summary(e)

    def _ended(self, e: DossierEvent, state: str) -> None:
        b = self.batch
        for sid in b.sends_of.get(e.originator_id, ()):
            send = b.sends[sid]
            if send["state"] in OPEN_SEND_STATES:
                send["state"] = state
        row = b.dossiers.get(e.originator_id)
        if row is not None:
            row["state"], row["over_on"] = state, e.occurred_at
        else:
            patch = b.patches.setdefault(e.originator_id, {})
            patch["over_state"], patch["over_on"] = state, e.occurred_at
            b.over[e.originator_id] = state  # its sends of earlier batches: one UPDATE after their patches
        self._summary(e)

    def _closed(self, e: Dossier.Closed) -> None:
        self._ended(e, "closed")

    def _cancelled(self, e: Dossier.Cancelled) -> None:
        self._ended(e, "cancelled")

    def _send_state(self, e: SendEvent, state: str, answered: bool = False) -> None:
        if answered:
            self._send(e.send_id, state=state, answered_on=e.occurred_at)
        else:
            self._send(e.send_id, state=state)
        self._summary(e)

    def _accepted(self, e: Dossier.Accepted) -> None:
        self._send_state(e, "in_progress")

    def _complement_provided(self, e: Dossier.ComplementProvided) -> None:
        self._send_state(e, "in_progress")

    def _declined(self, e: Dossier.Declined) -> None:
        self._send_state(e, "declined")

    def _complement_requested(self, e: Dossier.ComplementRequested) -> None:
        self._send_state(e, "on_hold")

    def _answered(self, e: Dossier.OpinionGiven) -> None:
        self._send_state(e, "answered", answered=True)

    def _forwarded(self, e: Dossier.Forwarded) -> None:
        to = e.to
        sid = _id(e.send_id)
        before = self.batch.sends.get(sid)
        if before is not None and before["establishment_id"] != _uuid(to["establishment_id"]):
            self.batch.extra.setdefault(e.originator_id, set()).add(before["establishment_id"])
        self._send(
            e.send_id, state="requested", establishment_id=_uuid(to["establishment_id"]),
            service_id=_uuid(to.get("service_id")), practitioner_id=_uuid(to.get("practitioner_id")), moved=True,
            **_deadline(getattr(e, "deadline", None)), **_escalation(None),
        )  # `moved` tells the UPDATE of an earlier send to take the three ids (a COPY ignores it);
        # a forward hands the send to its new assignee alone: the escalation target no longer sees it
        self._summary(e)

    def _message(self, e: Dossier.MessagePosted) -> None:
        """A message changes no state: the row is news for the other side (the last actor is its author)."""
        self._summary(e)

    def _receipt(self, e: Dossier.ReceiptAcknowledged) -> None:
        """An imaging transfer received: its send is done (answered); Closed follows when none is left."""
        self._send_state(e, "answered", answered=True)

    def _escalated(self, e: Dossier.Escalated) -> None:
        self._send(e.send_id, **_escalation(e.to))
        self._summary(e)

    def _viewed(self, e: Access.Created) -> None:
        if e.outcome != "granted" or e.kind != "dossier" or not e.dossier_version:
            return
        key = ((e.actor or {}).get("practitioner_id", ""), _id(e.dossier_id))
        seen = self.batch.views.get(key)
        if seen is None:
            self.batch.views[key] = [e.dossier_version, e.occurred_at]
        else:
            seen[0] = max(seen[0], e.dossier_version)
            seen[1] = e.occurred_at

    handlers = {
        Dossier.Created: _created,
        Dossier.DraftEdited: _edited,
        Dossier.ConsentRecorded: _consent,
        Dossier.DocumentAttached: _document_attached,
        Dossier.DocumentRemoved: _document_removed,
        Dossier.ImagingAttached: _imaging_attached,
        Dossier.ImagingDetached: _imaging_detached,
        Dossier.RecipientAddressed: _addressed,
        Dossier.RecipientRemoved: _removed,
        Dossier.Sent: _sent,
        Dossier.ComplementProvided: _complement_provided,
        Dossier.Closed: _closed,
        Dossier.Cancelled: _cancelled,
        Dossier.Accepted: _accepted,
        Dossier.Declined: _declined,
        Dossier.ComplementRequested: _complement_requested,
        Dossier.Forwarded: _forwarded,
        Dossier.OpinionGiven: _answered,
        Dossier.Escalated: _escalated,
        Dossier.MessagePosted: _message,
        Dossier.ReceiptAcknowledged: _receipt,
        Access.Created: _viewed,
    }

    def write(self, curs: Cursor[DictRow], b: InboxBatch) -> None:
        write_batch(curs, b)
