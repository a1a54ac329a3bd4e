"""Notifications process manager: who is told what about a dossier, and when its deadlines fall due.

A buffered projection (projections/base.py) following the dossier events. It keeps its own state
(`notif_dossiers`, `notif_sends`: requester, recipients, state, deadline and generation of each send)
and writes, in the transaction that records its position (exactly once):
- `notifications` (one row per practitioner told), with `notification_mails` for those with an e-mail
  address (delivered by the mail delivery loop), then `pg_notify('relais_notifications', …)` and
  `pg_notify('relais_mail', '')`;
- `deadline_due` (the reminders and the escalation of each send's deadline, fired by the scheduler,
  adapters/scheduler.py), then `pg_notify('relais_due', '')`.

People are resolved in SQL from the directory read model (dir_practitioners, dir_memberships,
dir_services) when the batch is written. `detail` never holds patient data nor text written by users.

Rebuildable without re-sending: ids are deterministic (md5 of the event and the practitioner) and
inserted with ON CONFLICT DO NOTHING; a rebuild drops only the state tables (`tables`), never the
notifications, mails or due rows, whose read, sent and fired states survive. Events recorded more than
`STALE_AFTER` before they are processed (a first deployment on an existing store, a rebuild) and the
legacy history's dossiers (imported) update the state only: nobody is flooded with the past.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.persistence import Tracking
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from domain.deadlines import Deadline
from domain.dossier import SYSTEM_ROLE, Dossier, dossier_number
from domain.values import Json
from projections.base import APPLICATION_NAME, BufferedProjection, PostgresView

log = logging.getLogger("relais.notifications")

NOTIFICATIONS_CHANNEL = "relais_notifications"
MAIL_CHANNEL = "relais_mail"
DUE_CHANNEL = "relais_due"
STALE_AFTER = timedelta(hours=24)
PAYLOAD_PRACTITIONERS = 150  # practitioners per relais_notifications payload (PostgreSQL payloads < 8,000 bytes)
CACHE_DOSSIERS = 100_000  # dossiers kept in memory before the cache is emptied (after its batches are written)

DOSSIER_FIELDS = ("id", "number", "workflow", "urgency", "requester_practitioner_id", "requester_establishment_id",
                  "requester_service_id", "imported")
SEND_FIELDS = ("send_id", "dossier_id", "establishment_id", "service_id", "practitioner_id", "escalated_service_id",
               "escalated_practitioner_id", "accepted_by", "state", "started_at", "accept_by", "answer_by", "generation")


class PostgresNotificationsView(PostgresView):
    ddl = (
        """CREATE TABLE IF NOT EXISTS notif_dossiers (
            id uuid PRIMARY KEY, number text NOT NULL, workflow text NOT NULL, urgency text NOT NULL,
            requester_practitioner_id uuid, requester_establishment_id uuid, requester_service_id uuid,
            imported boolean NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS notif_sends (
            send_id uuid PRIMARY KEY, dossier_id uuid NOT NULL, establishment_id uuid, service_id uuid,
            practitioner_id uuid, escalated_service_id uuid, escalated_practitioner_id uuid, accepted_by uuid,
            state text NOT NULL, started_at timestamptz, accept_by timestamptz, answer_by timestamptz,
            generation int NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS notif_sends_dossier ON notif_sends (dossier_id)",
        """CREATE TABLE IF NOT EXISTS notifications (
            id uuid PRIMARY KEY, practitioner_id uuid NOT NULL, dossier_id uuid NOT NULL, number text NOT NULL,
            kind text NOT NULL, workflow text NOT NULL, urgency text NOT NULL, deadline timestamptz,
            detail jsonb NOT NULL DEFAULT '{}', occurred_at timestamptz NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(), read_at timestamptz)""",
        "CREATE INDEX IF NOT EXISTS notifications_practitioner ON notifications (practitioner_id, created_at DESC)",
        "CREATE INDEX IF NOT EXISTS notifications_unread ON notifications (practitioner_id) WHERE read_at IS NULL",
        """CREATE TABLE IF NOT EXISTS notification_mails (
            id uuid PRIMARY KEY, practitioner_id uuid NOT NULL, address text NOT NULL,
            state text NOT NULL DEFAULT 'pending', attempts int NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(), last_error text, sent_at timestamptz,
            message_id text, created_at timestamptz NOT NULL DEFAULT now())""",
        "CREATE INDEX IF NOT EXISTS notification_mails_due ON notification_mails (next_attempt_at) WHERE state = 'pending'",
        # the delivery loop's other looks (claims left behind, the digest, failures shown to administrators)
        "CREATE INDEX IF NOT EXISTS notification_mails_state ON notification_mails (state, next_attempt_at) "
        "WHERE state IN ('sending', 'digest', 'failed')",
        """CREATE TABLE IF NOT EXISTS deadline_due (
            send_id uuid NOT NULL, generation int NOT NULL, step text NOT NULL, dossier_id uuid NOT NULL,
            due_at timestamptz NOT NULL, fired_at timestamptz, outcome text, late_ms int,
            PRIMARY KEY (send_id, generation, step))""",
        "CREATE INDEX IF NOT EXISTS deadline_due_next ON deadline_due (due_at) WHERE fired_at IS NULL",
        # when the row was written: lateness counts from it for rows written already due
        "ALTER TABLE deadline_due ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now()",
    )
    # Only the projection's own state: a rebuild drops these, never what was told, mailed or fired.
    tables = ("notif_dossiers", "notif_sends")
    schema_version = 1


# ------------------------------------------------------------------------------------------ telling


Target = tuple[Any, ...]
"""Whom to tell: ("practitioner", id) | ("service", establishment, service) | ("establishment", id)
| ("requester", practitioner, establishment, service or None: their service too when they are away)."""


@dataclass
class Intent:
    """One notification to write: its kind, the dossier, whom, and the detail (no patient data)."""

    key: str  # what makes its ids deterministic (with each practitioner's id)
    kind: str
    dossier: Json  # a notif_dossiers row
    targets: list[Target]
    occurred_at: datetime
    deadline: datetime | None = None
    detail: Json = field(default_factory=dict)
    by: Any = None  # practitioner whose display name goes into detail.by
    service: Any = None  # service whose name goes into detail.service
    actor: Any = None  # practitioner who acted: not told of their own act


def target_sql(target: Target) -> tuple[str, list[Any]]:
    """A SELECT of the practitioner ids (column `pid`) a target names, from the directory read model."""
    members = """SELECT p.id AS pid FROM dir_memberships m JOIN dir_practitioners p ON p.id = m.practitioner_id
                 WHERE m.establishment_id = %s::uuid AND 'clinician' = ANY(m.roles) AND p.active"""
    kind = target[0]
    if kind == "practitioner":
        return "SELECT p.id AS pid FROM dir_practitioners p WHERE p.id = %s::uuid AND p.active", [target[1]]
    if kind == "service":
        return members + " AND %s::text = ANY(m.service_ids)", [target[1], str(target[2])]
    if kind == "establishment":
        return members, [target[1]]
    if kind == "requester":  # the requester, and their service's clinicians while they are away
        _, pid, est, service = target
        return (
            "SELECT p.id AS pid FROM dir_practitioners p WHERE p.id = %s::uuid AND p.active UNION " + members
            + """ AND EXISTS (SELECT 1 FROM dir_practitioners r WHERE r.id = %s::uuid AND r.away
                              AND (r.away_until IS NULL OR r.away_until >= current_date))
                  AND m.service_ids && CASE WHEN %s::text IS NOT NULL THEN ARRAY[%s::text] ELSE
                      (SELECT r.service_ids FROM dir_memberships r WHERE r.practitioner_id = %s::uuid
                       AND r.establishment_id = %s::uuid) END""",
            [pid, est, pid, _str(service), _str(service), pid, est],
        )
    raise ValueError(f"unknown target {target!r}")


def _str(value: Any) -> str | None:
    return str(value) if value else None


def tell(curs: Cursor[DictRow], intent: Intent) -> tuple[list[str], int]:
    """Writes an intent's notifications (and mails to those with an address), skipping those already
    written (deterministic ids); returns who was told now and how many mails were queued."""
    if not intent.targets:
        return [], 0
    parts, params = [], []
    for target in intent.targets:
        sql, p = target_sql(target)
        parts.append(sql)
        params.extend(p)
    d = intent.dossier
    curs.execute(
        f"""WITH t AS ({" UNION ".join(parts)}),
           ins AS (
             INSERT INTO notifications (id, practitioner_id, dossier_id, number, kind, workflow, urgency, deadline,
                                        detail, occurred_at)
             SELECT md5(%s || ':' || t.pid::text)::uuid, t.pid, %s, %s, %s, %s, %s, %s,
                    %s::jsonb
                    || coalesce((SELECT jsonb_build_object('by', trim(p.given_name || ' ' || p.family_name))
                                 FROM dir_practitioners p WHERE p.id = %s::uuid), '{{}}')
                    || coalesce((SELECT jsonb_build_object('service', s.name) FROM dir_services s
                                 WHERE s.id = %s::uuid), '{{}}'),
                    %s
             FROM (SELECT DISTINCT pid FROM t WHERE pid IS DISTINCT FROM %s::uuid) t
             ON CONFLICT (id) DO NOTHING RETURNING id, practitioner_id),
           mails AS (
             INSERT INTO notification_mails (id, practitioner_id, address)
             SELECT ins.id, ins.practitioner_id, p.email FROM ins JOIN dir_practitioners p ON p.id = ins.practitioner_id
             WHERE p.email <> '' ON CONFLICT (id) DO NOTHING RETURNING id)
           SELECT coalesce((SELECT array_agg(practitioner_id::text ORDER BY practitioner_id) FROM ins), '{{}}') AS told,
                  (SELECT count(*) FROM mails) AS mails""",
        [*params, intent.key, d["id"], d["number"], intent.kind, d["workflow"], d["urgency"], intent.deadline,
         Jsonb(intent.detail), _str(intent.by), _str(intent.service), intent.occurred_at, _str(intent.actor)],
    )
    row = curs.fetchone()
    told: list[str] = list(row["told"]) if row else []
    for i in range(0, len(told), PAYLOAD_PRACTITIONERS):
        payload = {"practitioners": told[i:i + PAYLOAD_PRACTITIONERS], "dossier": str(d["id"]), "kind": intent.kind,
                   "urgency": d["urgency"]}
        curs.execute("SELECT pg_notify(%s, %s)", (NOTIFICATIONS_CHANNEL, json.dumps(payload)))
    return told, int(row["mails"]) if row else 0


def recipient_targets(send: Json) -> list[Target]:
    """Who holds a send now: whoever took it in charge; else its addressee (the practitioner named,
    else the service's clinicians, else the establishment's) and the target of its escalation."""
    if send.get("accepted_by"):
        return [("practitioner", send["accepted_by"])]
    return addressee_targets(send) + escalation_targets(send)


def addressee_targets(send: Json) -> list[Target]:
    if send.get("practitioner_id"):
        return [("practitioner", send["practitioner_id"])]
    if send.get("service_id"):
        return [("service", send["establishment_id"], send["service_id"])]
    if send.get("establishment_id"):
        return [("establishment", send["establishment_id"])]
    return []


def escalation_targets(send: Json) -> list[Target]:
    if send.get("escalated_practitioner_id"):
        return [("practitioner", send["escalated_practitioner_id"])]
    if send.get("escalated_service_id"):
        return [("service", send["establishment_id"], send["escalated_service_id"])]
    return []


def requester_targets(dossier: Json) -> list[Target]:
    if not dossier.get("requester_practitioner_id"):
        return []
    return [("requester", dossier["requester_practitioner_id"], dossier["requester_establishment_id"],
             dossier.get("requester_service_id"))]


# ------------------------------------------------------------------------------------------ batch


class NotificationsBatch:
    """What a batch of events changes: state rows (whole, by id), sends removed, due rows, intents."""

    __slots__ = ("dossiers", "sends", "removed", "due", "intents", "last_id")

    def __init__(self) -> None:
        self.last_id = 0  # position of its last event (the directory must have followed the log that far)
        self.dossiers: dict[UUID, Json] = {}
        self.sends: dict[UUID, Json] = {}
        self.removed: set[UUID] = set()
        self.due: list[tuple[UUID, int, str, UUID, datetime]] = []
        self.intents: list[Intent] = []


def write_batch(curs: Cursor[DictRow], b: NotificationsBatch) -> None:
    """Writes a batch inside the transaction that records its position."""
    if b.dossiers:
        rows = list(b.dossiers.values())
        curs.execute(
            f"""INSERT INTO notif_dossiers ({", ".join(DOSSIER_FIELDS)})
                SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::uuid[], %s::uuid[],
                                     %s::uuid[], %s::bool[])
                ON CONFLICT (id) DO UPDATE SET workflow = EXCLUDED.workflow, urgency = EXCLUDED.urgency""",
            [[r[f] for r in rows] for f in DOSSIER_FIELDS],
        )
    if b.removed:
        curs.execute("DELETE FROM notif_sends WHERE send_id = ANY(%s::uuid[])", (list(b.removed),))
    if b.sends:
        rows = list(b.sends.values())
        sets = ", ".join(f"{f} = EXCLUDED.{f}" for f in SEND_FIELDS[1:])
        curs.execute(
            f"""INSERT INTO notif_sends ({", ".join(SEND_FIELDS)})
                SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::uuid[], %s::uuid[], %s::uuid[], %s::uuid[],
                                     %s::uuid[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[],
                                     %s::int[])
                ON CONFLICT (send_id) DO UPDATE SET {sets}""",
            [[_str(r[f]) if f.endswith("id") or f == "accepted_by" else r[f] for r in rows] for f in SEND_FIELDS],
        )
    if b.due:
        curs.execute(
            """INSERT INTO deadline_due (send_id, generation, step, dossier_id, due_at)
               SELECT * FROM unnest(%s::uuid[], %s::int[], %s::text[], %s::uuid[], %s::timestamptz[])
               ON CONFLICT DO NOTHING RETURNING 1""",
            [list(x) for x in zip(*b.due, strict=True)],
        )
        if curs.fetchall():
            curs.execute("SELECT pg_notify(%s, '')", (DUE_CHANNEL,))
    mails = 0
    if b.intents:
        await_directory(curs, b.last_id)
    for intent in b.intents:
        mails += tell(curs, intent)[1]
    if mails:
        curs.execute("SELECT pg_notify(%s, '')", (MAIL_CHANNEL,))


DIRECTORY_TOPICS = [f"relais:{t}" for t in (
    "Establishment.Created", "Establishment.ServiceAdded", "Practitioner.Created", "Practitioner.MembershipSet",
    "Practitioner.MembershipEnded", "Practitioner.Deactivated", "Practitioner.AwaySet",
)]
DIRECTORY_WAIT = 5.0  # seconds a batch waits for the directory read model before telling whom it knows


def await_directory(curs: Cursor[DictRow], position: int) -> None:
    """Waits (a few seconds at most) until the directory read model has processed every directory event
    recorded before `position`: people added just before a dossier was sent to them (the demo, an import)
    are told too, whichever projection runs first."""
    deadline = time.monotonic() + DIRECTORY_WAIT
    while True:
        curs.execute(
            """SELECT (SELECT coalesce(max(notification_id), 0) FROM relais_events
                       WHERE topic = ANY(%s) AND notification_id <= %s) AS needed,
                      (SELECT coalesce(max(notification_id), 0) FROM directory_tracking
                       WHERE application_name = %s) AS done""",
            (DIRECTORY_TOPICS, position, APPLICATION_NAME),
        )
        row = curs.fetchone()
        if row is None or row["done"] >= row["needed"]:
            return
        if time.monotonic() > deadline:
            log.warning("annuaire en retard (position %s, %s attendue) : notifications écrites avec ce qu'il connaît",
                        row["done"], row["needed"])
            return
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------ projection


def utcnow() -> datetime:
    return datetime.now(UTC)


def _uuid(value: Any) -> UUID | None:
    if not value:
        return None
    return value if isinstance(value, UUID) else UUID(str(value))


def _actor_pid(e: Any) -> UUID | None:
    """The practitioner who acted (None for the platform itself: imports, the scheduler's escalations)."""
    actor = getattr(e, "actor", None) or {}
    if actor.get("role") == SYSTEM_ROLE:
        return None
    return _uuid(actor.get("practitioner_id"))


class NotificationsProjection(BufferedProjection[PostgresNotificationsView]):
    """Decides, for each dossier event, whom to tell and which deadlines fall due (see the module)."""

    batch: NotificationsBatch

    name = "notifications"
    topics = (
        "relais:Dossier.Created", "relais:Dossier.DraftEdited", "relais:Dossier.RecipientAddressed",
        "relais:Dossier.RecipientRemoved", "relais:Dossier.Sent", "relais:Dossier.Forwarded",
        "relais:Dossier.Accepted", "relais:Dossier.Declined", "relais:Dossier.ComplementRequested",
        "relais:Dossier.ComplementProvided", "relais:Dossier.OpinionGiven", "relais:Dossier.Closed",
        "relais:Dossier.Cancelled", "relais:Dossier.Escalated", "relais:Dossier.MessagePosted",
    )
    # What "now" is when judging an event stale (tests move it); the recorded time is the event's timestamp.
    clock: ClassVar[Callable[[], datetime]] = staticmethod(utcnow)
    stale_after: ClassVar[timedelta] = STALE_AFTER

    def __init__(self, view: PostgresNotificationsView):
        super().__init__(view)
        self._dossiers: dict[UUID, Json] = {}
        self._sends: dict[UUID, Json] = {}
        self._sends_of: dict[UUID, list[UUID]] = {}
        # Nothing written yet (a rebuild from zero): a dossier missing from memory is not in the database either.
        self._fresh = self.committed == 0
        self._current_id = 0

    def new_batch(self) -> NotificationsBatch:
        return NotificationsBatch()

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self._current_id = tracking.notification_id  # the batch that gets an intent of this event waits for it
        super().process_event(domain_event, tracking)

    def write(self, curs: Cursor[DictRow], batch: NotificationsBatch) -> None:
        write_batch(curs, batch)

    # -------------------------------------------------------------- state

    def _dossier(self, dossier_id: UUID) -> Json | None:
        found = self._dossiers.get(dossier_id)
        if found is not None or self._fresh:
            return found
        rows = self.view.query("SELECT * FROM notif_dossiers WHERE id = %s", (dossier_id,))
        if not rows:
            return None
        self._remember(dict(rows[0]), [dict(r) for r in self.view.query(
            "SELECT * FROM notif_sends WHERE dossier_id = %s", (dossier_id,))])
        return self._dossiers[dossier_id]

    def _remember(self, dossier: Json, sends: list[Json]) -> None:
        if len(self._dossiers) >= CACHE_DOSSIERS:
            # the batches folded so far must be written before their state is forgotten
            self._hand_over()
            self._queue.join()
            self._dossiers.clear()
            self._sends.clear()
            self._sends_of.clear()
            self._fresh = False
        self._dossiers[dossier["id"]] = dossier
        self._sends_of[dossier["id"]] = [s["send_id"] for s in sends]
        for s in sends:
            self._sends[s["send_id"]] = s

    # A batch holds copies: the writer thread writes it while the next batch changes the state in memory.
    def _changed_dossier(self, d: Json) -> None:
        self.batch.dossiers[d["id"]] = dict(d)

    def _changed(self, send: Json) -> None:
        self.batch.sends[send["send_id"]] = dict(send)

    def _send(self, e: Any) -> tuple[Json, Json] | None:
        d = self._dossier(e.originator_id)
        send = self._sends.get(UUID(str(e.send_id))) if d is not None else None
        return (d, send) if d is not None and send is not None else None

    def _live(self, d: Json, e: Any) -> bool:
        """Whether this event is told: not the legacy history's, and recorded recently."""
        return not d["imported"] and type(self).clock() - e.timestamp <= self.stale_after

    def _due(self, send: Json, deadline: Deadline) -> None:
        for step, when in deadline.steps():
            self.batch.due.append((send["send_id"], send["generation"], step, send["dossier_id"], when))

    def _set_deadline(self, send: Json, record: Json | None) -> Deadline | None:
        if not record:
            send["started_at"] = send["accept_by"] = send["answer_by"] = None
            return None
        deadline = Deadline.of(record)
        send["started_at"], send["accept_by"], send["answer_by"] = deadline.started_at, deadline.accept_by, deadline.answer_by
        return deadline

    def _tell(self, e: Any, d: Json, kind: str, targets: list[Target], *, send: Json | None = None, **kw: Any) -> None:
        key = f"{e.originator_id}:{e.originator_version}:{send['send_id'] if send else ''}:{kind}"
        self.batch.last_id = max(self.batch.last_id, self._current_id)
        self.batch.intents.append(Intent(
            key=key, kind=kind, dossier=dict(d), targets=targets, occurred_at=e.occurred_at,
            deadline=send.get("answer_by") if send else None, actor=_actor_pid(e), **kw,
        ))

    # -------------------------------------------------------------- events

    def created(self, e: Dossier.Created) -> None:
        r = e.requester or {}
        d = {"id": e.originator_id, "number": dossier_number(e.originator_id), "workflow": e.workflow, "urgency": e.urgency,
             "requester_practitioner_id": _uuid(r.get("practitioner_id")),
             "requester_establishment_id": _uuid(r.get("establishment_id")),
             "requester_service_id": _uuid(r.get("service_id")), "imported": e.imported_from is not None}
        self._remember(d, [])
        self._changed_dossier(d)

    def edited(self, e: Dossier.DraftEdited) -> None:
        d = self._dossier(e.originator_id)
        changes = e.changes or {}
        if d is not None and ("urgency" in changes or "workflow" in changes):
            d["urgency"] = changes.get("urgency", d["urgency"])
            d["workflow"] = changes.get("workflow", d["workflow"])
            self._changed_dossier(d)

    def addressed(self, e: Dossier.RecipientAddressed) -> None:
        d = self._dossier(e.originator_id)
        if d is None:
            return
        r = e.recipient
        send = {"send_id": UUID(str(r["send_id"])), "dossier_id": d["id"], "establishment_id": _uuid(r["establishment_id"]),
                "service_id": _uuid(r.get("service_id")), "practitioner_id": _uuid(r.get("practitioner_id")),
                "escalated_service_id": None, "escalated_practitioner_id": None, "accepted_by": None,
                "state": "pending", "started_at": None, "accept_by": None, "answer_by": None, "generation": 0}
        self._sends[send["send_id"]] = send
        self._sends_of.setdefault(d["id"], []).append(send["send_id"])
        self.batch.removed.discard(send["send_id"])
        self._changed(send)

    def removed(self, e: Dossier.RecipientRemoved) -> None:
        sid = UUID(str(e.send_id))
        self._sends.pop(sid, None)
        if e.originator_id in self._sends_of and sid in self._sends_of[e.originator_id]:
            self._sends_of[e.originator_id].remove(sid)
        self.batch.sends.pop(sid, None)
        self.batch.removed.add(sid)

    def sent(self, e: Dossier.Sent) -> None:
        d = self._dossier(e.originator_id)
        if d is None:
            return
        live = self._live(d, e)
        for raw in e.send_ids:
            send = self._sends.get(UUID(str(raw)))
            if send is None:
                continue
            send["state"] = "requested"
            deadline = self._set_deadline(send, (e.deadlines or {}).get(str(raw)))
            self._changed(send)
            if live:
                if deadline is not None:
                    self._due(send, deadline)
                self._tell(e, d, "received", addressee_targets(send), send=send, by=d["requester_practitioner_id"],
                           service=d["requester_service_id"])

    def forwarded(self, e: Dossier.Forwarded) -> None:
        found = self._send(e)
        if found is None:
            return
        d, send = found
        to = e.to
        send.update(establishment_id=_uuid(to["establishment_id"]), service_id=_uuid(to.get("service_id")),
                    practitioner_id=_uuid(to.get("practitioner_id")), accepted_by=None, escalated_service_id=None,
                    escalated_practitioner_id=None, state="requested",
                    # the forward's own version: a replayed forward gives the same generation, never a new one
                    generation=e.originator_version)
        deadline = self._set_deadline(send, e.deadline) if e.deadline else None
        self._changed(send)
        if self._live(d, e):
            if deadline is not None:
                self._due(send, deadline)
            self._tell(e, d, "received", addressee_targets(send), send=send, by=_actor_pid(e))

    def escalated(self, e: Dossier.Escalated) -> None:
        found = self._send(e)
        if found is None:
            return
        d, send = found
        original = addressee_targets(send)
        send["escalated_service_id"] = _uuid(e.to.get("service_id"))
        send["escalated_practitioner_id"] = _uuid(e.to.get("practitioner_id"))
        self._changed(send)
        if self._live(d, e):
            self._tell(e, d, "escalated_to_you", escalation_targets(send), send=send, detail={"step": "accept_due"},
                       service=send["service_id"])
            self._tell(e, d, "escalated", requester_targets(d) + original, send=send,
                       detail={"step": "accept_due"}, service=send["escalated_service_id"] or send["service_id"])

    def _to_requester(self, e: Any, kind: str, state: str | None, **detail: Any) -> None:
        found = self._send(e)
        if found is None:
            return
        d, send = found
        if state is not None:
            send["state"] = state
        if kind == "accepted":
            send["accepted_by"] = _actor_pid(e)
        self._changed(send)
        if self._live(d, e):
            self._tell(e, d, kind, requester_targets(d), send=send, by=_actor_pid(e), service=send["service_id"],
                       detail=detail)

    def accepted(self, e: Dossier.Accepted) -> None:
        self._to_requester(e, "accepted", "in_progress")

    def declined(self, e: Dossier.Declined) -> None:
        self._to_requester(e, "declined", "declined", reason_code=e.reason_code)

    def complement_requested(self, e: Dossier.ComplementRequested) -> None:
        self._to_requester(e, "complement_requested", "on_hold")

    def opinion_given(self, e: Dossier.OpinionGiven) -> None:
        self._to_requester(e, "opinion_given", "answered")

    def complement_provided(self, e: Dossier.ComplementProvided) -> None:
        found = self._send(e)
        if found is None:
            return
        d, send = found
        send["state"] = "in_progress"
        self._changed(send)
        if self._live(d, e):
            self._tell(e, d, "complement_provided", recipient_targets(send), send=send, by=_actor_pid(e))

    def message_posted(self, e: Dossier.MessagePosted) -> None:
        """A message of a send's thread: the other side is told (never its text: no patient data here)."""
        found = self._send(e)
        if found is None:
            return
        d, send = found
        if not self._live(d, e):
            return
        establishment = _uuid((e.actor or {}).get("establishment_id"))
        from_requester = establishment == d["requester_establishment_id"] and (
            establishment != send["establishment_id"] or _actor_pid(e) == d["requester_practitioner_id"]
        )  # a send within the requester's own establishment: its recipient is not the requester
        if from_requester:
            self._tell(e, d, "message", recipient_targets(send), send=send, by=_actor_pid(e), service=d["requester_service_id"])
        else:
            self._tell(e, d, "message", requester_targets(d), send=send, by=_actor_pid(e), service=send["service_id"])

    def _over(self, e: Any, state: str) -> tuple[Json | None, list[Json]]:
        """The dossier ended: its open sends end with it. (dossier, the sends that were still being
        worked on — sent and not finished: their recipients are told too)."""
        d = self._dossier(e.originator_id)
        if d is None:
            return None, []
        working = []
        for sid in self._sends_of.get(d["id"], []):
            send = self._sends[sid]
            if send["state"] in ("pending", "requested", "in_progress", "on_hold"):
                if send["state"] != "pending":
                    working.append(dict(send))
                send["state"] = state
                self._changed(send)
        return d, working

    def closed(self, e: Dossier.Closed) -> None:
        d, working = self._over(e, "closed")
        if d is not None and self._live(d, e):
            self._tell(e, d, "closed", requester_targets(d), by=_actor_pid(e))
            for send in working:  # still working on it (another recipient answered): no opinion is awaited now
                self._tell(e, d, "closed", recipient_targets(send), send=send, by=_actor_pid(e))

    def cancelled(self, e: Dossier.Cancelled) -> None:
        d, working = self._over(e, "cancelled")
        if d is not None and self._live(d, e):
            for send in working:
                self._tell(e, d, "cancelled", recipient_targets(send), send=send, by=_actor_pid(e))

    handlers: ClassVar[dict[type, Callable[[Any, Any], None]]] = {
        Dossier.Created: created, Dossier.DraftEdited: edited, Dossier.RecipientAddressed: addressed,
        Dossier.RecipientRemoved: removed, Dossier.Sent: sent, Dossier.Forwarded: forwarded,
        Dossier.Escalated: escalated, Dossier.Accepted: accepted, Dossier.Declined: declined,
        Dossier.ComplementRequested: complement_requested, Dossier.OpinionGiven: opinion_given,
        Dossier.ComplementProvided: complement_provided, Dossier.Closed: closed, Dossier.Cancelled: cancelled,
        Dossier.MessagePosted: message_posted,
    }
