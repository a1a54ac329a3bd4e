"""The QIDO-RS query language (PS3.18 8.3.4, matching as PS3.4 C.2.2.2): query strings parsed into filters."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from pydicom.datadict import dictionary_has_tag, dictionary_keyword, tag_for_keyword

from adapters.dicom.dicomjson import HeldValue
from domain.imaging import UID_RE

T = TypeVar("T")

DEFAULT_LIMIT = 1000
"""Results of one search when the client names no limit: a whole CT series' instances in one answer
for most studies; past it the answer says how many more there are and clients page with `offset`."""
MAX_LIMIT = 1000  # a larger `limit` is served as this one (PS3.18: the origin server's maximum)
MAX_PATTERN = 256  # characters of a matching value: no DICOM value it is matched against is longer

LEVELS = ("study", "series", "instance")

# Matching keys: keyword -> (level, kind). Kinds: uid (list of UIDs), text (wildcards, case-sensitive),
# ci (wildcards, case-insensitive: names and descriptions), date (single or range), cs (list of codes),
# int (list of integers).
MATCHING = {
    "StudyInstanceUID": ("study", "uid"), "PatientID": ("study", "text"), "PatientName": ("study", "ci"),
    "StudyDate": ("study", "date"), "AccessionNumber": ("study", "text"), "ModalitiesInStudy": ("study", "cs"),
    "StudyDescription": ("study", "ci"), "PatientBirthDate": ("study", "date"),
    "SeriesInstanceUID": ("series", "uid"), "Modality": ("series", "cs"), "SeriesNumber": ("series", "int"),
    "SeriesDescription": ("series", "ci"),
    "SOPInstanceUID": ("instance", "uid"), "SOPClassUID": ("instance", "uid"), "InstanceNumber": ("instance", "int"),
}

# Returned without asking, per level (PS3.18 Table 6.7.1-2, among what Relais holds)
DEFAULT = {
    "study": ["StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
              "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDescription",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "RetrieveURL"],
    "series": ["Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
               "NumberOfSeriesRelatedInstances", "RetrieveURL"],
    "instance": ["SOPClassUID", "SOPInstanceUID", "InstanceNumber", "AvailableTransferSyntaxUID", "RetrieveURL"],
}

# With includefield=all: besides what is held, these are read from an instance's header
ALL_FROM_HEADER = {
    "study": ["StudyID", "InstitutionName", "PatientAge", "IssuerOfPatientID", "OtherPatientIDs"],
    "series": ["SeriesDate", "SeriesTime", "BodyPartExamined", "ProtocolName", "PerformedProcedureStepStartDate",
               "PerformedProcedureStepStartTime", "Laterality"],
    "instance": None,  # the whole header (without bulk data)
}


class QueryError(ValueError):
    """A QIDO-RS query the server refuses (HTTP 400), with the reason."""


def keyword_of(key: str) -> str:
    """The DICOM keyword named by a query key: a keyword (`PatientName`) or a tag (`00100010`)."""
    key = key.strip()
    if "." in key:
        raise QueryError(f"« {key} » : les attributs de séquences ne sont pas pris en charge")
    if re.fullmatch(r"[0-9A-Fa-f]{8}", key):
        tag = int(key, 16)
        if dictionary_has_tag(tag):
            return dictionary_keyword(tag)
        raise QueryError(f"« {key} » : étiquette DICOM inconnue")
    if tag_for_keyword(key) is None:
        raise QueryError(f"« {key} » : attribut DICOM inconnu (mot-clé ou étiquette de 8 chiffres hexadécimaux)")
    return key


def _unknown(key: str) -> bool:
    """A parameter that is neither one of PS3.18's nor a DICOM attribute (keyword, tag or sequence path)."""
    key = key.strip()
    return "." not in key and not re.fullmatch(r"[0-9A-Fa-f]{8}", key) and tag_for_keyword(key) is None


def _values(raw: str) -> list[str]:
    return [v.strip() for v in re.split(r"[,\\]", raw) if v.strip()]


def _find(segment: str, text: str, start: int) -> int:
    """Where `segment` (literal characters and `?`) first occurs in `text` from `start`; -1 if nowhere."""
    for at in range(start, len(text) - len(segment) + 1):
        if all(p == "?" or p == c for p, c in zip(segment, text[at : at + len(segment)], strict=True)):
            return at
    return -1


def wildcard_match(pattern: str, text: str) -> bool:
    """PS3.4 C.2.2.2.4 wildcard matching of the whole `text`: `*` any run of characters, `?` one.
    Linear in the pattern times the text, whatever the pattern: the pieces between stars are found
    left to right, each at its first place (the leftmost place leaves the most room to the rest, so
    no other place needs trying) — a regular expression from user input could backtrack for ever."""
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return len(text) == len(pattern) and _find(pattern, text, 0) == 0
    first, *middle, last = pieces
    if len(first) + len(last) > len(text) or _find(first, text[: len(first)], 0) != 0:
        return False
    if last and _find(last, text[len(text) - len(last) :], 0) != 0:
        return False
    at, end = len(first), len(text) - len(last)
    for piece in middle:
        if not piece:
            continue
        found = _find(piece, text[:end], at)
        if found < 0:
            return False
        at = found + len(piece)
    return True


def _wildcard(pattern: str, fold: bool) -> Callable[[str], bool]:
    """The matcher of a wildcard pattern, case-insensitive if `fold`."""
    if fold:
        folded = pattern.lower()
        return lambda text: wildcard_match(folded, text.lower())
    return lambda text: wildcard_match(pattern, text)


def _date(value: str, key: str) -> str:
    try:
        datetime.strptime(value, "%Y%m%d")
    except ValueError:
        raise QueryError(f"{key} : date invalide « {value} » (AAAAMMJJ)") from None
    return value


def _pn(value: str) -> str:
    return re.sub(r"[\^ =]+$", "", value.strip())


@dataclass(frozen=True)
class Filter:
    keyword: str
    level: str
    test: Callable[[HeldValue], bool]

    def matches(self, value: HeldValue) -> bool:
        return self.test(value)


def make_filter(keyword: str, raw: str) -> Filter | None:
    """The matcher for `keyword=raw`; None for an empty value (universal matching: returned, not filtered)."""
    if keyword not in MATCHING:
        held = ", ".join(MATCHING)
        raise QueryError(f"{keyword} : recherche non prise en charge sur cet attribut (possible : {held})")
    level, kind = MATCHING[keyword]
    raw = raw.strip()
    if raw in ("", "*"):
        return None
    if kind == "uid":
        uids = _values(raw)
        bad = [u for u in uids if not UID_RE.fullmatch(u) or len(u) > 64]
        if bad:
            raise QueryError(f"{keyword} : UID DICOM invalide « {bad[0][:80]} »")
        wanted = set(uids)
        return Filter(keyword, level, lambda v: str(v or "") in wanted)
    if kind in ("text", "ci"):
        if "\\" in raw:
            raise QueryError(f"{keyword} : une seule valeur attendue")
        if len(raw) > MAX_PATTERN:
            raise QueryError(f"{keyword} : valeur trop longue ({len(raw)} caractères, {MAX_PATTERN} au plus)")
        fold = kind == "ci"
        match = _wildcard(_pn(raw) if keyword == "PatientName" else raw, fold)
        return Filter(keyword, level, lambda v: match(_pn(str(v or "")) if keyword == "PatientName" else str(v or "")))
    if kind == "date":
        m = re.fullmatch(r"(\d{8})?(-)?(\d{8})?", raw)
        if not m or not (m.group(1) or m.group(3)) or (m.group(3) and not m.group(2)):
            raise QueryError(
                f"{keyword} : date ou intervalle attendu (AAAAMMJJ, AAAAMMJJ-AAAAMMJJ, -AAAAMMJJ, AAAAMMJJ-), reçu « {raw[:40]} »"
            )
        lo = _date(m.group(1), keyword) if m.group(1) else None
        hi = _date(m.group(3), keyword) if m.group(3) else None
        if not m.group(2):
            return Filter(keyword, level, lambda v: str(v or "") == lo)
        if lo and hi and lo > hi:
            raise QueryError(f"{keyword} : intervalle à l'envers « {raw} »")
        return Filter(keyword, level, lambda v: bool(v) and (lo is None or str(v) >= lo) and (hi is None or str(v) <= hi))
    if kind == "cs":
        codes = [c.upper() for c in _values(raw)]
        bad = [c for c in codes if not re.fullmatch(r"[A-Z0-9_ ]{1,16}", c)]
        if bad:
            raise QueryError(f"{keyword} : code invalide « {bad[0][:20]} »")
        wanted = set(codes)
        return Filter(
            keyword, level, lambda v: bool(wanted & ({str(x) for x in v} if isinstance(v, list | tuple | set) else {str(v or "")}))
        )
    try:
        numbers = {int(n) for n in _values(raw)}
    except ValueError:
        raise QueryError(f"{keyword} : entier attendu, reçu « {raw[:40]} »") from None
    return Filter(keyword, level, lambda v: isinstance(v, int | float | str) and str(v).strip() != "" and int(v) in numbers)


@dataclass
class Query:
    filters: list[Filter] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)  # keywords asked for (includefield, empty keys)
    all_fields: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    fuzzy: bool = False
    asked_limit: int | None = None  # the client's own limit, if it gave one
    ignored: list[str] = field(default_factory=list)  # unknown parameters, named safely

    def matches(self, record: Mapping[str, HeldValue]) -> bool:
        return all(f.matches(record.get(f.keyword)) for f in self.filters)

    def page(self, items: list[T]) -> tuple[list[T], int]:
        """The results from `offset`, at most `limit`, and how many more follow them."""
        shown = items[self.offset : self.offset + self.limit]
        return shown, max(0, len(items) - self.offset - len(shown))

    def cut_by_server(self, more: int) -> bool:
        """True if results were left out by the server's maximum rather than by the client's limit."""
        return more > 0 and (self.asked_limit is None or self.asked_limit > self.limit)


def _safe_name(key: str) -> str:
    """A parameter's name as it may be repeated in a response header."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "_-.") else "?" for c in key[:40])


def parse(params: Iterable[tuple[str, str]], level: str) -> Query:
    """The query of a search at `level` ("study", "series", "instance"); keys of the levels above are
    accepted too. A list-valued key (UIDs, codes, numbers) may also be repeated (values united).
    A parameter that names no DICOM attribute is ignored (listed in `ignored`); attributes that
    cannot be matched, sequences and invalid values raise QueryError."""
    allowed = LEVELS[: LEVELS.index(level) + 1]
    q = Query()
    keys: dict[str, list[str]] = {}
    for key, value in params:
        if key == "includefield":
            for name in _values(value) if value.strip() else []:
                if name == "all":
                    q.all_fields = True
                else:
                    q.returned.append(keyword_of(name))
            continue
        if key in ("limit", "offset"):
            if not re.fullmatch(r"\d{1,9}", value.strip()):
                raise QueryError(f"{key} : entier positif attendu, reçu « {value[:20]} »")
            n = int(value)
            if key == "limit":
                if n < 1:
                    raise QueryError("limit : au moins 1")
                q.asked_limit, q.limit = n, min(n, MAX_LIMIT)
            else:
                q.offset = n
            continue
        if key == "fuzzymatching":
            if value.strip().lower() not in ("true", "false"):
                raise QueryError(f"fuzzymatching : true ou false, reçu « {value[:20]} »")
            q.fuzzy = value.strip().lower() == "true"
            continue
        if key in ("accept", "charset"):  # answers are DICOM JSON in UTF-8 whatever is asked here
            continue
        if _unknown(key):
            q.ignored.append(_safe_name(key))
            continue
        keyword = keyword_of(key)
        if not value.strip() and keyword not in MATCHING:  # an empty key asks for the attribute back
            q.returned.append(keyword)
            continue
        if keyword in MATCHING and MATCHING[keyword][0] not in allowed:
            raise QueryError(f"{keyword} : attribut du niveau {MATCHING[keyword][0]}, pas d'une recherche de niveau {level}")
        keys.setdefault(keyword, []).append(value)
    for keyword, values in keys.items():
        if len(values) > 1 and MATCHING.get(keyword, ("", ""))[1] not in ("uid", "cs", "int"):
            raise QueryError(f"{keyword} : une seule valeur attendue (clé répétée)")
        f = make_filter(keyword, ",".join(v for v in values if v.strip()))
        q.returned.append(keyword)
        if f is not None:
            q.filters.append(f)
    return q
