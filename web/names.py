"""Names of establishments, services and practitioners, read from the directory view (cached briefly)."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from typing import Any

from projections.directory import DirectoryView

TTL = 30.0


class Names:
    """id → display name, refreshed at most every TTL seconds (the directory changes rarely)."""

    def __init__(self, directory: DirectoryView):
        self.directory = directory
        self._lock = threading.Lock()
        self._at = 0.0
        # id → the directory's row as a dict (EstablishmentRow, ServiceRow: every field a str)
        self.establishments: dict[str, dict[str, str]] = {}
        self.services: dict[str, dict[str, str]] = {}
        self.practitioners: dict[str, str] = {}

    def refresh(self, force: bool = False) -> Names:
        with self._lock:
            if not force and time.monotonic() - self._at < TTL:
                return self
            establishments, services, people = self.directory.establishments(), self.directory.services(), self.directory.people()
            self.establishments = {e.id: asdict(e) for e in establishments}
            self.services = {s.id: asdict(s) for s in services}
            self.practitioners = {p.id: p.name for p in people}
            self._at = time.monotonic()
        return self

    def establishment(self, eid: str | None) -> str:
        self.refresh()
        if not eid:
            return ""
        if eid not in self.establishments:
            self.refresh(force=True)
        return (self.establishments.get(str(eid)) or {}).get("name", "établissement inconnu")

    def service(self, sid: str | None) -> str:
        if not sid:
            return ""
        self.refresh()
        return (self.services.get(str(sid)) or {}).get("name", "")

    def practitioner(self, pid: str | None) -> str:
        if not pid:
            return ""
        self.refresh()
        if str(pid) not in self.practitioners:
            self.refresh(force=True)
        return self.practitioners.get(str(pid), "")

    def recipient(self, eid: str | None, sid: str | None = None, pid: str | None = None) -> str:
        parts = [self.establishment(eid), self.service(sid), self.practitioner(pid)]
        return " — ".join(p for p in parts if p)

    def services_of(self, eid: str) -> list[dict[str, str]]:
        self.refresh()
        return sorted((s for s in self.services.values() if s["establishment_id"] == str(eid)), key=lambda s: s["name"])

    def colleagues(self, eid: str) -> list[tuple[str, str]]:
        """(id, name) of the active clinicians of an establishment."""
        return [(p.id, p.name) for p in self.directory.clinicians_of(eid)]

    def search(self, q: str, limit: int = 12) -> list[dict[str, Any]]:
        """Establishments where what was typed is found (projections/directory.py `search_hits`: names,
        specialties and their synonyms, « AVC » finding the neurovascular on-call pool), best first; each
        with its services and clinicians, those found first (on-call pools first), marked `found`."""
        hits = self.directory.search_hits(q, limit)
        if not hits:
            return []
        self.refresh()
        if any(h.establishment_id not in self.establishments for h in hits):
            self.refresh(force=True)
        order: dict[str, dict[str, int]] = {}
        for h in hits:
            found = order.setdefault(h.establishment_id, {})
            if h.rank < 3 and (h.service_id or h.practitioner_id):
                found[h.service_id or h.practitioner_id or ""] = h.rank
        results = []
        for eid, found in order.items():
            if eid not in self.establishments:
                continue
            services: list[dict[str, Any]] = [dict(s, found=s["id"] in found) for s in self.services_of(eid)]
            services.sort(key=lambda s: (found.get(s["id"], 9), s["kind"] != "on_call_pool"))
            clinicians = sorted(self.colleagues(eid), key=lambda c: c[0] not in found)
            results.append(dict(
                self.establishments[eid], services=services, clinicians=clinicians,
                found=[s["name"] for s in services if s["found"]] + [n for pid, n in clinicians if pid in found],
            ))
        return results
