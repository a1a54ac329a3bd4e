"""Access log read model: every view of patient data (granted or denied), by dossier and by patient."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow

from domain.access import Access
from domain.dossier import Dossier, dossier_number
from projections.base import BufferedProjection, PostgresView
from projections.search import contains, search_text


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
            (contains(q), limit),
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


# A row's values in its table's column order (ACCESS_COLUMNS, PATIENT_COLUMNS): what COPY writes.
Values = list[Any]


class AccessBatch:
    """New access rows, patient identities of dossiers created in the batch, later identity changes."""

    __slots__ = ("accesses", "patients", "changed")

    def __init__(self) -> None:
        self.accesses: list[Values] = []
        self.patients: dict[UUID, Values] = {}  # dossiers created in this batch: rows to COPY
        self.changed: dict[UUID, Values] = {}  # dossiers of earlier batches whose identity changed: upserts


def _patient_row(dossier_id: UUID, p: Mapping[str, Any]) -> Values:
    born = p.get("birth_date") or None
    return [dossier_id, dossier_number(dossier_id), p.get("birth_name") or "", p.get("first_names") or "",
            date.fromisoformat(born) if isinstance(born, str) else born, p.get("sex") or "", p.get("ins"), search_text(p)]


ACCESS_COLUMNS = (
    ("access_id", "uuid"), ("dossier_id", "uuid"), ("kind", "text"), ("target", "text"), ("outcome", "text"),
    ("reason", "text"), ("practitioner_id", "text"), ("practitioner_name", "text"), ("role", "text"),
    ("establishment_id", "text"), ("dossier_version", "int4"), ("occurred_at", "timestamptz"),
    ("recorded_at", "timestamptz"),
)
PATIENT_COLUMNS = (
    ("dossier_id", "uuid"), ("number", "text"), ("birth_name", "text"), ("first_names", "text"),
    ("birth_date", "date"), ("sex", "text"), ("ins", "text"), ("search", "text"),
)


class AccessProjection(BufferedProjection[PostgresAccessView]):
    """Keeps the access log, and each dossier's patient identity so that accesses can be found by patient.

    Buffered (projections/base.py): a batch of events is written by COPY with its tracking position.
    """

    batch: AccessBatch

    name = "access"
    topics = ("relais:Access.Created", "relais:Dossier.Created", "relais:Dossier.DraftEdited")

    def new_batch(self) -> AccessBatch:
        return AccessBatch()

    def _access(self, e: Access.Created) -> None:
        a = e.actor or {}
        self.batch.accesses.append([
            e.originator_id, UUID(str(e.dossier_id)), e.kind, e.target, e.outcome, e.reason,
            a.get("practitioner_id") or "", a.get("name") or "", a.get("role") or "", a.get("establishment_id") or "",
            e.dossier_version, e.occurred_at, e.timestamp,
        ])

    def _created(self, e: Dossier.Created) -> None:
        self.batch.patients[e.originator_id] = _patient_row(e.originator_id, e.patient or {})

    def _edited(self, e: Dossier.DraftEdited) -> None:
        if "patient" not in e.changes:
            return
        row = _patient_row(e.originator_id, e.changes["patient"])
        if e.originator_id in self.batch.patients:
            self.batch.patients[e.originator_id] = row
        else:
            self.batch.changed[e.originator_id] = row

    handlers = {Access.Created: _access, Dossier.Created: _created, Dossier.DraftEdited: _edited}

    def write(self, curs: Cursor[DictRow], batch: AccessBatch) -> None:
        if batch.accesses:
            _copy(curs, "access_log", ACCESS_COLUMNS, batch.accesses)
        if batch.patients:
            _copy(curs, "access_patients", PATIENT_COLUMNS, batch.patients.values())
        if batch.changed:
            columns = list(zip(*batch.changed.values(), strict=True))
            curs.execute(
                """INSERT INTO access_patients
                   SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::date[], %s::text[],
                                        %s::text[], %s::text[])
                   ON CONFLICT (dossier_id) DO UPDATE SET birth_name = EXCLUDED.birth_name,
                   first_names = EXCLUDED.first_names, birth_date = EXCLUDED.birth_date, sex = EXCLUDED.sex,
                   ins = EXCLUDED.ins, search = EXCLUDED.search""",
                [list(c) for c in columns],
            )


def _copy(curs: Cursor[DictRow], table: str, columns: tuple[tuple[str, str], ...], rows: Iterable[Sequence[Any]]) -> None:
    with curs.copy(f"COPY {table} ({', '.join(n for n, _ in columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([kind for _, kind in columns])
        for row in rows:
            copy.write_row(row)
