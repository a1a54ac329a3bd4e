"""An inbox batch: what a batch of events changes, and how it is written in one transaction.

New rows by COPY; changes to rows written by earlier batches by one set-based UPDATE per table;
the dossiers' states from their sends' (the domain's rule, `summary_state`, in Python for new
rows and in SQL for the others — tests/projections/test_inbox_state.py checks the SQL against
the rule on every combination); then one `pg_notify` per dossier changed, or per group of
establishments for a bulk batch: {"dossier": id, "version": its version, "event": the last event's
name, "establishments": ids of those concerned} (a group: dossier "", version 0, event "batch").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow

from domain.dossier import summary_state
from domain.values import ACTIVE_SEND_STATES, SendState
from projections.inbox_queries import WAS_SENT

CHANNEL = "relais_inbox"
OPEN_SEND_STATES = tuple(sorted(s.value for s in ACTIVE_SEND_STATES | {SendState.PENDING}))  # what closing or cancelling ends
NOTIFY_EACH = 100  # dossiers changed by one batch above which establishments get one grouped notification
PAYLOAD_ESTABLISHMENTS = 150  # establishments per grouped notification (PostgreSQL payloads < 8,000 bytes)

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
    ("state", T), ("sent_on", TS), ("answered_on", TS), ("accept_by", TS), ("answer_by", TS), ("escalated", "bool"),
    ("escalated_service_id", ID), ("escalated_practitioner_id", ID),
)
PATIENT_FIELDS = ("birth_name", "first_names", "used_name", "birth_date", "sex", "ins", "search")

# The domain's `summary_state` in SQL, on a dossier row `d` (after its patch `u`) and its sends' flags `s`
# (SEND_FLAGS_SQL over the dossier's sends `x`).
SEND_FLAGS_SQL = """bool_or(x.state IN ('in_progress', 'on_hold')) AS busy, bool_or(x.state = 'requested') AS requested,
       bool_or(x.state = 'answered') AS answered"""
SUMMARY_SQL = """CASE
    WHEN coalesce(u.over_state, d.state) IN ('closed', 'cancelled') THEN coalesce(u.over_state, d.state)
    WHEN coalesce(d.first_sent_on, u.first_sent_on) IS NULL THEN 'draft'
    WHEN s.busy THEN 'in_progress'
    WHEN s.requested THEN CASE WHEN s.answered THEN 'in_progress' ELSE 'requested' END
    WHEN s.answered THEN 'answered'
    ELSE 'declined' END"""


class InboxBatch:
    """What a batch of events changes.

    A dossier created in this batch is a whole row in memory (`dossiers`) with its sends
    (`sends`); a dossier or send written by an earlier batch gets a patch (`patches`,
    `send_patches`) applied by set-based UPDATEs. `touched` keeps, per dossier, its last
    version and event (for the notification); `extra` establishments that no longer appear in
    its rows but must hear of the change (a send forwarded away or removed). Rows and patches
    are dicts by column name (`DOSSIER_COLUMNS`, `SEND_COLUMNS`; a patch's own keys besides).
    """

    __slots__ = ("dossiers", "patches", "sends", "send_patches", "removed", "over", "views", "touched", "extra",
                 "sends_of")

    def __init__(self) -> None:
        self.dossiers: dict[UUID, dict[str, Any]] = {}
        self.patches: dict[UUID, dict[str, Any]] = {}
        self.sends: dict[UUID, dict[str, Any]] = {}
        self.sends_of: dict[UUID, list[UUID]] = {}  # dossier → its sends in `sends`
        self.send_patches: dict[UUID, dict[str, Any]] = {}
        self.removed: set[UUID] = set()
        self.over: dict[UUID, str] = {}  # dossiers of earlier batches closed or cancelled now
        self.views: dict[tuple[str, UUID], list[Any]] = {}  # (practitioner, dossier) → [version, viewed at]
        self.touched: dict[UUID, tuple[int, str]] = {}
        self.extra: dict[UUID, set[UUID]] = {}


def write_batch(curs: Cursor[DictRow], b: InboxBatch) -> None:
    """Writes a batch (inside the transaction that records its tracking position)."""
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
                sent=row["first_sent_on"] is not None, closed=row["state"] == "closed",
                cancelled=row["state"] == "cancelled", send_states=[b.sends[s]["state"] for s in b.sends_of.get(did, ())],
            )
        _copy(curs, "inbox_dossiers", DOSSIER_COLUMNS, b.dossiers.values())
    if b.removed:
        curs.execute("DELETE FROM inbox_sends WHERE send_id = ANY(%s::uuid[])", (list(b.removed),))
    if b.sends:
        _copy(curs, "inbox_sends", SEND_COLUMNS, b.sends.values())
    if b.send_patches:
        _patch_sends(curs, b.send_patches)
    if b.over:
        ids, states = zip(*b.over.items(), strict=True)
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


def _patch_dossiers(curs: Cursor[DictRow], patches: dict[UUID, dict[str, Any]]) -> None:
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
            LEFT JOIN LATERAL (SELECT {SEND_FLAGS_SQL} FROM inbox_sends x WHERE x.dossier_id = u.id) s ON true
            WHERE d.id = u.id""",
        params,
    )


def _patch_sends(curs: Cursor[DictRow], patches: dict[UUID, dict[str, Any]]) -> None:
    """Changes to sends of earlier batches: state, times, deadline, escalation, and where a forward moved them."""
    ids = list(patches)
    p = [patches[i] for i in ids]
    curs.execute(
        """UPDATE inbox_sends s SET
             state = coalesce(u.state, s.state), sent_on = coalesce(u.sent_on, s.sent_on),
             answered_on = coalesce(u.answered_on, s.answered_on),
             establishment_id = CASE WHEN u.moved THEN u.establishment_id ELSE s.establishment_id END,
             service_id = CASE WHEN u.moved THEN u.service_id ELSE s.service_id END,
             practitioner_id = CASE WHEN u.moved THEN u.practitioner_id ELSE s.practitioner_id END,
             accept_by = CASE WHEN u.timed THEN u.accept_by ELSE s.accept_by END,
             answer_by = CASE WHEN u.timed THEN u.answer_by ELSE s.answer_by END,
             escalated = CASE WHEN u.escalation THEN u.escalated ELSE s.escalated END,
             escalated_service_id = CASE WHEN u.escalation THEN u.esc_service ELSE s.escalated_service_id END,
             escalated_practitioner_id = CASE WHEN u.escalation THEN u.esc_practitioner ELSE s.escalated_practitioner_id END
           FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::bool[], %s::uuid[],
                       %s::uuid[], %s::uuid[], %s::bool[], %s::timestamptz[], %s::timestamptz[], %s::bool[],
                       %s::bool[], %s::uuid[], %s::uuid[])
                AS u(id, state, sent_on, answered_on, moved, establishment_id, service_id, practitioner_id,
                     timed, accept_by, answer_by, escalation, escalated, esc_service, esc_practitioner)
           WHERE s.send_id = u.id""",
        (ids, [x.get("state") for x in p], [x.get("sent_on") for x in p], [x.get("answered_on") for x in p],
         [bool(x.get("moved")) for x in p], [x.get("establishment_id") for x in p], [x.get("service_id") for x in p],
         [x.get("practitioner_id") for x in p], [bool(x.get("timed")) for x in p], [x.get("accept_by") for x in p],
         [x.get("answer_by") for x in p], [bool(x.get("escalation")) for x in p], [bool(x.get("escalated")) for x in p],
         [x.get("escalated_service_id") for x in p], [x.get("escalated_practitioner_id") for x in p]),
    )


def _notify(curs: Cursor[DictRow], b: InboxBatch, before: dict[UUID, set[UUID]]) -> None:
    """Tells the establishments concerned (delivered by PostgreSQL when the batch commits)."""
    ids = list(b.touched)
    curs.execute(
        """SELECT d.id, d.requester_establishment_id AS requester,
                  coalesce(array_agg(s.establishment_id) FILTER (WHERE """ + WAS_SENT + """), '{}') AS recipients
           FROM inbox_dossiers d LEFT JOIN inbox_sends s ON s.dossier_id = d.id
           WHERE d.id = ANY(%s::uuid[]) GROUP BY d.id, d.requester_establishment_id""",
        (ids,),
    )
    concerned: dict[UUID, set[UUID]] = {}
    for r in curs.fetchall():
        concerned[r["id"]] = {r["requester"], *r["recipients"]} | before.get(r["id"], set()) | b.extra.get(r["id"], set())
    if len(ids) <= NOTIFY_EACH:
        payloads = [
            json.dumps({"dossier": str(d), "version": b.touched[d][0], "event": b.touched[d][1],
                        "establishments": sorted(str(x) for x in concerned.get(d, ()))})
            for d in ids
        ]
    else:
        everyone = sorted({str(x) for group in concerned.values() for x in group})
        payloads = [
            json.dumps({"dossier": "", "version": 0, "event": "batch", "establishments": everyone[i:i + PAYLOAD_ESTABLISHMENTS]})
            for i in range(0, len(everyone), PAYLOAD_ESTABLISHMENTS)
        ]
    curs.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n",
                 (CHANNEL, payloads))


def _copy(curs: Cursor[DictRow], table: str, columns: tuple[tuple[str, str], ...], rows: Iterable[Mapping[str, Any]]) -> None:
    """Binary COPY of whole rows (dicts keyed by column)."""
    names = [name for name, _ in columns]
    with curs.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([kind for _, kind in columns])
        for row in rows:
            copy.write_row([row[n] for n in names])
