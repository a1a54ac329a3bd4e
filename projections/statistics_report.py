"""The regulatory statistics (tender annex tables) computed from the statistics read model.

Definitions (also in README.md):

- a dossier counts once, on the Europe/Paris date of its first sending; a send (dossier ×
  recipient) counts on the Paris date of its own sending;
- each calendar year's part of the period is compared with the same span one year earlier
  (29 February → 28 February), variation in % with two decimals, null when the earlier span
  has no dossier;
- answer delay of a dossier: its first opinion minus its first sending, over the sends in scope,
  in minutes; median and 90th percentile interpolated (PostgreSQL `percentile_cont`, Excel
  PERCENTILE.INC), answered dossiers only, in the year of the dossier's sending;
- a send is accepted when its recipient accepted it or answered it, declined when declined;
- `as_of`: only facts whose event was recorded before the end of that day in Paris.

Deadlines (table `deadlines`, per workflow and year of sending, sends in scope): a send's deadline is
the last one recorded (its sending's, or its last forward's: the accept delay restarts, the answer
deadline promised stays). Sends without one (imported history, sent before deadlines existed) are
counted apart (`without_deadline`), never as late. Of the sends with a deadline:

- answered in time: opinion at or before `answer_by`; late: after it;
- declined (and not answered): not answered — counts against the share;
- withdrawn: the dossier cancelled, or closed (say, on another recipient's opinion), before
  `answer_by` and without an answer from this send — left out of the share;
- unanswered: no opinion, not declined, `answer_by` passed (before the end of the `as_of` day, or now)
  and not withdrawn before it;
- open: none of these yet (the deadline is still running) — left out of the share;
- `within_deadline_pct` = in time / (in time + late + declined + unanswered);
- accepted in time: taken in charge (accepted, or answered without accepting) since the deadline
  last started, at or before `accept_by`; `within_accept_pct` = accepted in time / the sends taken in
  charge, declined, or whose `accept_by` passed (withdrawn before `accept_by` left out);
- escalations: `Escalated` events of these sends (`escalated_sends`: sends escalated at least once);
- answer delay: opinion minus sending, in minutes (median, p90), answered sends with a deadline,
  beside the median answer delay they were given (`deadline_median_minutes`).

With `as_of`, a send has a deadline if one was recorded by then, and its times are the last recorded
(a forward recorded later moves `accept_by`; `answer_by` never moves once set).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol
from uuid import UUID

from psycopg.abc import Params
from psycopg.rows import DictRow

from domain.cells import neutralise_formula
from domain.values import PARIS, Workflow

TIMEZONE = PARIS.key
SIDES = ("any", "requester", "recipient")
WORKFLOW_ORDER = {w.value: i for i, w in enumerate(Workflow)}
SOURCE_ORDER = {s: i for i, s in enumerate(("dicom_store", "pacs_retrieve", "file_import", "none"))}
INFINITY = datetime.max.replace(tzinfo=PARIS)


@dataclass(frozen=True)
class StatsQuery:
    """What to compute: a period of Paris dates and optional filters."""

    date_from: date
    date_to: date
    as_of: date | None = None
    establishment_id: UUID | None = None
    establishment_finess: str | None = None
    department: str | None = None
    side: str = "any"  # which side the establishment/department filters look at
    workflow: str | None = None

    def __post_init__(self) -> None:
        if self.date_from > self.date_to:
            raise ValueError("période vide : la date de début est après la date de fin")
        if self.side not in SIDES:
            raise ValueError(f"côté inconnu « {self.side} » (attendu : {', '.join(SIDES)})")

    @property
    def as_of_limit(self) -> datetime:
        """Facts recorded strictly before this moment count (end of the as-of day in Paris)."""
        if self.as_of is None:
            return INFINITY
        return datetime.combine(self.as_of + timedelta(days=1), time(0), tzinfo=PARIS)


def year_earlier(day: date, *, end: bool) -> date:
    """The same day one year earlier; 29 February becomes 28 February (end) or 1 March (start)."""
    try:
        return day.replace(year=day.year - 1)
    except ValueError:
        return date(day.year - 1, 2, 28) if end else date(day.year - 1, 3, 1)


def year_spans(lo: date, hi: date) -> list[tuple[int, date, date]]:
    return [(y, max(lo, date(y, 1, 1)), min(hi, date(y, 12, 31))) for y in range(lo.year, hi.year + 1)]


def pct(part: int | float, whole: int | float) -> float | None:
    """part/whole in %, two decimals, half up; None when whole is 0."""
    if not whole:
        return None
    value = Decimal(part) * 100 / Decimal(whole)
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def variation(current: int, earlier: int) -> float | None:
    return pct(current - earlier, earlier)


def _minutes(value: float | None) -> float | None:
    if value is None:
        return None
    return float(Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


# ------------------------------------------------------------------------- SQL


class Rows(Protocol):
    """Where the report's queries run: one state of the statistics tables (a `Snapshot`)."""

    def fetch(self, sql: str, params: Params = ..., /) -> list[DictRow]: ...


class Snapshots(Protocol):
    """The statistics read model, as a report reads it (`PostgresStatisticsView`)."""

    def snapshot(self) -> AbstractContextManager[Rows]: ...


def _scope(q: StatsQuery, *, sends: bool) -> str:
    """WHERE conditions of the filters; `sends`: a send row `s` is in scope (else a dossier `d`).

    Sends carry their dossier's workflow, requester and requester department (copied by the
    projection), so that the sends' figures need no join.
    """
    conds = []
    row = "s" if sends else "d"
    if q.workflow:
        conds.append(f"{row}.workflow = %(workflow)s")
    for value, requester, recipient in (
        (q.establishment_id, f"{row}.requester_id = %(est)s", "s.recipient_id = %(est)s"),
        (q.department, f"{row}.requester_department = %(dep)s", "s.department = %(dep)s"),
    ):
        if value is None:
            continue
        if not sends:  # a dossier is in scope through any of its sends recorded by then (a hashed subplan)
            recipient = (
                f"d.id IN (SELECT s.dossier_id FROM stats_sends s WHERE s.sent_recorded_at < %(as_of)s AND {recipient})"
            )
        conds.append({"requester": requester, "recipient": recipient}.get(q.side, f"({requester} OR {recipient})"))
    return "".join(f" AND {c}" for c in conds)


def _scoped(q: StatsQuery) -> bool:
    return q.establishment_id is not None or q.department is not None


def now() -> datetime:
    """The moment deadlines still running are compared with (a deadline passes without any event)."""
    return datetime.now(PARIS)


def running_until(q: StatsQuery) -> datetime:
    """Deadlines passed by this moment count as passed: the end of the as-of day, or now."""
    return min(q.as_of_limit, now())


def _params(q: StatsQuery) -> dict[str, Any]:
    return {
        "as_of": q.as_of_limit, "now": running_until(q), "from": q.date_from, "to": q.date_to,
        "lo": year_earlier(q.date_from, end=False), "workflow": q.workflow,
        "est": q.establishment_id, "dep": q.department,
    }


def _daily(db: Rows, q: StatsQuery) -> list[DictRow]:
    return db.fetch(
        f"""SELECT d.sent_date AS day, d.workflow, count(*) AS n FROM stats_dossiers d
            WHERE d.sent_recorded_at < %(as_of)s AND d.sent_date BETWEEN %(lo)s AND %(to)s {_scope(q, sends=False)}
            GROUP BY 1, 2""",
        _params(q),
    )


def _sends(db: Rows, q: StatsQuery) -> list[DictRow]:
    return db.fetch(
        f"""SELECT extract(year FROM s.sent_date)::int AS year, s.workflow,
                   coalesce(s.requester_department, '') AS requester_department,
                   coalesce(s.department, '') AS recipient_department,
                   coalesce(s.region, '') AS region, coalesce(s.channel, '') AS channel,
                   count(*) AS sends,
                   count(*) FILTER (WHERE s.accepted_recorded_at < %(as_of)s OR s.answered_recorded_at < %(as_of)s) AS accepted,
                   count(*) FILTER (WHERE s.declined_recorded_at < %(as_of)s) AS declined,
                   count(*) FILTER (WHERE s.answered_recorded_at < %(as_of)s) AS answered
            FROM stats_sends s
            WHERE s.sent_recorded_at < %(as_of)s AND s.sent_date BETWEEN %(from)s AND %(to)s {_scope(q, sends=True)}
            GROUP BY 1, 2, 3, 4, 5, 6""",
        _params(q),
    )


def _imaging(db: Rows, q: StatsQuery) -> list[DictRow]:
    return db.fetch(
        f"""SELECT coalesce(e.finess, '') AS finess, i.imaging_source, i.dossiers
            FROM (SELECT d.requester_id, d.imaging_source, count(*) AS dossiers FROM stats_dossiers d
                  WHERE d.sent_recorded_at < %(as_of)s AND d.sent_date BETWEEN %(from)s AND %(to)s {_scope(q, sends=False)}
                  GROUP BY 1, 2) AS i
            LEFT JOIN stats_establishments e ON e.id = i.requester_id""",
        _params(q),
    )


def _delays(db: Rows, q: StatsQuery) -> list[DictRow]:
    stats = """count(*) AS answered,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM delay) / 60) AS median,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM delay) / 60) AS p90"""
    if q.as_of is None and not _scoped(q):
        # every send, as they stand now: the first answer kept on the dossier row
        return db.fetch(
            f"""SELECT workflow, year, {stats} FROM (
                  SELECT d.workflow, extract(year FROM d.sent_date)::int AS year, d.first_answer_at - d.sent_at AS delay
                  FROM stats_dossiers d
                  WHERE d.first_answer_at IS NOT NULL AND d.sent_date BETWEEN %(from)s AND %(to)s {_scope(q, sends=False)}
                ) AS per_dossier GROUP BY 1, 2""",
            _params(q),
        )
    return db.fetch(
        f"""WITH per_dossier AS (
              SELECT d.workflow, extract(year FROM d.sent_date)::int AS year,
                     min(s.answered_at) FILTER (WHERE s.answered_recorded_at < %(as_of)s) - min(s.sent_at) AS delay
              FROM stats_dossiers d JOIN stats_sends s ON s.dossier_id = d.id
              WHERE d.sent_recorded_at < %(as_of)s AND d.sent_date BETWEEN %(from)s AND %(to)s
                    AND s.sent_recorded_at < %(as_of)s {_scope(q, sends=True)}
              GROUP BY d.id, d.workflow, d.sent_date)
            SELECT workflow, year, {stats} FROM per_dossier WHERE delay IS NOT NULL GROUP BY 1, 2""",
        _params(q),
    )


def _deadlines(db: Rows, q: StatsQuery) -> list[DictRow]:
    """The sends with a deadline by workflow and year (the partial index: none in an imported history)."""
    return db.fetch(
        f"""WITH f AS (
              SELECT extract(year FROM s.sent_date)::int AS year, s.workflow, s.sent_at, s.accept_by, s.answer_by,
                     CASE WHEN s.answered_recorded_at < %(as_of)s THEN s.answered_at END AS answered_at,
                     coalesce(s.declined_recorded_at < %(as_of)s, false) AS declined,
                     CASE WHEN s.ended_recorded_at < %(as_of)s THEN s.ended_at END AS ended_at,
                     CASE WHEN s.taken_recorded_at < %(as_of)s THEN s.taken_at END AS taken_at,
                     coalesce(s.escalated_recorded_at < %(as_of)s, false) AS escalated,
                     CASE WHEN s.escalations_recorded_at IS NULL THEN 0
                          ELSE (SELECT count(*) FROM unnest(s.escalations_recorded_at) AS r WHERE r < %(as_of)s) END
                       AS escalations
              FROM stats_sends s
              WHERE s.deadline_recorded_at IS NOT NULL AND s.deadline_recorded_at < %(as_of)s
                    AND s.sent_recorded_at < %(as_of)s AND s.sent_date BETWEEN %(from)s AND %(to)s
                    {_scope(q, sends=True)}),
            c AS (
              SELECT f.*,
                     answered_at IS NULL AND NOT declined AND coalesce(ended_at < answer_by, false) AS withdrawn,
                     taken_at IS NULL AND NOT declined AND coalesce(ended_at < accept_by, false) AS accept_withdrawn
              FROM f)
            SELECT year, workflow, count(*) AS with_deadline,
                   count(*) FILTER (WHERE answered_at <= answer_by) AS answered_in_time,
                   count(*) FILTER (WHERE answered_at > answer_by) AS answered_late,
                   count(*) FILTER (WHERE answered_at IS NULL AND declined) AS declined,
                   count(*) FILTER (WHERE withdrawn) AS withdrawn,
                   count(*) FILTER (WHERE answered_at IS NULL AND NOT declined AND NOT withdrawn
                                    AND answer_by < %(now)s) AS unanswered,
                   count(*) FILTER (WHERE taken_at <= accept_by) AS accepted_in_time,
                   count(*) FILTER (WHERE taken_at IS NOT NULL
                                    OR (NOT accept_withdrawn AND (declined OR accept_by < %(now)s))) AS accept_due,
                   count(*) FILTER (WHERE escalated) AS escalated_sends,
                   sum(escalations)::int AS escalations,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM answered_at - sent_at) / 60)
                     FILTER (WHERE answered_at IS NOT NULL) AS median,
                   percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM answered_at - sent_at) / 60)
                     FILTER (WHERE answered_at IS NOT NULL) AS p90,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM answer_by - sent_at) / 60)
                     FILTER (WHERE answered_at IS NOT NULL) AS deadline_median
            FROM c GROUP BY 1, 2""",
        _params(q),
    )


def deadline_rows(outcomes: dict[tuple[str, int], Outcomes], deadlines: list[DictRow]) -> list[dict[str, Any]]:
    """One row per workflow and year with sends: their deadlines kept or missed (see the module's text)."""
    found = {(r["workflow"], r["year"]): r for r in deadlines}
    rows = []
    for (workflow, year), o in sorted(outcomes.items(), key=lambda kv: (kv[0][1], WORKFLOW_ORDER.get(kv[0][0], 99))):
        d = found.get((workflow, year))
        n = d["with_deadline"] if d else 0
        in_time, late, declined, unanswered = (
            (d["answered_in_time"], d["answered_late"], d["declined"], d["unanswered"]) if d else (0, 0, 0, 0)
        )
        withdrawn = d["withdrawn"] if d else 0
        accepted, accept_due = (d["accepted_in_time"], d["accept_due"]) if d else (0, 0)
        rows.append({
            "workflow": workflow, "year": year, "sends": o.sends, "without_deadline": o.sends - n, "with_deadline": n,
            "answered_in_time": in_time, "answered_late": late, "declined": declined, "unanswered": unanswered,
            "withdrawn": withdrawn, "open": n - in_time - late - declined - unanswered - withdrawn,
            "within_deadline_pct": pct(in_time, in_time + late + declined + unanswered),
            "accepted_in_time": accepted, "accept_due": accept_due, "within_accept_pct": pct(accepted, accept_due),
            "escalated_sends": d["escalated_sends"] if d else 0, "escalations": d["escalations"] if d else 0,
            "median_minutes": _minutes(d["median"]) if d else None, "p90_minutes": _minutes(d["p90"]) if d else None,
            "deadline_median_minutes": _minutes(d["deadline_median"]) if d else None,
        })
    return rows


# ------------------------------------------------------------------------- report


@dataclass
class Outcomes:
    """What became of the sends of one workflow and year."""

    sends: int = 0
    accepted: int = 0
    declined: int = 0
    answered: int = 0

    def add(self, row: DictRow) -> None:
        self.sends += row["sends"]
        self.accepted += row["accepted"]
        self.declined += row["declined"]
        self.answered += row["answered"]


def build_report(view: Snapshots, q: StatsQuery) -> dict[str, Any]:
    """Every table of the annex for this query, as plain JSON-ready data (no patient data)."""
    with view.snapshot() as db:
        daily, sends, imaging, delays = _daily(db, q), _sends(db, q), _imaging(db, q), _delays(db, q)
        deadlines = _deadlines(db, q)

    by_day: dict[date, dict[str, int]] = defaultdict(dict)
    for r in daily:
        by_day[r["day"]][r["workflow"]] = r["n"]

    def count(lo: date, hi: date, workflow: str | None = None) -> int:
        return sum(
            (sum(w.values()) if workflow is None else w.get(workflow, 0))
            for day, w in by_day.items() if lo <= day <= hi
        )

    dossiers_by_year: list[dict[str, Any]] = []
    by_workflow: list[dict[str, Any]] = []
    for year, lo, hi in year_spans(q.date_from, q.date_to):
        elo, ehi = year_earlier(lo, end=False), year_earlier(hi, end=True)
        total, earlier = count(lo, hi), count(elo, ehi)
        dossiers_by_year.append({
            "year": year, "dossiers": total,
            "compared_to": {"from": elo.isoformat(), "to": ehi.isoformat(), "dossiers": earlier},
            "variation_pct": variation(total, earlier),
        })
        workflows = {w for day, ws in by_day.items() if elo <= day <= hi for w in ws}
        for workflow in sorted(workflows, key=lambda w: WORKFLOW_ORDER.get(w, 99)):
            n, before = count(lo, hi, workflow), count(elo, ehi, workflow)
            if n or before:
                by_workflow.append({
                    "workflow": workflow, "year": year, "dossiers": n,
                    "variation_pct": variation(n, before), "share_pct": pct(n, total),
                })

    requester: dict[str, int] = defaultdict(int)
    recipient: dict[str, int] = defaultdict(int)
    inter: dict[tuple[str, str], int] = defaultdict(int)
    outcomes: dict[tuple[str, int], Outcomes] = defaultdict(Outcomes)
    for r in sends:
        requester[r["requester_department"]] += r["sends"]
        recipient[r["recipient_department"]] += r["sends"]
        if r["region"] and r["region"] != "OCC":
            inter[(r["channel"], r["region"])] += r["sends"]
        outcomes[(r["workflow"], r["year"])].add(r)

    per_est: dict[str, int] = defaultdict(int)
    for r in imaging:
        per_est[r["finess"]] += r["dossiers"]

    return {
        "period": {"from": q.date_from.isoformat(), "to": q.date_to.isoformat(), "timezone": TIMEZONE},
        "filters": {
            "as_of": q.as_of.isoformat() if q.as_of else None,
            "establishment": q.establishment_finess, "department": q.department,
            "side": q.side, "workflow": q.workflow,
        },
        "totals": {"dossiers": count(q.date_from, q.date_to), "sends": sum(requester.values())},
        "dossiers_by_year": dossiers_by_year,
        "dossiers_by_workflow_year": by_workflow,
        "sends_by_department": {
            "requester": _ranked(requester, "department", "sends"),
            "recipient": _ranked(recipient, "department", "sends"),
        },
        "imaging_source_by_establishment": [
            {"finess": r["finess"], "imaging_source": r["imaging_source"], "dossiers": r["dossiers"],
             "share_pct": pct(r["dossiers"], per_est[r["finess"]])}
            for r in sorted(imaging, key=lambda r: (r["finess"], SOURCE_ORDER.get(r["imaging_source"], 9)))
        ],
        "inter_regional": [
            {"channel": c, "region": g, "sends": n}
            for (c, g), n in sorted(inter.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "answer_delay": [
            {"workflow": r["workflow"], "year": r["year"], "answered": r["answered"],
             "median_minutes": _minutes(r["median"]), "p90_minutes": _minutes(r["p90"])}
            for r in sorted(delays, key=lambda r: (r["year"], WORKFLOW_ORDER.get(r["workflow"], 99)))
        ],
        "acceptance": [
            {"workflow": w, "year": y, "sends": o.sends, "accepted": o.accepted, "declined": o.declined,
             "answered": o.answered, "declined_pct": pct(o.declined, o.sends)}
            for (w, y), o in sorted(outcomes.items(), key=lambda kv: (kv[0][1], WORKFLOW_ORDER.get(kv[0][0], 99)))
        ],
        "deadlines": deadline_rows(outcomes, deadlines),
    }


def _ranked(counts: dict[str, int], key: str, measure: str) -> list[dict[str, str | int]]:
    return [{key: k, measure: n} for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


# ------------------------------------------------------------------------- CSV

TABLES: dict[str, tuple[str, ...]] = {
    "dossiers_by_year": ("year", "dossiers", "compared_from", "compared_to", "compared_dossiers", "variation_pct"),
    "dossiers_by_workflow_year": ("workflow", "year", "dossiers", "variation_pct", "share_pct"),
    "sends_by_requester_department": ("department", "sends"),
    "sends_by_recipient_department": ("department", "sends"),
    "imaging_source_by_establishment": ("finess", "imaging_source", "dossiers", "share_pct"),
    "inter_regional": ("channel", "region", "sends"),
    "answer_delay": ("workflow", "year", "answered", "median_minutes", "p90_minutes"),
    "acceptance": ("workflow", "year", "sends", "accepted", "declined", "answered", "declined_pct"),
    "deadlines": (
        "workflow", "year", "sends", "without_deadline", "with_deadline", "answered_in_time", "answered_late",
        "declined", "unanswered", "withdrawn", "open", "within_deadline_pct", "accepted_in_time", "accept_due",
        "within_accept_pct", "escalated_sends", "escalations", "median_minutes", "p90_minutes",
        "deadline_median_minutes",
    ),
}
KEYS = ("year", "workflow", "department", "finess", "imaging_source", "channel", "region")
LONG_COLUMNS = ("table", *KEYS, "measure", "value")


def table_rows(report: dict[str, Any], table: str) -> list[dict[str, Any]]:
    """The rows of one table, flat (compared_to.from → compared_from …)."""
    if table == "dossiers_by_year":
        return [
            {"year": r["year"], "dossiers": r["dossiers"], "compared_from": r["compared_to"]["from"],
             "compared_to": r["compared_to"]["to"], "compared_dossiers": r["compared_to"]["dossiers"],
             "variation_pct": r["variation_pct"]}
            for r in report["dossiers_by_year"]
        ]
    rows: list[dict[str, Any]]
    if table == "sends_by_requester_department":
        rows = report["sends_by_department"]["requester"]
    elif table == "sends_by_recipient_department":
        rows = report["sends_by_department"]["recipient"]
    elif table in TABLES:
        rows = report[table]
    else:
        raise ValueError(f"tableau inconnu « {table} » (connus : {', '.join(TABLES)})")
    return rows


def _cell(value: Any, decimal_comma: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
        return text.replace(".", ",") if decimal_comma else text
    return neutralise_formula(str(value))


def to_csv(report: dict[str, Any], table: str | None = None, *, excel: bool = False) -> str:
    """All tables in one long CSV (`table`, keys…, `measure`, `value`), or one table in wide form.

    `excel`: for French Excel — BOM, semicolons, decimal commas.
    """
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";" if excel else ",", lineterminator="\r\n")
    if table is not None:
        rows = table_rows(report, table)
        columns = TABLES[table]
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c), excel) for c in columns])
    else:
        writer.writerow(LONG_COLUMNS)
        for measure, value in (*report["period"].items(), *report["filters"].items()):
            writer.writerow(["period", *([""] * len(KEYS)), measure, _cell(value, excel)])
        for name, columns in TABLES.items():
            for row in table_rows(report, name):
                keys = [_cell(row.get(k), excel) if k in row and k in columns else "" for k in KEYS]
                for measure in columns:
                    if measure not in KEYS:
                        writer.writerow([name, *keys, measure, _cell(row.get(measure), excel)])
    return ("\ufeff" if excel else "") + out.getvalue()


def with_filters(q: StatsQuery, **changes: Any) -> StatsQuery:
    return replace(q, **changes)
