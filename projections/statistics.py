"""Statistics read model: one row per sent dossier and per send, with business and recorded times.

Facts, not counters: the tables keep what each dossier and send is (workflow, requester,
recipient, imaging source, channel) and when things happened — business time (`*_at`, the
events' `occurred_at`) and recorded time (`*_recorded_at`, the event store's timestamp of the
event that established the fact). The figures of `projections/statistics_report.py` are
aggregated from them at query time, so any period, filter or "as the platform stood at the end
of day D" (`recorded_at` ≤ D) comes from the same rows. No patient data is ever copied here.

Buffered (see projections/base.py): events are folded in memory, then each batch is written
with COPY and set-based UPDATEs, in one transaction with its tracking position.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from psycopg import Connection, Cursor
from psycopg.abc import Params
from psycopg.rows import DictRow

from domain.directory import Establishment
from domain.dossier import Dossier
from domain.values import PARIS
from projections.base import BufferedProjection, PostgresView
from projections.statistics_rows import SEND_FACTS, Fact, NewDossier, NewEstablishment, NewSend, copy_rows
from projections.status import ProjectionStatus, projection_status


@dataclass(frozen=True)
class EstablishmentRow:
    finess: str
    name: str
    department: str


class PostgresStatisticsView(PostgresView):
    ddl = (
        """CREATE TABLE IF NOT EXISTS stats_establishments (
            id uuid PRIMARY KEY, finess text NOT NULL, name text NOT NULL,
            department text NOT NULL, region text NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS stats_dossiers (
            id uuid PRIMARY KEY, requester_id uuid, requester_department text, workflow text NOT NULL,
            imaging_source text NOT NULL, imported boolean NOT NULL, created_recorded_at timestamptz NOT NULL,
            sent_at timestamptz, sent_date date, sent_recorded_at timestamptz, first_answer_at timestamptz)""",
        "CREATE INDEX IF NOT EXISTS stats_dossiers_sent_date ON stats_dossiers (sent_date)",
        """CREATE TABLE IF NOT EXISTS stats_sends (
            dossier_id uuid NOT NULL, send_id text NOT NULL, recipient_id uuid,
            department text, region text, channel text,
            workflow text, requester_id uuid, requester_department text,
            sent_at timestamptz, sent_date date, sent_recorded_at timestamptz,
            accepted_at timestamptz, accepted_recorded_at timestamptz,
            declined_at timestamptz, declined_recorded_at timestamptz,
            answered_at timestamptz, answered_recorded_at timestamptz,
            accept_by timestamptz, answer_by timestamptz, deadline_source text, deadline_recorded_at timestamptz,
            taken_at timestamptz, taken_recorded_at timestamptz,
            escalated_at timestamptz, escalated_recorded_at timestamptz, escalations_recorded_at timestamptz[],
            ended_at timestamptz, ended_recorded_at timestamptz,
            PRIMARY KEY (dossier_id, send_id))""",
        "CREATE INDEX IF NOT EXISTS stats_sends_sent_date ON stats_sends (sent_date)",
        # the deadline figures read only the sends that have one (none in an imported history)
        """CREATE INDEX IF NOT EXISTS stats_sends_deadline_sent_date ON stats_sends (sent_date)
           WHERE deadline_recorded_at IS NOT NULL""",
    )
    tables = ("stats_establishments", "stats_dossiers", "stats_sends")
    # 2: dossier fields copied onto sends, first answer on dossiers; 3: deadlines, taking in charge,
    # escalations and cancellation of sends; 4: the end (cancellation or closing) of their dossier;
    # 5: no taking in charge written, from a later batch, for a send without a deadline (rebuilt once)
    schema_version = 5

    def snapshot(self) -> Snapshot:
        """Every query of a report in one read-only REPEATABLE READ transaction (one state of
        the tables, even while a batch commits)."""
        return Snapshot(self.datastore.get_connection)

    def establishments(self) -> list[EstablishmentRow]:
        """The establishments known to the statistics (no patient data), by name."""
        rows = self.query("SELECT finess, name, department FROM stats_establishments ORDER BY name, finess")
        return [EstablishmentRow(**r) for r in rows]

    def status(self) -> ProjectionStatus:
        """Where the statistics stand: their position in the log and the events not in them yet."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            return projection_status(curs, StatisticsProjection.name, StatisticsProjection.topics)


class Snapshot:
    """A read-only REPEATABLE READ transaction on a connection from `connect()` (a pool's)."""

    def __init__(self, connect: Callable[[], AbstractContextManager[Connection[DictRow]]]):
        self._connect = connect

    def __enter__(self) -> Snapshot:
        self._cm = self._connect()
        self.conn = self._cm.__enter__()
        self._tx = self.conn.transaction()
        self._tx.__enter__()
        self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self.conn.execute("SET LOCAL work_mem = '32MB'")  # sorts of percentiles in memory, not on disk
        return self

    def fetch(self, sql: str, params: Params = ()) -> list[DictRow]:
        with self.conn.cursor() as curs:
            curs.execute(sql, params)
            return list(curs.fetchall())

    def __exit__(self, *exc: Any) -> None:
        try:
            self._tx.__exit__(*exc)
        finally:
            self._cm.__exit__(*exc)


_UUIDS: dict[str, UUID] = {}


def _uuid(value: str | None) -> UUID | None:
    """UUID of an establishment id (a few hundred distinct values: cached)."""
    if not value:
        return None
    found = _UUIDS.get(value)
    if found is None:
        found = _UUIDS[value] = UUID(value)
    return found


def _paris_date(moment: datetime) -> date:
    return moment.astimezone(PARIS).date()


FACT_FIELDS = {fact: (f"{fact}_at", f"{fact}_recorded_at") for fact in SEND_FACTS}


class DeadlinePatch:
    """What a batch learnt about the deadline of a send already written: the last deadline recorded,
    when it first had one, its taking in charge (`reset`: a forward started the accept clock again)."""

    __slots__ = ("accept_by", "answer_by", "source", "recorded", "reset", "taken")

    def __init__(self) -> None:
        self.accept_by: datetime | None = None
        self.answer_by: datetime | None = None
        self.source: str | None = None
        self.recorded: datetime | None = None
        self.reset = False
        self.taken: Fact | None = None


def _deadline_times(record: dict[str, Any]) -> tuple[datetime, datetime, str]:
    def when(v: Any) -> datetime:
        return v if isinstance(v, datetime) else datetime.fromisoformat(str(v))
    return when(record["accept_by"]), when(record["answer_by"]), str((record.get("basis") or {}).get("source") or "")


class Batch:
    """What a batch of events changes: new rows, and later facts about rows already written."""

    __slots__ = ("new_establishments", "renamed", "new_dossiers", "dossier_patches", "new_sends", "send_patches",
                 "removed_sends", "first_answers", "deadline_patches", "escalations", "ended",
                 "send_keys")

    def __init__(self) -> None:
        self.new_establishments: dict[UUID, NewEstablishment] = {}
        self.renamed: dict[UUID, str] = {}
        self.new_dossiers: dict[UUID, NewDossier] = {}
        self.dossier_patches: dict[UUID, dict[str, Any]] = {}  # "workflow", "imaging_source": str; "sent": Fact
        self.new_sends: dict[tuple[UUID, str], NewSend] = {}
        self.send_patches: dict[tuple[UUID, str], dict[str, Fact]] = {}  # by fact (SEND_FACTS)
        self.removed_sends: set[tuple[UUID, str]] = set()
        self.first_answers: dict[UUID, datetime] = {}
        self.deadline_patches: dict[tuple[UUID, str], DeadlinePatch] = {}
        self.escalations: list[tuple[UUID, str, datetime, datetime]] = []  # of sends already written
        self.ended: dict[UUID, Fact] = {}  # dossiers cancelled or closed: their sends already written
        self.send_keys: dict[UUID, list[tuple[UUID, str]]] = {}  # the batch's new sends by dossier


class StatisticsProjection(BufferedProjection[PostgresStatisticsView]):
    """Keeps the statistics facts in step with dossier and establishment events."""

    name = "statistics"
    topics = (
        "relais:Establishment.Created",
        "relais:Establishment.Renamed",
        "relais:Dossier.Created",
        "relais:Dossier.DraftEdited",
        "relais:Dossier.RecipientAddressed",
        "relais:Dossier.RecipientRemoved",
        "relais:Dossier.Sent",
        "relais:Dossier.Accepted",
        "relais:Dossier.Declined",
        "relais:Dossier.OpinionGiven",
        "relais:Dossier.ReceiptAcknowledged",
        "relais:Dossier.Forwarded",
        "relais:Dossier.Escalated",
        "relais:Dossier.Cancelled",
        "relais:Dossier.Closed",
    )

    batch: Batch

    def __init__(self, view: PostgresStatisticsView):
        super().__init__(view)
        # establishment → department, for the requester's department of each dossier (looked up
        # with None too, for a dossier without requester: never a key)
        self.departments: dict[UUID | None, str] = {
            r["id"]: r["department"] for r in view.query("SELECT id, department FROM stats_establishments")
        }

    def new_batch(self) -> Batch:
        return Batch()

    # -------------------------------------------------------------- folding events

    def _establishment_created(self, e: Establishment.Created) -> None:
        self.batch.new_establishments[e.originator_id] = NewEstablishment(
            id=e.originator_id, finess=e.finess, name=e.name, department=e.department, region=e.region,
        )
        self.departments[e.originator_id] = e.department

    def _establishment_renamed(self, e: Establishment.Renamed) -> None:
        row = self.batch.new_establishments.get(e.originator_id)
        if row is not None:
            row.name = e.name
        else:
            self.batch.renamed[e.originator_id] = e.name

    def _created(self, e: Dossier.Created) -> None:
        requester = _uuid((e.requester or {}).get("establishment_id"))
        self.batch.new_dossiers[e.originator_id] = NewDossier(
            id=e.originator_id, requester_id=requester, requester_department=self.departments.get(requester),
            workflow=e.workflow, imaging_source=e.imaging_source, imported=e.imported_from is not None,
            created_recorded_at=e.timestamp,
        )

    def _edited(self, e: Dossier.DraftEdited) -> None:
        changes: dict[str, Any] = {k: e.changes[k] for k in ("workflow", "imaging_source") if k in e.changes}
        if not changes:
            return
        row = self.batch.new_dossiers.get(e.originator_id)
        if row is not None:
            row.workflow = changes.get("workflow", row.workflow)
            row.imaging_source = changes.get("imaging_source", row.imaging_source)
        else:
            self.batch.dossier_patches.setdefault(e.originator_id, {}).update(changes)

    def _addressed(self, e: Dossier.RecipientAddressed) -> None:
        r = e.recipient
        establishment = r.get("establishment_id")
        key = (e.originator_id, r["send_id"])
        self.batch.removed_sends.discard(key)
        self.batch.send_keys.setdefault(e.originator_id, []).append(key)
        self.batch.new_sends[key] = NewSend(
            dossier_id=e.originator_id, send_id=r["send_id"], recipient_id=_uuid(establishment),
            department=r.get("department"), region=r.get("region"), channel=r.get("channel"),
        )

    def _removed(self, e: Dossier.RecipientRemoved) -> None:
        key = (e.originator_id, e.send_id)
        if self.batch.new_sends.pop(key, None) is None:
            self.batch.removed_sends.add(key)
        self.batch.send_patches.pop(key, None)
        self.batch.deadline_patches.pop(key, None)

    def _send_fact(self, dossier_id: UUID, send_id: str, fact: str, at: datetime, recorded: datetime) -> None:
        key = (dossier_id, send_id)
        row = self.batch.new_sends.get(key)
        if fact == "answered":
            first = self.batch.first_answers.get(dossier_id)
            if first is None or at < first:
                self.batch.first_answers[dossier_id] = at
        if row is not None:
            at_field, recorded_field = FACT_FIELDS[fact]
            if getattr(row, at_field) is None:
                setattr(row, at_field, at)
                setattr(row, recorded_field, recorded)
                if fact == "sent":
                    row.sent_date = _paris_date(at)
        else:
            self.batch.send_patches.setdefault(key, {}).setdefault(fact, Fact(at, recorded))

    def _sent(self, e: Dossier.Sent) -> None:
        at, recorded = e.occurred_at, e.timestamp
        for send_id in e.send_ids:
            self._send_fact(e.originator_id, send_id, "sent", at, recorded)
        for send_id, deadline in (e.deadlines or {}).items():
            self._deadline(e.originator_id, send_id, deadline, recorded, reset=False)
        row = self.batch.new_dossiers.get(e.originator_id)
        if row is not None:
            if row.sent_at is None:
                row.sent_at, row.sent_date, row.sent_recorded_at = at, _paris_date(at), recorded
        else:
            self.batch.dossier_patches.setdefault(e.originator_id, {}).setdefault("sent", Fact(at, recorded))

    def _accepted(self, e: Dossier.Accepted) -> None:
        self._send_fact(e.originator_id, e.send_id, "accepted", e.occurred_at, e.timestamp)
        self._taken(e.originator_id, e.send_id, e.occurred_at, e.timestamp)

    def _declined(self, e: Dossier.Declined) -> None:
        self._send_fact(e.originator_id, e.send_id, "declined", e.occurred_at, e.timestamp)

    def _answered(self, e: Dossier.OpinionGiven | Dossier.ReceiptAcknowledged) -> None:
        """An opinion given, or an imaging transfer's receipt acknowledged (its answer: no opinion is asked)."""
        self._send_fact(e.originator_id, e.send_id, "answered", e.occurred_at, e.timestamp)
        self._taken(e.originator_id, e.send_id, e.occurred_at, e.timestamp)

    # deadlines: the last recorded counts; taking in charge is measured from the last one's start

    def _deadline(self, dossier_id: UUID, send_id: str, deadline: dict[str, Any] | None, recorded: datetime,
                  *, reset: bool) -> None:
        key = (dossier_id, send_id)
        row = self.batch.new_sends.get(key)
        times = _deadline_times(deadline) if deadline else None
        if row is not None:
            if times is not None:
                row.accept_by, row.answer_by, row.deadline_source = times
                if row.deadline_recorded_at is None:
                    row.deadline_recorded_at = recorded
            if reset:
                row.taken_at = row.taken_recorded_at = None
            return
        if times is None and not reset:
            return
        patch = self.batch.deadline_patches.setdefault(key, DeadlinePatch())
        if times is not None:
            patch.accept_by, patch.answer_by, patch.source = times
            if patch.recorded is None:
                patch.recorded = recorded
        if reset:
            patch.reset, patch.taken = True, None

    def _taken(self, dossier_id: UUID, send_id: str, at: datetime, recorded: datetime) -> None:
        key = (dossier_id, send_id)
        row = self.batch.new_sends.get(key)
        if row is not None:
            if row.taken_at is None and row.deadline_recorded_at is not None:  # only measured against a deadline
                row.taken_at, row.taken_recorded_at = at, recorded
            return
        patch = self.batch.deadline_patches.setdefault(key, DeadlinePatch())
        if patch.taken is None:
            patch.taken = Fact(at, recorded)

    def _forwarded(self, e: Dossier.Forwarded) -> None:
        self._deadline(e.originator_id, e.send_id, e.deadline, e.timestamp, reset=True)

    def _escalated(self, e: Dossier.Escalated) -> None:
        row = self.batch.new_sends.get((e.originator_id, e.send_id))
        if row is None:
            self.batch.escalations.append((e.originator_id, e.send_id, e.occurred_at, e.timestamp))
            return
        if row.escalated_at is None:
            row.escalated_at, row.escalated_recorded_at = e.occurred_at, e.timestamp
        row.escalations_recorded_at = [*(row.escalations_recorded_at or []), e.timestamp]

    def _ended(self, e: Dossier.Cancelled | Dossier.Closed) -> None:
        for key in self.batch.send_keys.get(e.originator_id, ()):
            row = self.batch.new_sends.get(key)
            if row is not None and row.ended_at is None:
                row.ended_at, row.ended_recorded_at = e.occurred_at, e.timestamp
        if e.originator_id not in self.batch.new_dossiers:  # else every send of it is in this batch
            self.batch.ended.setdefault(e.originator_id, Fact(e.occurred_at, e.timestamp))

    handlers = {
        Establishment.Created: _establishment_created,
        Establishment.Renamed: _establishment_renamed,
        Dossier.Created: _created,
        Dossier.DraftEdited: _edited,
        Dossier.RecipientAddressed: _addressed,
        Dossier.RecipientRemoved: _removed,
        Dossier.Sent: _sent,
        Dossier.Accepted: _accepted,
        Dossier.Declined: _declined,
        Dossier.OpinionGiven: _answered,
        Dossier.ReceiptAcknowledged: _answered,
        Dossier.Forwarded: _forwarded,
        Dossier.Escalated: _escalated,
        Dossier.Cancelled: _ended,
        Dossier.Closed: _ended,
    }

    # -------------------------------------------------------------- writing a batch

    def write(self, curs: Cursor[DictRow], batch: Batch) -> None:
        # Dossier fields on sends (aggregated without a join), first answers on dossiers: what the
        # batch knows is set in memory, the rest by a join on the rows already written.
        refresh: set[UUID] = {did for did, p in batch.dossier_patches.items() if "workflow" in p}
        for (did, _), send in batch.new_sends.items():
            dossier = batch.new_dossiers.get(did)
            if dossier is not None:
                send.workflow, send.requester_id, send.requester_department = (
                    dossier.workflow, dossier.requester_id, dossier.requester_department
                )
            else:
                refresh.add(did)
        answers: dict[UUID, datetime] = {}
        for did, at in batch.first_answers.items():
            dossier = batch.new_dossiers.get(did)
            if dossier is not None:
                if dossier.first_answer_at is None or at < dossier.first_answer_at:
                    dossier.first_answer_at = at
            else:
                answers[did] = at
        if batch.new_establishments:
            copy_rows(curs, "stats_establishments", NewEstablishment, batch.new_establishments.values())
        if batch.renamed:
            ids, names = zip(*batch.renamed.items(), strict=True)
            curs.execute(
                "UPDATE stats_establishments e SET name = u.name FROM unnest(%s::uuid[], %s::text[]) AS u(id, name) "
                "WHERE e.id = u.id", (list(ids), list(names)),
            )
        if batch.new_dossiers:
            copy_rows(curs, "stats_dossiers", NewDossier, batch.new_dossiers.values())
        if batch.dossier_patches:
            _patch_dossiers(curs, batch.dossier_patches)
        if batch.removed_sends:
            ds, ss = zip(*batch.removed_sends, strict=True)
            curs.execute(
                "DELETE FROM stats_sends s USING unnest(%s::uuid[], %s::text[]) AS u(dossier_id, send_id) "
                "WHERE s.dossier_id = u.dossier_id AND s.send_id = u.send_id", (list(ds), list(ss)),
            )
        if batch.new_sends:
            copy_rows(curs, "stats_sends", NewSend, batch.new_sends.values())
        if batch.send_patches:
            _patch_sends(curs, batch.send_patches)
        if batch.deadline_patches:
            _patch_deadlines(curs, batch.deadline_patches)
        if batch.escalations:
            ds, ss, ats, recs = zip(*batch.escalations, strict=True)
            curs.execute(
                """UPDATE stats_sends s SET
                     escalated_at = coalesce(s.escalated_at, u.first_at),
                     escalated_recorded_at = coalesce(s.escalated_recorded_at, u.first_rec),
                     escalations_recorded_at = coalesce(s.escalations_recorded_at, '{}') || u.recs
                   FROM (SELECT dossier_id, send_id, min(at) AS first_at, min(rec) AS first_rec,
                                array_agg(rec ORDER BY rec) AS recs
                         FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::timestamptz[])
                              AS e(dossier_id, send_id, at, rec)
                         GROUP BY 1, 2) AS u
                   WHERE s.dossier_id = u.dossier_id AND s.send_id = u.send_id""",
                (list(ds), list(ss), list(ats), list(recs)),
            )
        if batch.ended:
            ids, facts = zip(*batch.ended.items(), strict=True)
            curs.execute(
                """UPDATE stats_sends s SET ended_at = u.at, ended_recorded_at = u.rec
                   FROM unnest(%s::uuid[], %s::timestamptz[], %s::timestamptz[]) AS u(id, at, rec)
                   WHERE s.dossier_id = u.id AND s.ended_at IS NULL""",
                (list(ids), [f.at for f in facts], [f.recorded for f in facts]),
            )
        if refresh:
            curs.execute(
                """UPDATE stats_sends s SET workflow = d.workflow, requester_id = d.requester_id,
                          requester_department = d.requester_department
                   FROM stats_dossiers d WHERE d.id = s.dossier_id AND s.dossier_id = ANY(%s)""",
                (list(refresh),),
            )
        if answers:
            ids, ats = zip(*answers.items(), strict=True)
            curs.execute(
                """UPDATE stats_dossiers d SET first_answer_at = least(d.first_answer_at, u.at)
                   FROM unnest(%s::uuid[], %s::timestamptz[]) AS u(id, at) WHERE d.id = u.id""",
                (list(ids), list(ats)),
            )


def _patch_dossiers(curs: Cursor[DictRow], patches: dict[UUID, dict[str, Any]]) -> None:
    cols: dict[str, list[Any]] = {k: [] for k in ("id", "workflow", "imaging_source", "sent_at", "sent_date", "sent_rec")}
    for did, patch in patches.items():
        sent = patch.get("sent")
        cols["id"].append(did)
        cols["workflow"].append(patch.get("workflow"))
        cols["imaging_source"].append(patch.get("imaging_source"))
        cols["sent_at"].append(sent.at if sent else None)
        cols["sent_date"].append(_paris_date(sent.at) if sent else None)
        cols["sent_rec"].append(sent.recorded if sent else None)
    curs.execute(
        """UPDATE stats_dossiers d SET
             workflow = coalesce(u.workflow, d.workflow),
             imaging_source = coalesce(u.imaging_source, d.imaging_source),
             sent_at = coalesce(d.sent_at, u.sent_at),
             sent_date = CASE WHEN d.sent_at IS NULL THEN u.sent_date ELSE d.sent_date END,
             sent_recorded_at = CASE WHEN d.sent_at IS NULL THEN u.sent_rec ELSE d.sent_recorded_at END
           FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::timestamptz[], %s::date[], %s::timestamptz[])
                AS u(id, workflow, imaging_source, sent_at, sent_date, sent_rec)
           WHERE d.id = u.id""",
        tuple(cols.values()),
    )


def _patch_deadlines(curs: Cursor[DictRow], patches: dict[tuple[UUID, str], DeadlinePatch]) -> None:
    keys = list(patches)
    rows = [patches[k] for k in keys]
    curs.execute(
        """UPDATE stats_sends s SET
             accept_by = coalesce(u.accept_by, s.accept_by),
             answer_by = coalesce(u.answer_by, s.answer_by),
             deadline_source = coalesce(u.source, s.deadline_source),
             deadline_recorded_at = coalesce(s.deadline_recorded_at, u.rec),
             -- taking in charge is only measured against a deadline (as for a row written in the same batch)
             taken_at = CASE WHEN coalesce(s.deadline_recorded_at, u.rec) IS NULL THEN s.taken_at
                             WHEN u.reset OR s.taken_at IS NULL THEN u.taken_at ELSE s.taken_at END,
             taken_recorded_at = CASE WHEN coalesce(s.deadline_recorded_at, u.rec) IS NULL THEN s.taken_recorded_at
                                      WHEN u.reset OR s.taken_at IS NULL THEN u.taken_rec ELSE s.taken_recorded_at END
           FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::timestamptz[],
                       %s::bool[], %s::timestamptz[], %s::timestamptz[])
                AS u(dossier_id, send_id, accept_by, answer_by, source, rec, reset, taken_at, taken_rec)
           WHERE s.dossier_id = u.dossier_id AND s.send_id = u.send_id""",
        (
            [k[0] for k in keys], [k[1] for k in keys], [p.accept_by for p in rows], [p.answer_by for p in rows],
            [p.source for p in rows], [p.recorded for p in rows], [p.reset for p in rows],
            [p.taken.at if p.taken else None for p in rows], [p.taken.recorded if p.taken else None for p in rows],
        ),
    )


def _patch_sends(curs: Cursor[DictRow], patches: dict[tuple[UUID, str], dict[str, Fact]]) -> None:
    keys = list(patches)
    params: list[list[Any]] = [[dossier_id for dossier_id, _ in keys], [send_id for _, send_id in keys]]
    for fact in SEND_FACTS:
        facts = [patches[k].get(fact) for k in keys]
        params.append([f.at if f else None for f in facts])
        params.append([f.recorded if f else None for f in facts])
    params.append([_paris_date(f.at) if f else None for f in (patches[k].get("sent") for k in keys)])
    sets = ",\n".join(
        f"{fact}_at = coalesce(s.{fact}_at, u.{fact}_at), "
        f"{fact}_recorded_at = CASE WHEN s.{fact}_at IS NULL THEN u.{fact}_rec ELSE s.{fact}_recorded_at END"
        for fact in SEND_FACTS
    )
    names = ", ".join(f"{fact}_at, {fact}_rec" for fact in SEND_FACTS)
    types = ", ".join("%s::timestamptz[], %s::timestamptz[]" for _ in SEND_FACTS)
    curs.execute(
        f"""UPDATE stats_sends s SET {sets},
              sent_date = CASE WHEN s.sent_at IS NULL THEN u.sent_date ELSE s.sent_date END
            FROM unnest(%s::uuid[], %s::text[], {types}, %s::date[])
                 AS u(dossier_id, send_id, {names}, sent_date)
            WHERE s.dossier_id = u.dossier_id AND s.send_id = u.send_id""",
        params,
    )

