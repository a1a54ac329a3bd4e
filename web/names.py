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
        """Establishments matching a name, FINESS, town or department, or having a matching service
        or clinician; each with its services and clinicians (for choosing recipients)."""
        return [
            dict(asdict(e), services=self.services_of(e.id), clinicians=self.colleagues(e.id))
            for e in self.directory.search(q, limit)
        ]
