"""The opinion report's HTML (web/templates/report/pdf.html), rendered with the pages' filters, for the PDF."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from application.reports import ReportMaterial
from domain.values import PARIS, Json
from web import dicom_format, present

TEMPLATES = __import__("pathlib").Path(__file__).parent / "templates"
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre",
          "décembre")
WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")


def _moment(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(PARIS)


def long_date(value: datetime | str | None) -> str:
    """« mardi 8 décembre 2026 à 05 h 12 » (Paris time)."""
    m = _moment(value)
    if m is None:
        return ""
    return f"{WEEKDAYS[m.weekday()]} {m.day}{'er' if m.day == 1 else ''} {MONTHS[m.month - 1]} {m.year} à {m:%H} h {m:%M}"


def long_day(value: date | str | None) -> str:
    """« 19 janvier 2004 » from a date, an ISO date or a DICOM DA (« 20040119 »); anything else as given."""
    if not value:
        return ""
    if isinstance(value, str):
        shown = dicom_format.dicom_date(value)  # « 19/01/2004 » when it is a date
        try:
            value = datetime.strptime(shown, "%d/%m/%Y").date()
        except ValueError:
            return shown
    return f"{value.day}{'er' if value.day == 1 else ''} {MONTHS[value.month - 1]} {value.year}"


@cache
def environment() -> Environment:
    """The pages' filters and globals (web/present.py: labels, plurals, the form macros' `form_definition`) plus
    the report's long French dates; templates auto-escaped."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    present.register(env)
    env.filters.update(long_date=long_date, long_day=long_day)
    return env


def context(m: ReportMaterial) -> dict[str, Any]:
    d, s = m.dossier, m.send
    opinion: Json = s.get("opinion") or {}
    last = m.history[-1].occurred_at if m.history else d.created_on  # the report's own date: its last fact
    return {
        "d": d, "s": s, "opinion": opinion, "people": m.people, "establishments": m.establishments,
        "messages": [x for x in d.messages if x["send_id"] == s["send_id"]],
        "documents": {doc["document_id"]: doc for doc in d.documents},
        "studies": {st["study_instance_uid"]: st for st in d.imaging},
        "incidents": m.incidents, "version": m.version,
        "made_at": last, "made_at_iso": (last or datetime.now(UTC)).isoformat(timespec="seconds"),
        "accepted": next((h for h in m.history if h.event == "Accepted" and h.data.get("send_id") == s["send_id"]), None),
        "report_id": m.report_id,
    }


def render(material: ReportMaterial) -> str:
    """The report of one send as a complete HTML document (styles inline, nothing fetched)."""
    return environment().get_template("report/pdf.html").render(context(material))
