"""DICOM JSON (PS3.18 F.2) of held attributes and of instance headers, for QIDO-RS and WADO-RS."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

BULK = 4096  # values longer than this are left out of metadata (pixel data and other bulk data)


def tag_hex(keyword: str) -> str:
    return f"{tag_for_keyword(keyword):08X}"


def element(keyword: str, value: object) -> dict:
    """One attribute in DICOM JSON."""
    vr = dictionary_VR(tag_for_keyword(keyword))
    values = value if isinstance(value, list | tuple) else [value]
    values = [v for v in values if v not in (None, "")]
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


def result(record: dict, keywords: Iterable[str], extra: dict | None = None) -> dict:
    """A result item: `keywords` taken from `record` (held values), plus `extra` (DICOM JSON read from
    a header), sorted by tag."""
    out: dict[str, dict] = {}
    for kw in keywords:
        if kw in record:
            out[tag_hex(kw)] = element(kw, record[kw])
    for tag, el in (extra or {}).items():
        out.setdefault(tag, el)
    return dict(sorted(out.items()))


def header_json(path: Path, keywords: list[str] | None) -> dict:
    """DICOM JSON of `keywords` (None: every attribute but bulk data) read from an instance's header."""
    ds = dcmread(path, stop_before_pixels=True)
    if keywords is not None:
        sub = Dataset()
        for kw in keywords:
            if kw in ds:
                sub.add(ds[kw])
        ds = sub
    return ds.to_json_dict(bulk_data_threshold=BULK, bulk_data_element_handler=lambda el: "")
