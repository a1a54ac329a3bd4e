"""Inbox read model: one row per dossier and per send, unread markers, and a pg_notify per change.

Buffered (see projections/base.py): events are folded in memory and each batch is written with
its tracking position in one transaction — new rows by COPY, changes to rows written by earlier
batches by one set-based UPDATE per table. A rebuild writes each row about once; a live event
is written at most `quiet_after` seconds after it arrives.

Each batch ends with `pg_notify('relais_inbox', …)` in the same transaction, naming the
establishments concerned: the web learns of a change only once it is committed and visible
(server-sent events to open inboxes). One notification per dossier changed by the batch; a
bulk batch (a rebuild, a history import) sends one per group of establishments instead.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import date, datetime
from typing import Any
from uuid import UUID

from psycopg import Cursor

from domain.access import Access
from domain.dossier import Dossier, dossier_number
from projections.base import BufferedProjection, PostgresView
from projections.inbox_queries import InboxQueries

CHANNEL = "relais_inbox"
ACTIVE = ("requested", "in_progress", "on_hold")
OPEN_SEND_STATES = ("pending", "requested", "in_progress", "on_hold")  # what closing or cancelling ends
NOTIFY_EACH = 100  # dossiers changed by one batch above which establishments get one grouped notification
PAYLOAD_ESTABLISHMENTS = 150  # establishments per grouped notification (PostgreSQL payloads < 8,000 bytes)


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


# The same rule in SQL, on a dossier row `d` (after its patch `u`) and its sends' flags `s`.
SUMMARY_SQL = """CASE
    WHEN coalesce(u.over_state, d.state) IN ('closed', 'cancelled') THEN coalesce(u.over_state, d.state)
    WHEN coalesce(d.first_sent_on, u.first_sent_on) IS NULL THEN 'draft'
    WHEN s.busy THEN 'in_progress'
    WHEN s.requested THEN CASE WHEN s.answered THEN 'in_progress' ELSE 'requested' END
    WHEN s.answered THEN 'answered'
    ELSE 'declined' END"""


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
        # searching a name anywhere (LIKE '%…%', three letters or more) without reading every dossier
        # (pg_trgm ships with PostgreSQL, the embedded server included, and is a trusted extension)
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE INDEX IF NOT EXISTS inbox_dossiers_search ON inbox_dossiers USING gin (search gin_trgm_ops)",
    )
    tables = ("inbox_dossiers", "inbox_sends", "inbox_views")


T, TS, ID, INT = "text", "timestamptz", "uuid", "int4"
DOSSIER_COLUMNS = (
    ("id", ID), ("number", T), ("workflow", T), ("urgency", T), ("state", T), ("imaging_source", T), ("consent", T),
    ("birth_name", T), ("first_names", T), ("used_name", T), ("birth_date", "date"), ("sex", T), ("ins", T),
    ("search", T), ("requester_establishment_id", ID), ("requester_practitioner_id", ID), ("requester_service_id", ID),
    ("documents", INT), ("imaging", INT), ("created_on", TS), ("first_sent_on", TS), ("over_on", TS),
    ("last_activity_at", TS), ("last_actor_id", T), ("version", INT),
)
SEND_COLUMNS = (
    ("send_id", ID), ("dossier_id", ID), ("establishment_id", ID), ("service_id", ID), ("practitioner_id", ID),
    ("state", T), ("sent_on", TS), ("answered_on", TS),
)
PATIENT_FIELDS = ("birth_name", "first_names", "used_name", "birth_date", "sex", "ins", "search")

_UUIDS: dict[str, UUID] = {}


def _uuid(value: Any) -> UUID | None:
    """A UUID from an id of an event (str or UUID; establishments and services are cached)."""
    if not value:
        return None
    if isinstance(value, UUID):
        return value
    found = _UUIDS.get(value)
    if found is None:
        found = UUID(value)
        if len(_UUIDS) < 100_000:
            _UUIDS[value] = found
    return found


def _date(value: Any) -> date | None:
    if not value:
        return None
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _patient(p: dict) -> dict:
    """The patient columns of an identity (imported legacy history carries none)."""
    search = " ".join(folded(x) for x in (p.get("birth_name"), p.get("used_name"), p.get("first_names")) if x)
    return {
        "birth_name": p.get("birth_name") or "", "first_names": p.get("first_names") or "",
        "used_name": p.get("used_name"), "birth_date": _date(p.get("birth_date")), "sex": p.get("sex") or "",
        "ins": p.get("ins"), "search": search,
    }


class InboxBatch:
    """What a batch of events changes.

    A dossier created in this batch is a whole row in memory (`dossiers`) with its sends
    (`sends`); a dossier or send written by an earlier batch gets a patch (`patches`,
    `send_patches`) applied by set-based UPDATEs. `touched` keeps, per dossier, its last
    version and event (for the notification); `extra` establishments that no longer appear in
    its rows but must hear of the change (a send forwarded away or removed).
    """

    __slots__ = ("dossiers", "patches", "sends", "send_patches", "removed", "over", "views", "touched", "extra",
                 "sends_of")

    def __init__(self) -> None:
        self.dossiers: dict[UUID, dict] = {}
        self.patches: dict[UUID, dict] = {}
        self.sends: dict[UUID, dict] = {}
        self.sends_of: dict[UUID, list[UUID]] = {}  # dossier → its sends in `sends`
        self.send_patches: dict[UUID, dict] = {}
        self.removed: set[UUID] = set()
        self.over: dict[UUID, str] = {}  # dossiers of earlier batches closed or cancelled now
        self.views: dict[tuple[str, UUID], list] = {}
        self.touched: dict[UUID, tuple[int, str]] = {}
        self.extra: dict[UUID, set[UUID]] = {}


class InboxProjection(BufferedProjection[PostgresInboxView]):
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
    # Live: a send reaches the recipient's open inbox quickly; a burst still makes one batch.
    quiet_after = 0.03
    max_delay = 0.3

    def new_batch(self) -> InboxBatch:
        return InboxBatch()

    # -------------------------------------------------------------- folding: helpers

    def _summary(self, e: Any) -> None:
        """What every dossier event changes: version, last activity, last actor."""
        b: InboxBatch = self.batch
        occurred = getattr(e, "occurred_at", None) or e.timestamp
        actor = (e.actor or {}).get("practitioner_id") or ""
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

    def _set(self, e: Any, **values: Any) -> None:
        """Sets dossier columns (last value wins)."""
        row = self.batch.dossiers.get(e.originator_id)
        target = row if row is not None else self.batch.patches.setdefault(e.originator_id, {})
        target.update(values)

    def _add(self, e: Any, column: str, delta: int) -> None:
        row = self.batch.dossiers.get(e.originator_id)
        if row is not None:
            row[column] = max(row[column] + delta, 0)
        else:
            patch = self.batch.patches.setdefault(e.originator_id, {})
            patch[column + "_delta"] = patch.get(column + "_delta", 0) + delta

    def _send(self, send_id: Any, **values: Any) -> dict | None:
        """Sets columns of a send; returns its row when it is in memory (addressed in this batch)."""
        sid = _uuid(send_id)
        row = self.batch.sends.get(sid)
        if row is not None:
            row.update(values)
            return row
        self.batch.send_patches.setdefault(sid, {}).update(values)
        return None

    # -------------------------------------------------------------- folding: events

    def _created(self, e: Any) -> None:
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
        self._summary(e)

    def _edited(self, e: Any) -> None:
        c = e.changes
        values = {k: c[k] for k in ("workflow", "urgency", "imaging_source") if k in c}
        if "patient" in c:
            values.update(_patient(c["patient"]))
            if e.originator_id not in self.batch.dossiers:
                values["has_patient"] = True
        self._set(e, **values)
        self._summary(e)

    def _consent(self, e: Any) -> None:
        if e.originator_id in self.batch.dossiers:
            self._set(e, consent=e.status)
        else:
            self._set(e, consent=e.status, has_consent=True)
        self._summary(e)

    def _document_attached(self, e: Any) -> None:
        self._add(e, "documents", 1)
        self._summary(e)

    def _document_removed(self, e: Any) -> None:
        self._add(e, "documents", -1)
        self._summary(e)

    def _imaging_attached(self, e: Any) -> None:
        self._add(e, "imaging", 1)
        self._summary(e)

    def _imaging_detached(self, e: Any) -> None:
        self._add(e, "imaging", -1)
        self._summary(e)

    def _addressed(self, e: Any) -> None:
        r = e.recipient
        sid = _uuid(r["send_id"])
        self.batch.sends[sid] = {
            "send_id": sid, "dossier_id": e.originator_id, "establishment_id": _uuid(r["establishment_id"]),
            "service_id": _uuid(r.get("service_id")), "practitioner_id": _uuid(r.get("practitioner_id")),
            "state": "pending", "sent_on": None, "answered_on": None,
        }
        self.batch.sends_of.setdefault(e.originator_id, []).append(sid)
        self._summary(e)

    def _removed(self, e: Any) -> None:
        b: InboxBatch = self.batch
        sid = _uuid(e.send_id)
        row = b.sends.pop(sid, None)
        if row is not None:
            b.sends_of[e.originator_id].remove(sid)
            b.extra.setdefault(e.originator_id, set()).add(row["establishment_id"])
        else:
            b.send_patches.pop(sid, None)
            b.removed.add(sid)
        self._summary(e)

    def _sent(self, e: Any) -> None:
        for send_id in e.send_ids:
            self._send(send_id, state="requested", sent_on=e.occurred_at)
        row = self.batch.dossiers.get(e.originator_id)
        if row is not None:
            if row["first_sent_on"] is None:
                row["first_sent_on"] = e.occurred_at
        else:
            self.batch.patches.setdefault(e.originator_id, {}).setdefault("first_sent_on", e.occurred_at)
        self._summary(e)

    def _ended(self, e: Any, state: str) -> None:
        b: InboxBatch = self.batch
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

    def _closed(self, e: Any) -> None:
        self._ended(e, "closed")

    def _cancelled(self, e: Any) -> None:
        self._ended(e, "cancelled")

    def _send_state(self, e: Any, state: str, answered: bool = False) -> None:
        if answered:
            self._send(e.send_id, state=state, answered_on=e.occurred_at)
        else:
            self._send(e.send_id, state=state)
        self._summary(e)

    def _accepted(self, e: Any) -> None:
        self._send_state(e, "in_progress")

    def _complement_provided(self, e: Any) -> None:
        self._send_state(e, "in_progress")

    def _declined(self, e: Any) -> None:
        self._send_state(e, "declined")

    def _complement_requested(self, e: Any) -> None:
        self._send_state(e, "on_hold")

    def _answered(self, e: Any) -> None:
        self._send_state(e, "answered", answered=True)

    def _forwarded(self, e: Any) -> None:
        to = e.to
        sid = _uuid(e.send_id)
        before = self.batch.sends.get(sid)
        if before is not None and before["establishment_id"] != _uuid(to["establishment_id"]):
            self.batch.extra.setdefault(e.originator_id, set()).add(before["establishment_id"])
        self._send(
            e.send_id, state="requested", establishment_id=_uuid(to["establishment_id"]),
            service_id=_uuid(to.get("service_id")), practitioner_id=_uuid(to.get("practitioner_id")), moved=True,
        )  # `moved` tells the UPDATE of an earlier send to take the three ids (a COPY ignores it)
        self._summary(e)

    def _viewed(self, e: Any) -> None:
        if e.outcome != "granted" or e.kind != "dossier" or not e.dossier_version:
            return
        key = ((e.actor or {}).get("practitioner_id", ""), _uuid(e.dossier_id))
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
        Access.Created: _viewed,
    }

    # -------------------------------------------------------------- writing a batch

    def write(self, curs: Cursor, b: InboxBatch) -> None:
        earlier = [d for d in b.touched if d not in b.dossiers]  # dossiers written by earlier batches
        before: dict[UUID, set[UUID]] = {}
        if earlier:
            curs.execute(
                "SELECT dossier_id, establishment_id FROM inbox_sends WHERE dossier_id = ANY(%s::uuid[])", (earlier,)
            )
            for r in curs.fetchall():
                before.setdefault(r["dossier_id"], set()).add(r["establishment_id"])
        if b.dossiers:
            for did, row in b.dossiers.items():
                row["state"] = summary_state(
                    row["first_sent_on"] is None, row["state"] == "closed", row["state"] == "cancelled",
                    [b.sends[s]["state"] for s in b.sends_of.get(did, ())],
                )
            _copy(curs, "inbox_dossiers", DOSSIER_COLUMNS, b.dossiers.values())
        if b.removed:
            curs.execute("DELETE FROM inbox_sends WHERE send_id = ANY(%s::uuid[])", (list(b.removed),))
        if b.sends:
            _copy(curs, "inbox_sends", SEND_COLUMNS, b.sends.values())
        if b.send_patches:
            _patch_sends(curs, b.send_patches)
        if b.over:
            ids, states = zip(*b.over.items())
            curs.execute(
                "UPDATE inbox_sends s SET state = u.state FROM unnest(%s::uuid[], %s::text[]) AS u(id, state) "
                "WHERE s.dossier_id = u.id AND s.state = ANY(%s)", (list(ids), list(states), list(OPEN_SEND_STATES)),
            )
        if b.patches:
            _patch_dossiers(curs, b.patches)
        if b.views:
            keys = list(b.views)
            curs.execute(
                """INSERT INTO inbox_views
                   SELECT * FROM unnest(%s::text[], %s::uuid[], %s::int[], %s::timestamptz[])
                   ON CONFLICT (practitioner_id, dossier_id) DO UPDATE
                   SET version = greatest(inbox_views.version, EXCLUDED.version), viewed_at = EXCLUDED.viewed_at""",
                ([k[0] for k in keys], [k[1] for k in keys], [b.views[k][0] for k in keys],
                 [b.views[k][1] for k in keys]),
            )
        if b.touched:
            _notify(curs, b, before)


def _patch_dossiers(curs: Cursor, patches: dict[UUID, dict]) -> None:
    """Changes to dossiers of earlier batches, and their state from their sends', in one UPDATE."""
    ids = list(patches)
    p = [patches[i] for i in ids]
    has_patient = [bool(x.get("has_patient")) for x in p]
    params = [
        ids, [x.get("workflow") for x in p], [x.get("urgency") for x in p], [x.get("imaging_source") for x in p],
        has_patient, *([x.get(f) for x in p] for f in PATIENT_FIELDS),
        [bool(x.get("has_consent")) for x in p], [x.get("consent") for x in p],
        [x.get("documents_delta", 0) for x in p], [x.get("imaging_delta", 0) for x in p],
        [x.get("first_sent_on") for x in p], [x.get("over_state") for x in p], [x.get("over_on") for x in p],
        [x["version"] for x in p], [x["activity"] for x in p], [x["actor"] for x in p],
    ]
    patient_sets = ",\n".join(f"{f} = CASE WHEN u.has_patient THEN u.{f} ELSE d.{f} END" for f in PATIENT_FIELDS)
    curs.execute(
        f"""UPDATE inbox_dossiers d SET
              workflow = coalesce(u.workflow, d.workflow), urgency = coalesce(u.urgency, d.urgency),
              imaging_source = coalesce(u.imaging_source, d.imaging_source),
              {patient_sets},
              consent = CASE WHEN u.has_consent THEN u.consent ELSE d.consent END,
              documents = greatest(d.documents + u.documents_delta, 0),
              imaging = greatest(d.imaging + u.imaging_delta, 0),
              first_sent_on = coalesce(d.first_sent_on, u.first_sent_on),
              state = {SUMMARY_SQL},
              over_on = CASE WHEN u.over_state IS NOT NULL THEN u.over_on ELSE d.over_on END,
              version = u.version, last_activity_at = greatest(d.last_activity_at, u.activity),
              last_actor_id = u.actor
            FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::bool[],
                        %s::text[], %s::text[], %s::text[], %s::date[], %s::text[], %s::text[], %s::text[],
                        %s::bool[], %s::text[], %s::int[], %s::int[], %s::timestamptz[], %s::text[],
                        %s::timestamptz[], %s::int[], %s::timestamptz[], %s::text[])
                 AS u(id, workflow, urgency, imaging_source, has_patient,
                      birth_name, first_names, used_name, birth_date, sex, ins, search,
                      has_consent, consent, documents_delta, imaging_delta, first_sent_on, over_state,
                      over_on, version, activity, actor)
            LEFT JOIN LATERAL (
                SELECT bool_or(x.state IN ('in_progress', 'on_hold')) AS busy, bool_or(x.state = 'requested') AS requested,
                       bool_or(x.state = 'answered') AS answered
                FROM inbox_sends x WHERE x.dossier_id = u.id) s ON true
            WHERE d.id = u.id""",
        params,
    )


def _patch_sends(curs: Cursor, patches: dict[UUID, dict]) -> None:
    """Changes to sends of earlier batches: state, times, and where a forward moved them."""
    ids = list(patches)
    p = [patches[i] for i in ids]
    curs.execute(
        """UPDATE inbox_sends s SET
             state = coalesce(u.state, s.state), sent_on = coalesce(u.sent_on, s.sent_on),
             answered_on = coalesce(u.answered_on, s.answered_on),
             establishment_id = CASE WHEN u.moved THEN u.establishment_id ELSE s.establishment_id END,
             service_id = CASE WHEN u.moved THEN u.service_id ELSE s.service_id END,
             practitioner_id = CASE WHEN u.moved THEN u.practitioner_id ELSE s.practitioner_id END
           FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::bool[], %s::uuid[],
                       %s::uuid[], %s::uuid[])
                AS u(id, state, sent_on, answered_on, moved, establishment_id, service_id, practitioner_id)
           WHERE s.send_id = u.id""",
        (ids, [x.get("state") for x in p], [x.get("sent_on") for x in p], [x.get("answered_on") for x in p],
         [bool(x.get("moved")) for x in p], [x.get("establishment_id") for x in p], [x.get("service_id") for x in p],
         [x.get("practitioner_id") for x in p]),
    )


def _notify(curs: Cursor, b: InboxBatch, before: dict[UUID, set[UUID]]) -> None:
    """Tells the establishments concerned (delivered by PostgreSQL when the batch commits)."""
    ids = list(b.touched)
    curs.execute(
        """SELECT d.id, d.requester_establishment_id AS requester,
                  coalesce(array_agg(s.establishment_id) FILTER (WHERE s.state <> 'pending'), '{}') AS recipients
           FROM inbox_dossiers d LEFT JOIN inbox_sends s ON s.dossier_id = d.id
           WHERE d.id = ANY(%s::uuid[]) GROUP BY d.id, d.requester_establishment_id""",
        (ids,),
    )
    concerned: dict[UUID, set[UUID]] = {}
    for r in curs.fetchall():
        concerned[r["id"]] = {r["requester"], *r["recipients"]} | before.get(r["id"], set()) | b.extra.get(r["id"], set())
    if len(ids) <= NOTIFY_EACH:
        payloads = [
            json.dumps({"d": str(d), "v": b.touched[d][0], "t": b.touched[d][1], "e": sorted(str(x) for x in concerned.get(d, ()))})
            for d in ids
        ]
    else:
        everyone = sorted({str(x) for group in concerned.values() for x in group})
        payloads = [
            json.dumps({"d": "", "v": 0, "t": "batch", "e": everyone[i:i + PAYLOAD_ESTABLISHMENTS]})
            for i in range(0, len(everyone), PAYLOAD_ESTABLISHMENTS)
        ]
    curs.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n",
                 (CHANNEL, payloads))


def _copy(curs: Cursor, table: str, columns: tuple[tuple[str, str], ...], rows: Any) -> None:
    """Binary COPY of whole rows (dicts keyed by column)."""
    names = [name for name, _ in columns]
    with curs.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([kind for _, kind in columns])
        for row in rows:
            copy.write_row([row[n] for n in names])
