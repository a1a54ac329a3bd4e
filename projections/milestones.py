"""Milestones read model: the times of care of each dossier (door, imaging, sent, accepted, opinion, decision)
and the stroke indicators computed from them (medians of door-to-opinion, sent-to-opinion, ...).

Each event is folded with application/milestones.py — the same rule as the dossier page — onto the row's
stored state, and the row written with the event's tracking in one transaction. No patient data here.
Rebuildable from zero (`relais projections rebuild milestones`)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from application.dossier_views import event_summary
from application.milestones import FOLDED, fold, resolve
from domain.dossier import Dossier
from domain.values import PARIS, Workflow
from projections.base import PostgresView
from projections.status import ProjectionStatus, projection_status

# The indicators: (name, from milestone, to milestone), in the order tables and charts show them.
INTERVALS = (
    ("door_to_opinion", "door", "opinion"),
    ("sent_to_opinion", "sent", "opinion"),
    ("door_to_sent", "door", "sent"),
    ("sent_to_accepted", "sent", "accepted"),
)
COLUMNS = ("door", "imaging", "sent", "accepted", "opinion", "decision")
STROKE_TABLE = ("period", "dossiers", *(f"{name}_{m}" for name, _, _ in INTERVALS for m in ("count", "median_minutes")))


@dataclass(frozen=True)
class StrokeQuery:
    """Stroke dossiers sent between two Paris dates (inclusive), optionally of one requester establishment."""

    date_from: date
    date_to: date
    requester_id: str | None = None


def stroke_csv(rows: list[dict[str, Any]], *, excel: bool = False) -> str:
    """The stroke table as CSV, one column per field (`excel`: BOM, semicolons, decimal commas)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";" if excel else ",", lineterminator="\r\n")
    writer.writerow(STROKE_TABLE)
    for row in rows:
        cells = ["" if row.get(c) is None else str(row[c]) for c in STROKE_TABLE]
        writer.writerow([c.replace(".", ",") if excel else c for c in cells])
    return ("\ufeff" if excel else "") + out.getvalue()


class PostgresMilestonesView(PostgresView):
    ddl = (
        """CREATE TABLE IF NOT EXISTS milestones (
            dossier_id uuid PRIMARY KEY, workflow text NOT NULL, requester_id uuid, state jsonb NOT NULL,
            door_at timestamptz, imaging_at timestamptz, sent_at timestamptz, accepted_at timestamptz,
            opinion_at timestamptz, decision_at timestamptz, sent_date date)""",
        "CREATE INDEX IF NOT EXISTS milestones_workflow_sent_date ON milestones (workflow, sent_date)",
    )
    tables = ("milestones",)
    schema_version = 1

    def write(self, curs: Cursor[DictRow], dossier_id: Any, event: str, occurred_at: Any, data: dict[str, Any]) -> None:
        """Folds one event onto the dossier's row (locked while read and written)."""
        curs.execute("SELECT state FROM milestones WHERE dossier_id = %s FOR UPDATE", (dossier_id,))
        row = curs.fetchone()
        if row is None:
            return  # a dossier created before this read model knew it: the Created event makes the row
        state = fold(dict(row["state"]), event, occurred_at, data)
        times = resolve(state)
        sent = times.get("sent")
        curs.execute(
            f"""UPDATE milestones SET state = %s, {", ".join(f"{c}_at = %s" for c in COLUMNS)}, sent_date = %s
                WHERE dossier_id = %s""",
            (Jsonb(state), *(times.get(c) for c in COLUMNS), sent.astimezone(PARIS).date() if sent else None, dossier_id),
        )

    def times(self, dossier_id: str) -> dict[str, Any] | None:
        rows = self.query(f"SELECT workflow, {', '.join(f'{c}_at' for c in COLUMNS)} FROM milestones WHERE dossier_id = %s",
                          (dossier_id,))
        return dict(rows[0]) if rows else None

    def stroke_indicators(self, q: StrokeQuery) -> list[dict[str, Any]]:
        """Per month of sending (Paris), then « total »: sent stroke dossiers, and for each interval the count of
        dossiers with both times (the later not before the earlier) and the median in minutes (one decimal)."""
        # 36 months, 44,000 stroke dossiers among 200,000 rows: ~260 ms (four sorted medians per month and overall)
        measures = ",\n".join(
            f"""count(*) FILTER (WHERE {b}_at >= {a}_at) AS {name}_count,
                round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM {b}_at - {a}_at) / 60)
                       FILTER (WHERE {b}_at >= {a}_at))::numeric, 1) AS {name}_median_minutes"""
            for name, a, b in INTERVALS
        )
        where = "workflow = %s AND sent_date BETWEEN %s AND %s" + (" AND requester_id = %s" if q.requester_id else "")
        params: tuple[Any, ...] = (Workflow.STROKE_OPINION.value, q.date_from, q.date_to,
                                   *((q.requester_id,) if q.requester_id else ()))
        rows = self.query(
            f"""SELECT coalesce(to_char(date_trunc('month', sent_date), 'YYYY-MM'), 'total') AS period,
                       count(*) AS dossiers, {measures}
                FROM milestones WHERE {where}
                GROUP BY GROUPING SETS ((date_trunc('month', sent_date)), ())
                ORDER BY date_trunc('month', sent_date) NULLS LAST""",
            params,
        )
        out = [{k: (float(v) if k.endswith("_minutes") and v is not None else v) for k, v in r.items()} for r in rows]
        return out or [{"period": "total", "dossiers": 0, **{
            f"{name}_{m}": (0 if m == "count" else None) for name, _, _ in INTERVALS for m in ("count", "median_minutes")}}]

    def status(self) -> ProjectionStatus:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            return projection_status(curs, MilestonesProjection.name, MilestonesProjection.topics)


class MilestonesProjection(Projection[PostgresMilestonesView]):
    """Keeps each dossier's milestones in step with its events."""

    name = "milestones"
    topics = ("relais:Dossier.Created", "relais:Dossier.DraftEdited", *(f"relais:Dossier.{e}" for e in FOLDED))

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        name = type(domain_event).__name__
        if name not in FOLDED:
            self.view.apply(tracking)
            return
        data = event_summary(domain_event)
        self.view.apply(tracking, lambda c: self.view.write(
            c, domain_event.originator_id, name, data.pop("occurred_at", None), data,
        ))

    @process_event.register
    def _(self, e: Dossier.Created, tracking: Tracking) -> None:
        requester = (e.requester or {}).get("establishment_id")
        self.view.apply(tracking, lambda c: c.execute(
            """INSERT INTO milestones (dossier_id, workflow, requester_id, state) VALUES (%s, %s, %s, '{}')
               ON CONFLICT (dossier_id) DO NOTHING""",
            (e.originator_id, e.workflow, requester or None),
        ))

    @process_event.register
    def _(self, e: Dossier.DraftEdited, tracking: Tracking) -> None:
        workflow = (e.changes or {}).get("workflow")
        if not workflow:
            self.view.apply(tracking)
            return
        self.view.apply(tracking, lambda c: c.execute(
            "UPDATE milestones SET workflow = %s WHERE dossier_id = %s", (workflow, e.originator_id),
        ))
