"""Names of establishments, services and practitioners, read from the directory view (cached briefly)."""

from __future__ import annotations

import threading
import time

from psycopg_pool import ConnectionPool

TTL = 30.0


class Names:
    """id → display name, refreshed at most every TTL seconds (the directory changes rarely)."""

    def __init__(self, pool: ConnectionPool):
        self.pool = pool
        self._lock = threading.Lock()
        self._at = 0.0
        self.establishments: dict[str, dict] = {}
        self.services: dict[str, dict] = {}
        self.practitioners: dict[str, str] = {}

    def refresh(self, force: bool = False) -> "Names":
        with self._lock:
            if not force and time.monotonic() - self._at < TTL:
                return self
            with self.pool.connection() as conn:
                est = conn.execute("SELECT id::text, name, finess, department, region FROM dir_establishments").fetchall()
                svc = conn.execute("SELECT id::text, establishment_id::text, name, kind FROM dir_services").fetchall()
                pra = conn.execute("SELECT id::text, given_name, family_name FROM dir_practitioners").fetchall()
            self.establishments = {r["id"]: r for r in est}
            self.services = {r["id"]: r for r in svc}
            self.practitioners = {r["id"]: f"{r['given_name']} {r['family_name']}".strip() for r in pra}
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

    def services_of(self, eid: str) -> list[dict]:
        self.refresh()
        return sorted((s for s in self.services.values() if s["establishment_id"] == str(eid)), key=lambda s: s["name"])

    def colleagues(self, eid: str) -> list[tuple[str, str]]:
        """(id, name) of the active clinicians of an establishment."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                """SELECT p.id::text, p.given_name, p.family_name FROM dir_memberships m
                   JOIN dir_practitioners p ON p.id = m.practitioner_id
                   WHERE m.establishment_id = %s AND 'clinician' = ANY(m.roles) AND p.active
                   ORDER BY p.family_name, p.given_name""", (eid,),
            ).fetchall()
        return [(r["id"], f"{r['given_name']} {r['family_name']}".strip()) for r in rows]

    def search(self, q: str, limit: int = 12) -> list[dict]:
        """Establishments matching a name, FINESS, town or department, or having a matching service
        or clinician; each with its services and clinicians (for choosing recipients)."""
        like = f"%{q.strip().lower()}%"
        with self.pool.connection() as conn:
            ests = conn.execute(
                """SELECT DISTINCT e.id::text, e.name, e.finess, e.department, e.region FROM dir_establishments e
                   LEFT JOIN dir_services s ON s.establishment_id = e.id
                   LEFT JOIN dir_memberships m ON m.establishment_id = e.id AND 'clinician' = ANY(m.roles)
                   LEFT JOIN dir_practitioners p ON p.id = m.practitioner_id
                   WHERE lower(e.name) LIKE %s OR e.finess LIKE %s OR e.department = %s OR lower(s.name) LIKE %s
                      OR lower(p.family_name || ' ' || p.given_name) LIKE %s OR lower(s.specialty) LIKE %s
                   ORDER BY e.name LIMIT %s""",
                (like, like, q.strip().upper(), like, like, like, limit),
            ).fetchall()
        out = []
        for e in ests:
            out.append(dict(e, services=self.services_of(e["id"]), clinicians=self.colleagues(e["id"])))
        return out
