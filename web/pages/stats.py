"""Analyst pages: the regulatory statistics with filters (htmx), SVG charts and downloads.

Analyst role only. Everything here comes from the statistics read model, which holds no
patient data: codes, establishments, departments, dates and counts.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from datetime import date, datetime
from typing import Annotated, Any, TypedDict
from urllib.parse import urlencode

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Template
from markupsafe import Markup

from application.history import IMPORTED_ESTABLISHMENT_NAME
from domain.directory import establishment_id
from domain.errors import InvalidFieldError
from domain.identifiers import check_department, check_finess
from domain.values import PARIS, WORKFLOW_LABELS, Role, Workflow, code
from projections import statistics_report
from projections.milestones import StrokeQuery, stroke_csv
from projections.statistics import EstablishmentRow, PostgresStatisticsView
from projections.statistics_report import SIDES, TABLES, WORKFLOW_ORDER, StatsQuery, build_report, pct, to_csv
from web import charts
from web.errors import is_htmx
from web.geo import department_label, region_label
from web.guards import requires_role
from web.services import Services

ANALYST = requires_role(Role.ANALYST)

SOURCES = {
    "dicom_store": "Serveur local (C-STORE)", "pacs_retrieve": "PACS (requête/récupération)",
    "file_import": "Import de fichiers (CD-ROM…)", "none": "Sans imagerie",
}
CHANNELS = {
    "national_network": "Réseau national", "attached_professional": "Professionnel rattaché",
    "email_invitation": "Invitation par courriel", "": "Non renseigné",
}
SIDE_LABELS = {"any": "requérant ou requis", "requester": "requérant", "recipient": "requis"}
TABLE_LABELS = {
    "dossiers_by_year": "Télédossiers par année",
    "dossiers_by_workflow_year": "Télédossiers par workflow et par année",
    "sends_by_requester_department": "Envois par département requérant",
    "sends_by_recipient_department": "Envois par département requis",
    "imaging_source_by_establishment": "Source de l'imagerie par établissement requérant",
    "inter_regional": "Envois inter-régionaux par canal et région",
    "answer_delay": "Délai de réponse par workflow et année",
    "acceptance": "Acceptations et refus par workflow et année",
    "deadlines": "Respect des délais par workflow et année",
    "stroke": "AVC aigu : délais de la prise en charge par mois",
}
STROKE_INTERVALS = {
    "door_to_opinion": "Arrivée → avis", "sent_to_opinion": "Envoi → avis",
    "door_to_sent": "Arrivée → envoi", "sent_to_accepted": "Envoi → prise en charge",
}  # labels of projections/milestones.py INTERVALS, in its order
# What became of the sends against their deadline (report table "deadlines"), in the charts' order and colours.
DEADLINE_OUTCOMES = {
    "answered_in_time": ("Avis dans le délai", "#009e73"),
    "answered_late": ("Avis en retard", "#e69f00"),
    "unanswered": ("Sans avis, délai dépassé", "#d55e00"),
    "declined": ("Refusés", "#cc79a7"),
    "withdrawn": ("Retirés avant l'échéance", "#6b6b6b"),
    "open": ("En cours, délai non échu", "#56b4e9"),
    "without_deadline": ("Sans délai", charts.MUTED),
}

Q = Annotated[str | None, QueryParameter(required=False)]


def _day(value: str | None, field: str) -> date | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidFieldError(field, f"date invalide « {value} » (AAAA-MM-JJ attendu)") from None


FIELD_LABELS = {
    "from": "Date de début", "to": "Date de fin", "as_of": "Date d'enregistrement", "workflow": "Workflow",
    "department": "Département", "establishment": "Établissement", "side": "En tant que", "table": "Tableau",
}


def parse_query(
    date_from: str | None, date_to: str | None, as_of: str | None, workflow: str | None,
    department: str | None, establishment: str | None, side: str | None,
) -> StatsQuery:
    """The filters of the page, checked (InvalidFieldError names the field, in French: a 422)."""
    try:
        return _parse_query(date_from, date_to, as_of, workflow, department, establishment, side)
    except InvalidFieldError as e:
        raise InvalidFieldError(e.field, f"{FIELD_LABELS.get(e.field, e.field)} : {e.message}") from None


def _parse_query(
    date_from: str | None, date_to: str | None, as_of: str | None, workflow: str | None,
    department: str | None, establishment: str | None, side: str | None,
) -> StatsQuery:
    today = datetime.now(PARIS).date()
    to = _day(date_to, "to") or today
    start = _day(date_from, "from") or date(to.year, 1, 1)
    finess = check_finess(establishment, "establishment") if establishment and establishment.strip() else None
    side = (side or "any").strip()
    if side not in SIDES:
        raise InvalidFieldError("side", f"valeur inconnue « {side} »")
    try:
        return StatsQuery(
            date_from=start, date_to=to, as_of=_day(as_of, "as_of"),
            workflow=code(Workflow, workflow.strip(), "workflow") if workflow and workflow.strip() else None,
            department=check_department(department, "department") if department and department.strip() else None,
            establishment_id=establishment_id(finess) if finess else None, establishment_finess=finess, side=side,
        )
    except ValueError as e:
        if isinstance(e, InvalidFieldError):
            raise
        raise InvalidFieldError("from", str(e)) from None


def query_string(q: StatsQuery) -> dict[str, str]:
    params = {
        "from": q.date_from.isoformat(), "to": q.date_to.isoformat(),
        "as_of": q.as_of.isoformat() if q.as_of else "", "workflow": q.workflow or "",
        "department": q.department or "", "establishment": q.establishment_finess or "",
        "side": q.side if q.side != "any" else "",
    }
    return {k: v for k, v in params.items() if v}


class Freshness(TypedDict):
    position: int
    lag: int
    at: datetime


def _freshness(statistics: PostgresStatisticsView) -> Freshness:
    """Where the statistics stand: the projection's position and the events not yet in them."""
    status = statistics.status()
    return {"position": status.position, "lag": status.lag, "at": datetime.now(PARIS)}


# the labels of WORKFLOW_LABELS by the workflows' codes, as the report names them
WORKFLOW_NAMES: dict[str, str] = {w.value: label for w, label in WORKFLOW_LABELS.items()}


def _charts(report: dict[str, Any], establishments: dict[str, EstablishmentRow]) -> dict[str, Markup]:
    years = report["dossiers_by_year"]
    groups = [str(y["year"]) for y in years]
    out = {
        "years": charts.grouped_bars(
            groups,
            [("Même période un an plus tôt", [y["compared_to"]["dossiers"] for y in years]),
             ("Période", [y["dossiers"] for y in years])],
            colors=(charts.MUTED, charts.PALETTE[0]), title="Télédossiers envoyés par année",
        ),
    }
    workflows = [w.value for w in Workflow if any(r["workflow"] == w.value for r in report["dossiers_by_workflow_year"])]
    by_wy = {(r["workflow"], r["year"]): r["dossiers"] for r in report["dossiers_by_workflow_year"]}
    out["workflows"] = charts.grouped_bars(
        groups, [(WORKFLOW_NAMES.get(w, w), [by_wy.get((w, y["year"]), 0) for y in years]) for w in workflows],
        title="Télédossiers par workflow et par année", value_labels=False,
    )
    out["shares"] = charts.stacked_shares(
        [(str(y["year"]), [(w, by_wy.get((w, y["year"]), 0)) for w in workflows]) for y in years],
        workflows, {w: WORKFLOW_NAMES.get(w, w) for w in workflows}, title="Part de chaque workflow par année",
    )
    sends = report["sends_by_department"]
    out["requester_departments"] = charts.hbars(
        [(department_label(r["department"]), r["sends"]) for r in sends["requester"]],
        title="Envois par département requérant",
    )
    out["recipient_departments"] = charts.hbars(
        [(department_label(r["department"]), r["sends"]) for r in sends["recipient"]],
        title="Envois par département requis", color=charts.PALETTE[2],
    )
    per_est: dict[str, list[tuple[str, int]]] = {}
    for r in report["imaging_source_by_establishment"]:
        per_est.setdefault(r["finess"], []).append((r["imaging_source"], r["dossiers"]))
    biggest = sorted(per_est.items(), key=lambda kv: -sum(v for _, v in kv[1]))[:15]
    out.update(_deadline_charts(report))
    out["imaging"] = charts.stacked_shares(
        [(_short_name(f, establishments), parts) for f, parts in biggest], list(SOURCES), SOURCES,
        title="Source de l'imagerie des établissements requérants (les 15 plus actifs)",
    )
    return out


def deadline_totals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The deadline table summed over the years of the period, per workflow (the charts' figures)."""
    by_workflow: dict[str, dict[str, Any]] = {}
    for r in report["deadlines"]:
        total = by_workflow.setdefault(r["workflow"], {"workflow": r["workflow"]})
        for key, value in r.items():
            if isinstance(value, int) and key != "year":
                total[key] = total.get(key, 0) + value
    rows = sorted(by_workflow.values(), key=lambda t: WORKFLOW_ORDER.get(t["workflow"], 99))
    for t in rows:
        t["within_deadline_pct"] = pct(
            t["answered_in_time"], t["answered_in_time"] + t["answered_late"] + t["declined"] + t["unanswered"]
        )
        t["within_accept_pct"] = pct(t["accepted_in_time"], t["accept_due"])
    return rows


def _deadline_charts(report: dict[str, Any]) -> dict[str, Markup]:
    totals = [t for t in deadline_totals(report) if t["with_deadline"]]
    labels = [WORKFLOW_NAMES.get(t["workflow"], t["workflow"]) for t in totals]
    return {
        "deadline_shares": charts.grouped_bars(
            labels,
            [("Avis rendus dans le délai", [t["within_deadline_pct"] for t in totals]),
             ("Prises en charge dans le délai", [t["within_accept_pct"] for t in totals])],
            colors=(charts.PALETTE[2], charts.PALETTE[0]), unit="%", decimals=0, ymax=100,
            title="Part des envois traités dans le délai, par workflow (période entière)",
        ),
        "deadline_outcomes": charts.stacked_shares(
            [(WORKFLOW_NAMES.get(t["workflow"], t["workflow"]), [(k, t[k]) for k in DEADLINE_OUTCOMES if t[k]])
             for t in deadline_totals(report)],
            list(DEADLINE_OUTCOMES), {k: label for k, (label, _) in DEADLINE_OUTCOMES.items()},
            colors=[color for _, color in DEADLINE_OUTCOMES.values()],
            title="Devenir des envois face à leur délai, par workflow (période entière)",
        ),
    }


def stroke_context(services: Services, q: StatsQuery) -> dict[str, Any] | None:
    """The stroke indicators of the period (milestones read model), their chart and the filters they ignore;
    None when another workflow is chosen."""
    if q.workflow and q.workflow != Workflow.STROKE_OPINION:
        return None
    by_requester = q.establishment_id is not None and q.side in ("any", "requester")
    rows = services.milestones.stroke_indicators(StrokeQuery(
        date_from=q.date_from, date_to=q.date_to, requester_id=str(q.establishment_id) if by_requester else None,
    ))
    months = [r for r in rows if r["period"] != "total"]
    ignored = [label for label, on in (("département", bool(q.department)), ("date d'enregistrement", bool(q.as_of)),
                                       ("établissement requis", q.establishment_id is not None and not by_requester)) if on]
    chart = charts.grouped_bars(
        [r["period"] for r in months],
        [(STROKE_INTERVALS[name], [r[f"{name}_median_minutes"] for r in months]) for name in ("door_to_opinion", "sent_to_opinion")],
        colors=(charts.PALETTE[0], charts.PALETTE[2]), unit="min", decimals=0,
        title="AVC aigu : délais médians arrivée → avis et envoi → avis, par mois d'envoi (minutes)",
    ) if months else None
    return {"rows": rows, "chart": chart, "intervals": STROKE_INTERVALS, "ignored": ignored,
            "lag": services.milestones.status().lag}


def duration(minutes: float | None) -> str:
    """42 min ; 3 h 05 ; 2,5 j."""
    if minutes is None:
        return "—"
    if minutes < 60:
        return f"{charts.number(minutes, 0 if minutes >= 10 else 1)} min"
    if minutes < 48 * 60:
        total = int(round(minutes))
        return f"{total // 60} h {total % 60:02d}"
    return f"{charts.number(minutes / 1440, 1)} j"


def _short_name(finess: str, establishments: dict[str, EstablishmentRow]) -> str:
    """The establishment's name, or its FINESS while it has only the import's placeholder name."""
    e = establishments.get(finess)
    if e is None or e.name == IMPORTED_ESTABLISHMENT_NAME.format(finess=finess):
        return f"FINESS {finess}"
    return e.name


CACHE_SIZE = 32


class ReportCache:
    """Reports of one web application by (query, position of the read model, minute): the download of
    what is shown, or going back to a previous filter, costs nothing; any new event changes the key, and
    so does the minute while deadlines may pass (figures up to now, or to an as-of day not over yet)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reports: OrderedDict[tuple[StatsQuery, int, str], dict[str, Any]] = OrderedDict()

    def get(self, statistics: PostgresStatisticsView, q: StatsQuery, position: int | None = None) -> dict[str, Any]:
        if position is None:
            position = statistics.status().position
        until = statistics_report.running_until(q)
        key = (q, position, "" if until == q.as_of_limit else until.strftime("%Y-%m-%dT%H:%M"))
        with self.lock:
            if key in self.reports:
                self.reports.move_to_end(key)
                return self.reports[key]
        report = build_report(statistics, q)
        with self.lock:
            self.reports[key] = report
            while len(self.reports) > CACHE_SIZE:
                self.reports.popitem(last=False)
        return report


def report_for(
    request: Request[Any, Any, Any], services: Services, q: StatsQuery, position: int | None = None
) -> dict[str, Any]:
    cache: ReportCache | None = getattr(request.app.state, "stats_reports", None)
    if cache is None:
        cache = request.app.state.stats_reports = ReportCache()
    return cache.get(services.statistics, q, position)


def _context(request: Request[Any, Any, Any], services: Services, q: StatsQuery) -> dict[str, Any]:
    statistics = services.statistics
    establishments = {e.finess: e for e in statistics.establishments()}
    freshness = _freshness(statistics)
    report = report_for(request, services, q, freshness["position"])
    params = query_string(q)
    return {
        "report": report, "q": q, "params": params, "query": urlencode(params), "charts": _charts(report, establishments),
        "establishments": establishments, "freshness": freshness,
        "departments": sorted({e.department for e in establishments.values()}, key=lambda d: (len(d), d)),
        "workflows": WORKFLOW_LABELS, "sources": SOURCES, "channels": CHANNELS, "sides": SIDE_LABELS,
        "tables": TABLE_LABELS, "department_label": department_label, "region_label": region_label,
        "number": charts.number, "duration": duration, "day": lambda iso: date.fromisoformat(iso).strftime("%d/%m/%Y"),
        "deadline_totals": deadline_totals(report), "outcomes": DEADLINE_OUTCOMES, "stroke": stroke_context(services, q),
        "by_workflow": sorted(
            report["dossiers_by_workflow_year"], key=lambda r: (WORKFLOW_ORDER.get(r["workflow"], 99), r["year"])
        ),
    }


@get("/stats", name="stats", guards=[ANALYST], sync_to_thread=True)
def stats_page(
    request: Request[Any, Any, Any], services: NamedDependency[Services],
    date_from: Annotated[str | None, QueryParameter(name="from", required=False)] = None,
    date_to: Annotated[str | None, QueryParameter(name="to", required=False)] = None,
    as_of: Q = None, workflow: Q = None, department: Q = None, establishment: Q = None, side: Q = None,
) -> Template:
    q = parse_query(date_from, date_to, as_of, workflow, department, establishment, side)
    context = _context(request, services, q)
    if is_htmx(request):
        return HTMXBlockTemplate(template_name="stats/index.html", block_name="results", context=context)
    return Template("stats/index.html", context=context)


def _filename(q: StatsQuery, ext: str, table: str | None = None) -> str:
    parts = ["relais-statistiques", table or "", q.date_from.isoformat(), q.date_to.isoformat()]
    if q.as_of:
        parts.append(f"au-{q.as_of.isoformat()}")
    if q.establishment_finess:
        parts.append(q.establishment_finess)
    return "_".join(p for p in parts if p) + f".{ext}"


@get("/stats/export.json", guards=[ANALYST], sync_to_thread=True)
def export_json(
    request: Request[Any, Any, Any], services: NamedDependency[Services],
    date_from: Annotated[str | None, QueryParameter(name="from", required=False)] = None,
    date_to: Annotated[str | None, QueryParameter(name="to", required=False)] = None,
    as_of: Q = None, workflow: Q = None, department: Q = None, establishment: Q = None, side: Q = None,
) -> Response[bytes]:
    q = parse_query(date_from, date_to, as_of, workflow, department, establishment, side)
    report = report_for(request, services, q)
    return Response(
        json.dumps(report, indent=2, ensure_ascii=False).encode(), media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{_filename(q, "json")}"'},
    )


@get("/stats/export.csv", guards=[ANALYST], sync_to_thread=True)
def export_csv(
    request: Request[Any, Any, Any], services: NamedDependency[Services],
    date_from: Annotated[str | None, QueryParameter(name="from", required=False)] = None,
    date_to: Annotated[str | None, QueryParameter(name="to", required=False)] = None,
    as_of: Q = None, workflow: Q = None, department: Q = None, establishment: Q = None, side: Q = None,
    table: Q = None, excel: Q = None,
) -> Response[bytes]:
    q = parse_query(date_from, date_to, as_of, workflow, department, establishment, side)
    if table and table not in TABLES and table != "stroke":
        raise InvalidFieldError("table", f"Tableau : inconnu « {table} » (connus : {', '.join([*TABLES, 'stroke'])})")
    excel_fr = excel in ("1", "true", "oui")
    if table == "stroke":
        stroke = stroke_context(services, q)
        return Response(
            stroke_csv(stroke["rows"] if stroke else [], excel=excel_fr).encode("utf-8"), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{_filename(q, "csv", table)}"'},
        )
    report = report_for(request, services, q)
    return Response(
        to_csv(report, table or None, excel=excel_fr).encode("utf-8"), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{_filename(q, "csv", table)}"'},
    )


HANDLERS = [stats_page, export_json, export_csv]
