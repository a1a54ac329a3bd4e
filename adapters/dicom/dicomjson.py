"""DICOM JSON (PS3.18 F.2) of held attributes and of instance headers, for QIDO-RS and WADO-RS."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

from domain.values import Json

BULK = 4096  # values longer than this are left out of metadata (pixel data and other bulk data)

# A value held for an attribute (a QIDO-RS record's): text, a number, several codes (ModalitiesInStudy), or none.
HeldValue = str | int | float | list[str] | tuple[str, ...] | None


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"{keyword!r} is not a DICOM keyword")
    return tag


def tag_hex(keyword: str) -> str:
    return f"{_tag(keyword):08X}"


def element(keyword: str, value: HeldValue) -> Json:
    """One attribute in DICOM JSON."""
    vr = dictionary_VR(_tag(keyword))
    held: list[str | int | float | None] = list(value) if isinstance(value, list | tuple) else [value]
    values = [v for v in held if v is not None and v != ""]
    if not values:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(v)} for v in values]}
    if vr in ("IS", "SL", "SS", "UL", "US"):
        try:
            return {"vr": vr, "Value": [int(v) for v in values]}
        except (TypeError, ValueError):
            return {"vr": vr}
    if vr in ("DS", "FL", "FD"):
        return {"vr": vr, "Value": [float(v) for v in values]}
    return {"vr": vr, "Value": [str(v) for v in values]}


def result(record: Mapping[str, HeldValue], keywords: Iterable[str], extra: Json | None = None) -> Json:
    """A result item: `keywords` taken from `record` (held values), plus `extra` (DICOM JSON read from
    a header), sorted by tag."""
    out: dict[str, Json] = {}
    for kw in keywords:
        if kw in record:
            out[tag_hex(kw)] = element(kw, record[kw])
    for tag, el in (extra or {}).items():
        out.setdefault(tag, el)
    return dict(sorted(out.items()))


def header_json(path: Path, keywords: list[str] | None) -> Json:
    """DICOM JSON of `keywords` (None: every attribute but bulk data) read from an instance's header."""
    ds: Dataset = dcmread(path, stop_before_pixels=True)
    if keywords is not None:
        sub = Dataset()
        for kw in keywords:
            if kw in ds:
                sub.add(ds[kw])
        ds = sub
    return ds.to_json_dict(bulk_data_threshold=BULK, bulk_data_element_handler=lambda el: "")
