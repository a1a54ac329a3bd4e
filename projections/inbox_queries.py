"""Queries on the inbox read model: tabs with filters and keyset pages, counters, auditor search."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg.rows import DictRow

from projections.base import PostgresView
from projections.search import contains

TABS = ("received", "sent", "drafts", "closed")
PAGE_SIZE = 25
COUNT_CAP = 1_000  # counters stop here and show "999+": counting years of history on every page is not news
# (at 170,000 dossiers, counting up to 10,000 took ~350 ms per page for the busiest establishment)
OPEN = "d.state NOT IN ('closed', 'cancelled')"
RECEIVED_STATES = ("requested", "in_progress", "on_hold", "answered")


@dataclass(frozen=True)
class Scope:
    """Whose inbox: a clinician acting for one establishment, with their services there."""

    practitioner_id: str
    establishment_id: str
    service_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Filters:
    workflow: str = ""
    state: str = ""
    urgency: str = ""
    service: str = ""
    since: date | None = None
    until: date | None = None
    q: str = ""

    def active(self) -> bool:
        return any((self.workflow, self.state, self.urgency, self.service, self.since, self.until, self.q.strip()))


@dataclass(frozen=True)
class InboxRow:
    dossier_id: str
    number: str
    send_id: str | None
    workflow: str
    urgency: str
    state: str
    birth_name: str
    first_names: str
    used_name: str | None
    birth_date: date | None
    sex: str
    counterpart: str
    counterpart_detail: str
    since: datetime
    unread: bool
    imaging: bool
    documents: int
    key: str = field(default="")
    accept_by: datetime | None = None  # the received tab: the send's deadlines and escalation
    answer_by: datetime | None = None
    escalated: bool = False
    sort: tuple[Any, ...] = field(default=(), compare=False, repr=False)  # the received tab's keyset position

    @property
    def due(self) -> tuple[str, datetime] | None:
        """The deadline that runs for an active received send: ("accept", accept_by) while it waits to be
        taken in charge, ("answer", answer_by) once accepted (until the opinion); None otherwise."""
        if self.state == "requested" and self.accept_by:
            return "accept", self.accept_by
        if self.state in ("in_progress", "on_hold") and self.answer_by:
            return "answer", self.answer_by
        return None

    @property
    def awaited(self) -> tuple[str, datetime] | None:
        """The sent tab: ("answer", the earliest answer deadline of the dossier's sends still being worked
        on), None when none runs."""
        return ("answer", self.answer_by) if self.answer_by else None


@dataclass(frozen=True)
class Page:
    rows: list[InboxRow]
    next_cursor: str | None


def encode_sort_cursor(values: tuple[Any, ...]) -> str:
    """The received tab's cursor: its whole sort key (group and urgency rank, deadline, age, send)."""
    rank, due, age, key = values
    return base64.urlsafe_b64encode(json.dumps(["r", rank, due.isoformat(), str(age), key]).encode()).decode()


def decode_sort_cursor(cursor: str | None) -> tuple[int, datetime, str, str] | None:
    if not cursor:
        return None
    try:
        tag, rank, due, age, key = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
        if tag != "r":
            return None
        return int(rank), datetime.fromisoformat(due), str(Decimal(str(age))), str(UUID(str(key)))
    except (ValueError, TypeError, UnicodeDecodeError, ArithmeticError):
        return None


def encode_cursor(ts: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(f"{ts.isoformat()}|{key}".encode()).decode()


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        ts, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(ts), str(key)
    except (ValueError, UnicodeDecodeError):
        return None


NUMBER = re.compile(r"^(TD-?)?[A-Z2-7]{10}$")

SELECT = """
SELECT d.id::text AS dossier_id, d.number, d.workflow, d.urgency, d.birth_name, d.first_names, d.used_name,
       d.birth_date, d.sex, d.documents, (d.imaging > 0 OR d.imaging_source <> 'none') AS imaging,
       {since} AS since, {key}::text AS key, {cols}
FROM {source}
WHERE {where}
ORDER BY {order}
LIMIT %(limit)s
"""

# The received tab's order: active sends (requested, in progress, on hold) first, by urgency (stat
# « Immédiate », asap, urgent, routine), then by the deadline that runs (accept_by while requested,
# answer_by after; none: last, as in 9999), then by age (sent first, first); then the others by last activity,
# newest first. One ascending key so a keyset page goes on exactly where the last one ended:
# (rank, due, age, send) with rank = urgency rank for active sends, 10 for the others, and age the
# send's epoch (active) or minus its last activity's (the others). Not indexable, but scoped to one
# recipient's sends (a few hundred active at most).
ACTIVE = "s.state IN ('requested', 'in_progress', 'on_hold')"
RANK = f"""(CASE WHEN {ACTIVE} THEN (CASE d.urgency WHEN 'stat' THEN 0 WHEN 'asap' THEN 1 WHEN 'urgent' THEN 2
            ELSE 3 END) ELSE 10 END)"""
DUE = f"""(CASE WHEN s.state = 'requested' THEN coalesce(s.accept_by, '9999-01-01 00:00+00'::timestamptz)
            WHEN {ACTIVE} THEN coalesce(s.answer_by, '9999-01-01 00:00+00'::timestamptz) ELSE '9999-01-01 00:00+00'::timestamptz END)"""
AGE = f"""(CASE WHEN {ACTIVE} THEN extract(epoch FROM coalesce(s.sent_on, d.last_activity_at))
            ELSE -extract(epoch FROM d.last_activity_at) END)"""
RECEIVED_ORDER = f"{RANK}, {DUE}, {AGE}, s.send_id"

# The last actor of a dossier last changed by the history import: its rows are history, read by everyone.
HISTORY_IMPORT = "history-import"
UNREAD = f"""(d.last_actor_id NOT IN (%(me)s, '{HISTORY_IMPORT}') AND NOT EXISTS (SELECT 1 FROM inbox_views v
             WHERE v.practitioner_id = %(me)s AND v.dossier_id = d.id AND v.version >= d.version))"""

# A recipient sees a send only once it was sent: the domain's `was_sent` (domain/dossier.py) on the
# `sent_on` the inbox stores for each send — never its state (a send never sent ends `cancelled` or
# `closed` with its dossier, like one that was). tests/web/test_read_rule.py holds both to the same cases.
WAS_SENT = "s.sent_on IS NOT NULL"

# The domain's `_addressed_to` (domain/dossier.py, behind Dossier.is_recipient): the practitioner
# named, else a member of the service named, else anyone of the establishment — for the send, or
# for the target of its escalation (same establishment; cleared by a forward).
MINE = f"""s.establishment_id = %(est)s AND {WAS_SENT}
          AND ((s.practitioner_id = %(me_uuid)s OR (s.practitioner_id IS NULL
               AND (s.service_id IS NULL OR s.service_id = ANY(%(services)s::uuid[]))))
            OR (s.escalated AND (s.escalated_practitioner_id = %(me_uuid)s OR (s.escalated_practitioner_id IS NULL
               AND (s.escalated_service_id IS NULL OR s.escalated_service_id = ANY(%(services)s::uuid[]))))))"""


def _tab_sql(tab: str) -> tuple[str, str, list[str], str, str]:
    """(FROM, columns, WHERE parts, order expression, tie-break key) of a tab."""
    if tab == "received":
        source = "inbox_sends s JOIN inbox_dossiers d ON d.id = s.dossier_id"
        cols = f"""s.send_id::text AS send_id, s.state AS state, {UNREAD} AS unread,
            s.accept_by, s.answer_by, s.escalated, {RANK} AS sort_rank, {DUE} AS sort_due, {AGE} AS sort_age,
            (SELECT name FROM dir_establishments WHERE id = d.requester_establishment_id) AS counterpart,
            coalesce((SELECT given_name || ' ' || family_name FROM dir_practitioners
                      WHERE id = d.requester_practitioner_id), '') AS counterpart_detail"""
        where = [MINE, OPEN, "s.state = ANY(%(received_states)s)"]
        return source, cols, where, "d.last_activity_at", "s.send_id"
    source = "inbox_dossiers d"
    cols = f"""NULL AS send_id, d.state AS state, {UNREAD} AS unread,
        coalesce((SELECT string_agg(coalesce(e.name, '?'), ', ' ORDER BY e.name) FROM inbox_sends s
                  LEFT JOIN dir_establishments e ON e.id = s.establishment_id WHERE s.dossier_id = d.id), '') AS counterpart,
        coalesce((SELECT string_agg(coalesce(sv.name, p.given_name || ' ' || p.family_name, 'tout l''établissement'), ', ')
                  FROM inbox_sends s LEFT JOIN dir_services sv ON sv.id = s.service_id
                  LEFT JOIN dir_practitioners p ON p.id = s.practitioner_id WHERE s.dossier_id = d.id), '') AS counterpart_detail"""
    where = ["d.requester_establishment_id = %(est)s"]
    if tab == "sent":
        # what the requester waits for: the earliest answer deadline of the sends still being worked on,
        # and whether one of them was escalated
        cols += f""",
        (SELECT min(s.answer_by) FROM inbox_sends s WHERE s.dossier_id = d.id AND {WAS_SENT} AND {ACTIVE}) AS answer_by,
        EXISTS (SELECT 1 FROM inbox_sends s WHERE s.dossier_id = d.id AND s.escalated AND {ACTIVE}) AS escalated"""
        where.append("d.state NOT IN ('draft', 'closed', 'cancelled')")
    elif tab == "drafts":
        where += ["d.state = 'draft'", "d.requester_practitioner_id = %(me_uuid)s"]
    return source, cols, where, "d.last_activity_at", "d.id"


def _closed_sql() -> tuple[str, str, list[str], str, str]:
    """Closed tab: dossiers over on either side, and sends of mine declined."""
    source = "inbox_dossiers d"
    cols = f"""NULL AS send_id, d.state AS state, {UNREAD} AS unread,
        CASE WHEN d.requester_establishment_id = %(est)s THEN
          coalesce((SELECT string_agg(coalesce(e.name, '?'), ', ') FROM inbox_sends s
                    LEFT JOIN dir_establishments e ON e.id = s.establishment_id WHERE s.dossier_id = d.id), '')
        ELSE (SELECT name FROM dir_establishments WHERE id = d.requester_establishment_id) END AS counterpart,
        '' AS counterpart_detail"""
    mine = f"{MINE} AND s.dossier_id = d.id"
    where = [f"""((d.requester_establishment_id = %(est)s AND d.state IN ('closed', 'cancelled'))
               OR EXISTS (SELECT 1 FROM inbox_sends s WHERE {mine}
                          AND (d.state IN ('closed', 'cancelled') OR s.state = 'declined')))"""]
    return source, cols, where, "d.last_activity_at", "d.id"


def _row(r: DictRow) -> InboxRow:
    values = dict(r)
    if "sort_rank" in values:
        values["sort"] = (values.pop("sort_rank"), values.pop("sort_due"), values.pop("sort_age"), values["key"])
    return InboxRow(**values)


class InboxQueries(PostgresView):
    """The queries of the PostgreSQL inbox view (projections/inbox.py adds its tables): every
    query is scoped to one clinician (server-side)."""

    @staticmethod
    def _params(scope: Scope) -> dict[str, Any]:
        return {
            "est": scope.establishment_id, "me": scope.practitioner_id, "me_uuid": scope.practitioner_id,
            "services": list(scope.service_ids), "received_states": list(RECEIVED_STATES),
        }

    def page(self, scope: Scope, tab: str, filters: Filters, cursor: str | None = None, limit: int = PAGE_SIZE) -> Page:
        if tab not in TABS:
            raise ValueError(tab)
        source, cols, where, since, key = _closed_sql() if tab == "closed" else _tab_sql(tab)
        params = self._params(scope) | {"limit": limit + 1}
        where = list(where)
        self._filters(tab, filters, where, params)
        if tab == "received":
            order = RECEIVED_ORDER
            position = decode_sort_cursor(cursor)
            if position:
                params["c_rank"], params["c_due"], params["c_age"], params["c_key"] = position
                where.append(f"({RECEIVED_ORDER}) > (%(c_rank)s, %(c_due)s, %(c_age)s::numeric, %(c_key)s::uuid)")
        else:
            order = f"{since} DESC, {key} DESC"
            after = decode_cursor(cursor)
            if after:
                params["c_ts"], params["c_key"] = after
                where.append(f"({since}, {key}) < (%(c_ts)s, %(c_key)s::uuid)")
        sql = SELECT.format(cols=cols, source=source, since=since, key=key, order=order,
                            where=" AND ".join(f"({w})" for w in where))
        rows = [_row(r) for r in self.query(sql, params)]
        more = len(rows) > limit
        rows = rows[:limit]
        if not more:
            return Page(rows=rows, next_cursor=None)
        last = rows[-1]
        return Page(rows=rows, next_cursor=encode_sort_cursor(last.sort) if tab == "received"
                    else encode_cursor(last.since, last.key))

    @staticmethod
    def _filters(tab: str, f: Filters, where: list[str], params: dict[str, Any]) -> None:
        state_col = "s.state" if tab == "received" else "d.state"
        if f.workflow:
            where.append("d.workflow = %(workflow)s")
            params["workflow"] = f.workflow
        if f.state:
            where.append(f"{state_col} = %(state)s")
            params["state"] = f.state
        if f.urgency:
            where.append("d.urgency = %(urgency)s")
            params["urgency"] = f.urgency
        if f.service:
            col = "s.service_id" if tab == "received" else "d.requester_service_id"
            where.append(f"{col}::text = %(service)s")
            params["service"] = f.service
        date_col = "coalesce(d.first_sent_on, d.created_on)"
        if f.since:
            where.append(f"{date_col} >= %(since)s")
            params["since"] = datetime.combine(f.since, datetime.min.time())
        if f.until:
            where.append(f"{date_col} < %(until)s")
            params["until"] = datetime.combine(f.until + timedelta(days=1), datetime.min.time())
        q = f.q.strip()
        if q:
            number = q.upper().replace(" ", "")
            if NUMBER.match(number):
                params["number"] = number if number.startswith("TD-") else "TD-" + number.removeprefix("TD")
                where.append("d.number = %(number)s")
            else:
                params["q"] = contains(q)
                where.append("d.search LIKE %(q)s")

    def counts(self, scope: Scope) -> dict[str, int]:
        """Rows per tab, and unread rows among the received (capped at COUNT_CAP)."""
        out: dict[str, int] = {}
        params = self._params(scope) | {"cap": COUNT_CAP}
        for tab in TABS:
            source, _, where, _, _ = _closed_sql() if tab == "closed" else _tab_sql(tab)
            sql = f"SELECT count(*) AS n FROM (SELECT 1 FROM {source} WHERE {' AND '.join(where)} LIMIT %(cap)s) t"
            out[tab] = self.query(sql, params)[0]["n"]
        source, _, where, _, _ = _tab_sql("received")
        sql = f"SELECT count(*) AS n FROM (SELECT 1 FROM {source} WHERE {' AND '.join(where)} AND {UNREAD} LIMIT %(cap)s) t"
        out["unread"] = self.query(sql, params)[0]["n"]
        return out

    def row_of(self, scope: Scope, dossier_id: str) -> list[InboxRow]:
        """The rows of one dossier in any tab of this inbox (used by tests and the live bench)."""
        found = []
        for tab in TABS:
            page = self.page(scope, tab, Filters(), limit=200)
            found += [r for r in page.rows if r.dossier_id == dossier_id]
        return found

    def find(self, *, q: str = "", establishment_id: str = "", since: date | None = None, until: date | None = None,
             limit: int = 50) -> list[DictRow]:
        """Auditor search over every dossier: number, patient name, establishment (either side), period."""
        where = ["true"]
        params: dict[str, Any] = {"limit": limit}
        q = q.strip()
        if q:
            number = q.upper().replace(" ", "")
            if NUMBER.match(number):
                params["number"] = number if number.startswith("TD-") else "TD-" + number.removeprefix("TD")
                where.append("d.number = %(number)s")
            else:
                params["q"] = contains(q)
                where.append("d.search LIKE %(q)s")
        if establishment_id:
            params["est"] = establishment_id
            where.append("(d.requester_establishment_id::text = %(est)s OR EXISTS (SELECT 1 FROM inbox_sends s "
                         "WHERE s.dossier_id = d.id AND s.establishment_id::text = %(est)s))")
        if since:
            params["since"] = datetime.combine(since, datetime.min.time())
            where.append("d.created_on >= %(since)s")
        if until:
            params["until"] = datetime.combine(until + timedelta(days=1), datetime.min.time())
            where.append("d.created_on < %(until)s")
        return self.query(
            f"""SELECT d.id::text AS dossier_id, d.number, d.workflow, d.urgency, d.state, d.birth_name, d.first_names,
                       d.birth_date, d.sex, d.created_on, d.version,
                       (SELECT name FROM dir_establishments WHERE id = d.requester_establishment_id) AS requester
                FROM inbox_dossiers d WHERE {' AND '.join(where)}
                ORDER BY d.created_on DESC LIMIT %(limit)s""", params,
        )
