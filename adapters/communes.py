"""Places of birth by name: the commune list shipped in adapters/data/communes.csv.gz (made by scripts/communes.py)."""

from __future__ import annotations

import csv
import gzip
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent / "data" / "communes.csv.gz"
CODE = re.compile(r"(\d{5}|2[AB]\d{3})")
LABELLED = re.compile(r"(?P<name>.+?)\s*\((?P<dept>2[AB]|\d{2,3}|étranger)(?:,[^)]*)?\)\s*")
HISTORICAL = {"deleguee": "commune déléguée", "associee": "commune associée"}
ABBREVIATIONS = {"st": "saint", "ste": "sainte", "sts": "saints", "stes": "saintes"}  # « St-Gaudens »
COUNTRY_WEIGHT = 200_000  # a country ranks among the large towns (« allem » shows Allemagne near the top)


def folded(text: str) -> str:
    """Lower case, no accents, words separated by one space (« Saint-Étienne » → « saint etienne »)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", plain).split())


@dataclass(frozen=True)
class Place:
    """A commune (current, a municipal district, or a former one merged since) or a country of birth abroad."""

    code: str
    name: str
    department: str
    kind: str  # commune, arrondissement, deleguee, associee, pays
    parent: str = ""
    population: int = 0

    @property
    def label(self) -> str:
        """« Toulouse (31) », « Allemagne (étranger) »: what the field shows and accepts back."""
        return f"{self.name} ({self.department or 'étranger'})"


class PlaceNotFound(ValueError):
    """Nothing in the list has this name (or code)."""


class PlaceAmbiguous(ValueError):
    """Several places have this name: the candidates, to choose from."""

    def __init__(self, candidates: list[Place]) -> None:
        super().__init__(", ".join(p.label for p in candidates))
        self.candidates = candidates


class Communes:
    """The list, searchable by the start of the words of a name, resolvable by name, label or code."""

    def __init__(self, places: list[Place], source: str = "") -> None:
        self.places = places
        self.source = source
        self._folded = [folded(p.name) for p in places]
        self._words = [tuple(f.split()) for f in self._folded]
        self._by_code: dict[str, list[Place]] = {}
        for p in places:
            self._by_code.setdefault(p.code, []).append(p)

    @classmethod
    def load(cls, path: Path = SHIPPED) -> Communes:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            source = f.readline().lstrip("# ").strip()
            reader = csv.DictReader(f, delimiter=";")
            places = [Place(r["code"], r["name"], r["department"], r["kind"], r["parent"], int(r["population"] or 0))
                      for r in reader]
        return cls(places, source)

    def by_code(self, code: str) -> Place | None:
        """The place a code names today (the current commune before a former one sharing its code)."""
        found = self._by_code.get(code.strip().upper())
        return found[0] if found else None

    def places_of(self, code: str) -> list[Place]:
        """Every place of a code (a commune and the former ones that kept its code)."""
        return list(self._by_code.get(code.strip().upper(), []))

    def describe(self, p: Place) -> str:
        """The label, and for a former commune the one it belongs to now."""
        if p.kind in HISTORICAL:
            now = self.by_code(p.parent)
            of = "" if now is None or now.name == p.name else (
                f" d'{now.name}" if folded(now.name)[:1] in "aeiouyh" else f" de {now.name}")
            return f"{p.label} — {HISTORICAL[p.kind]}{of}"
        return p.label

    def search(self, query: str, limit: int = 10) -> list[Place]:
        """Places whose name has words starting with each word typed (accents and case ignored); a code
        typed finds its places. Exact names first, then names starting so, then by population."""
        q = query.strip()
        if CODE.fullmatch(q.upper()):
            return list(self._by_code.get(q.upper(), []))[:limit]
        typed = folded(q).split()
        if not typed:
            return []
        whole = " ".join(ABBREVIATIONS.get(t, t) for t in typed)
        alternatives = [(t, ABBREVIATIONS.get(t, "")) for t in typed]  # « st » starts « Stains » or is « Saint »
        scored = []
        for i, words in enumerate(self._words):
            if all(any(w.startswith(t) or w == long for w in words) for t, long in alternatives):
                f, p = self._folded[i], self.places[i]
                rank = 0 if f == whole else 1 if f.startswith(whole) else 2
                weight = COUNTRY_WEIGHT if p.kind == "pays" else p.population
                scored.append((rank, p.kind in HISTORICAL, -weight, f, i))
        scored.sort()
        return [self.places[s[-1]] for s in scored[:limit]]

    def resolve(self, text: str) -> Place | str:
        """The place typed: a code (returned as is when well formed but not in the list: a former code),
        a label (« Toulouse (31) ») or an exact name. Raises PlaceNotFound or PlaceAmbiguous."""
        t = text.strip()
        if CODE.fullmatch(t.upper()):
            return self.by_code(t) or t.upper()
        dept = ""
        if (m := LABELLED.fullmatch(t)) is not None:
            t, dept = m["name"], m["dept"]
        name = " ".join(ABBREVIATIONS.get(w, w) for w in folded(t).split())
        if not name:
            raise PlaceNotFound(text)
        same = [p for i, p in enumerate(self.places) if self._folded[i] == name]
        if dept:
            same = [p for p in same if (p.department or "étranger") == dept]
        if not same:
            raise PlaceNotFound(text)
        if len({p.code for p in same}) > 1 or len(same) > 1 and len({p.department for p in same}) > 1:
            raise PlaceAmbiguous(sorted(same, key=lambda p: (p.kind in HISTORICAL, p.department, p.code)))
        return same[0]


@cache
def shipped() -> Communes:
    """The list shipped with the code (read once, ~0.2 s)."""
    return Communes.load()
