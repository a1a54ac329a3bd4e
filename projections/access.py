"""Access log read model: every view of patient data (granted or denied), by dossier and by patient."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection

from domain.access import Access
from domain.dossier import Dossier, dossier_number
from projections.base import PostgresView
from projections.inbox import folded


@dataclass(frozen=True)
class AccessRow:
    access_id: str
    dossier_id: str
    number: str
    kind: str
    target: str
    outcome: str
    reason: str
    practitioner_id: str
    practitioner_name: str
    role: str
    establishment_id: str
    establishment_name: str
    dossier_version: int | None
    occurred_at: datetime
    recorded_at: datetime


@dataclass(frozen=True)
class PatientRow:
    birth_name: str
    first_names: str
    birth_date: date | None
    sex: str
    dossiers: int


class PostgresAccessView(PostgresView):
    ddl = (
        """CREATE TABLE IF NOT EXISTS access_log (
            access_id uuid PRIMARY KEY, dossier_id uuid NOT NULL, kind text NOT NULL, target text NOT NULL,
            outcome text NOT NULL, reason text NOT NULL, practitioner_id text NOT NULL,
            practitioner_name text NOT NULL, role text NOT NULL, establishment_id text NOT NULL,
            dossier_version integer, occurred_at timestamptz NOT NULL, recorded_at timestamptz NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS access_log_dossier ON access_log (dossier_id, occurred_at)",
        """CREATE TABLE IF NOT EXISTS access_patients (
            dossier_id uuid PRIMARY KEY, number text NOT NULL, birth_name text NOT NULL, first_names text NOT NULL,
            birth_date date, sex text NOT NULL, ins text, search text NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS access_patients_identity ON access_patients (birth_name, birth_date)",
    )
    tables = ("access_log", "access_patients")

    _SELECT = """SELECT a.access_id::text, a.dossier_id::text, p.number, a.kind, a.target, a.outcome, a.reason,
                        a.practitioner_id, a.practitioner_name, a.role, a.establishment_id,
                        coalesce(e.name, '') AS establishment_name, a.dossier_version, a.occurred_at, a.recorded_at
                 FROM access_log a JOIN access_patients p ON p.dossier_id = a.dossier_id
                 LEFT JOIN dir_establishments e ON e.id::text = a.establishment_id"""

    def for_dossier(self, dossier_id: str) -> list[AccessRow]:
        rows = self.query(self._SELECT + " WHERE a.dossier_id = %s ORDER BY a.occurred_at, a.recorded_at", (dossier_id,))
        return [AccessRow(**r) for r in rows]

    def patients(self, q: str, limit: int = 30) -> list[PatientRow]:
        """Patients whose name matches, one row per identity (birth name, first names, birth date, sex)."""
        rows = self.query(
            """SELECT birth_name, first_names, birth_date, sex, count(*) AS dossiers FROM access_patients
               WHERE search LIKE %s GROUP BY birth_name, first_names, birth_date, sex
               ORDER BY birth_name, first_names, birth_date LIMIT %s""",
            ("%" + folded(q).strip() + "%", limit),
        )
        return [PatientRow(**r) for r in rows]

    def for_patient(self, birth_name: str, first_names: str, birth_date: date, limit: int = 2000) -> list[AccessRow]:
        """Who accessed this patient's data (every dossier of this identity), most recent first."""
        rows = self.query(
            self._SELECT + """ WHERE p.birth_name = %s AND p.first_names = %s AND p.birth_date = %s
                               ORDER BY a.occurred_at DESC LIMIT %s""",
            (birth_name, first_names, birth_date, limit),
        )
        return [AccessRow(**r) for r in rows]


class AccessProjection(Projection[PostgresAccessView]):
    """Keeps the access log, and each dossier's patient identity so that accesses can be found by patient."""

    name = "access"
    topics = ("relais:Access.Created", "relais:Dossier.Created", "relais:Dossier.DraftEdited")

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.apply(tracking)

    @process_event.register
    def _(self, e: Access.Created, tracking: Tracking) -> None:
        a = e.actor or {}
        self.view.apply(tracking, lambda c: c.execute(
            "INSERT INTO access_log VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (access_id) DO NOTHING",
            (e.originator_id, e.dossier_id, e.kind, e.target, e.outcome, e.reason, a.get("practitioner_id", ""),
             a.get("name", ""), a.get("role", ""), a.get("establishment_id", ""), e.dossier_version, e.occurred_at,
             e.timestamp)))

    def _patient(self, dossier_id: Any, p: dict, tracking: Tracking) -> None:
        search = " ".join(folded(x) for x in (p.get("birth_name"), p.get("used_name"), p.get("first_names")) if x)
        self.view.apply(tracking, lambda c: c.execute(
            """INSERT INTO access_patients VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (dossier_id) DO UPDATE SET birth_name = EXCLUDED.birth_name,
               first_names = EXCLUDED.first_names, birth_date = EXCLUDED.birth_date, sex = EXCLUDED.sex,
               ins = EXCLUDED.ins, search = EXCLUDED.search""",
            (dossier_id, dossier_number(dossier_id), p.get("birth_name", ""), p.get("first_names", ""),
             p.get("birth_date") or None, p.get("sex", ""), p.get("ins"), search)))

    @process_event.register
    def _(self, e: Dossier.Created, tracking: Tracking) -> None:
        self._patient(e.originator_id, e.patient or {}, tracking)

    @process_event.register
    def _(self, e: Dossier.DraftEdited, tracking: Tracking) -> None:
        if "patient" in e.changes:
            self._patient(e.originator_id, e.changes["patient"], tracking)
        else:
            self.view.apply(tracking)
