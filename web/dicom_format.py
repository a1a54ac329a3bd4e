"""DICOM values as French readers expect them: DA/TM dates and times, and names for studies and series."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

_DA = re.compile(r"^(\d{4})[.\-]?(\d{2})[.\-]?(\d{2})$")  # DA, and the ACR-NEMA « 2004.01.19 » still met
_TM = re.compile(r"^(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?(?:[.,]\d{1,6})?$")  # TM, with the old colons too


def dicom_date(value: str | date | None) -> str:
    """« 20040119 » (DICOM DA) → « 19/01/2004 »; a range « 20040101-20040131 » → « du … au … »; a value that
    is not a date is shown as received (never hidden: it is what the images say); None/"" → ""."""
    if value is None or value == "":
        return ""
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    text = str(value).strip()
    if "-" in text and len(text) > 10:
        start, _, end = text.partition("-")
        shown = [dicom_date(part) for part in (start, end)]
        if shown[0] and shown[1]:
            return f"du {shown[0]} au {shown[1]}"
        return f"depuis le {shown[0]}" if shown[0] else f"jusqu'au {shown[1]}"
    m = _DA.match(text)
    if not m:
        return text
    year, month, day = (int(g) for g in m.groups())
    try:
        return date(year, month, day).strftime("%d/%m/%Y")
    except ValueError:
        return text


def dicom_time(value: str | None) -> str:
    """« 143205.123 » (DICOM TM) → « 14:32 »; « 09 » → « 09:00 »; anything else as received."""
    if not value:
        return ""
    text = str(value).strip()
    m = _TM.match(text)
    if not m or int(m.group(1)) > 23 or int(m.group(2) or 0) > 59:
        return text
    return f"{m.group(1)}:{m.group(2) or '00'}"


def _count(n: int, one: str) -> str:
    return f"{n} {one if abs(n) <= 1 else one + 's'}"


def study_title(study: Mapping[str, Any] | Any) -> str:
    """What a link to a study says: « Examen CT du 19/01/2004 — SCANNER CEREBRAL ». Its modalities and date
    always, for its description alone may say nothing to a reader (« e+1 »); « Examen d'imagerie » without any."""
    modalities = ", ".join(m for m in (_get(study, "modalities") or ()) if m)
    when = dicom_date(_get(study, "study_date"))
    head = "Examen" + (f" {modalities}" if modalities else "") + (f" du {when}" if when else "")
    description = str(_get(study, "description") or "").strip()
    if head == "Examen":
        return description or "Examen d'imagerie"
    return head + (f" — {description}" if description else "")


def series_title(series: Mapping[str, Any] | Any) -> str:
    """« Série n° 3 — e+1 (CT, 33 images) »: the series' number, modality and size always, its description
    when it has one (a description alone, « e+1 », tells a reader nothing)."""
    number, modality = _get(series, "number"), _get(series, "modality")
    count = _get(series, "count")
    if count is None:
        count = _get(series, "instance_count")
    facts = ", ".join(x for x in (modality or "", _count(int(count), "image") if count is not None else "") if x)
    head = f"Série n° {number}" if number not in (None, "") else "Série"
    description = str(_get(series, "description") or "").strip()
    return head + (f" — {description}" if description else "") + (f" ({facts})" if facts else "")


def _get(item: Mapping[str, Any] | Any, key: str) -> Any:
    return item.get(key) if isinstance(item, Mapping) else getattr(item, key, None)


def register(filters: dict[str, Any]) -> None:
    """The Jinja filters of this module (web/present.py registers them)."""
    filters.update(dicom_date=dicom_date, dicom_time=dicom_time, study_title=study_title, series_title=series_title)
