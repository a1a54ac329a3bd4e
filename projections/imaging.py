"""Imaging read model: studies received per establishment, their series and instances, awaited exams."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from psycopg import Cursor
from psycopg.rows import DictRow

from domain.dossier import Dossier
from domain.imaging import ReceivedStudy, received_study_id
from domain.values import Json
from projections.base import PostgresView


@dataclass(frozen=True)
class StudyRow:
    id: str
    establishment_id: str
    study_instance_uid: str
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    accession_number: str
    study_date: str
    description: str
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int
    sources: tuple[str, ...]
    first_received_at: datetime
    last_received_at: datetime
    last_retrieve: Json | None  # dossier_id, node_aet, method, status, reason, expected, received, at
    patients: tuple[Json, ...] = ()  # the DICOM patient identities among its instances (recorded since issue 11)


@dataclass(frozen=True)
class SeriesRow:
    series_instance_uid: str
    modality: str
    description: str
    number: int | None
    instance_count: int


@dataclass(frozen=True)
class InstanceRow:
    sop_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    instance_number: int | None
    size: int


_STUDY_COLUMNS = """id::text, establishment_id::text, study_instance_uid, patient_id, patient_name, patient_birth_date,
    patient_sex, accession_number, study_date, description, modalities, series_count, instance_count, sources,
    first_received_at, last_received_at, last_retrieve, patients"""


def _study(r: DictRow) -> StudyRow:
    return StudyRow(**dict(r, modalities=tuple(r["modalities"]), sources=tuple(r["sources"]), patients=tuple(r["patients"])))


class PostgresImagingView(PostgresView):
    ddl = (
        """CREATE TABLE IF NOT EXISTS img_studies (
            id uuid PRIMARY KEY, establishment_id uuid NOT NULL, study_instance_uid text NOT NULL,
            patient_id text NOT NULL, patient_name text NOT NULL, patient_birth_date text NOT NULL,
            patient_sex text NOT NULL, accession_number text NOT NULL, study_date text NOT NULL,
            description text NOT NULL, modalities text[] NOT NULL DEFAULT '{}', series_count integer NOT NULL DEFAULT 0,
            instance_count integer NOT NULL DEFAULT 0, sources text[] NOT NULL DEFAULT '{}',
            first_received_at timestamptz NOT NULL, last_received_at timestamptz NOT NULL, last_retrieve jsonb,
            patients jsonb NOT NULL DEFAULT '[]')""",
        """CREATE INDEX IF NOT EXISTS img_studies_establishment
            ON img_studies (establishment_id, last_received_at DESC)""",
        "CREATE INDEX IF NOT EXISTS img_studies_accession ON img_studies (establishment_id, accession_number)",
        """CREATE TABLE IF NOT EXISTS img_series (
            study_id uuid NOT NULL, series_instance_uid text NOT NULL, modality text NOT NULL,
            description text NOT NULL, number integer, instance_count integer NOT NULL DEFAULT 0,
            PRIMARY KEY (study_id, series_instance_uid))""",
        """CREATE TABLE IF NOT EXISTS img_instances (
            study_id uuid NOT NULL, sop_instance_uid text NOT NULL, series_instance_uid text NOT NULL,
            sop_class_uid text NOT NULL, transfer_syntax_uid text NOT NULL, instance_number integer,
            size bigint NOT NULL, PRIMARY KEY (study_id, sop_instance_uid))""",
        """CREATE TABLE IF NOT EXISTS img_awaited (
            dossier_id uuid NOT NULL, establishment_id uuid NOT NULL, accession_number text NOT NULL,
            PRIMARY KEY (dossier_id, accession_number))""",
        "CREATE INDEX IF NOT EXISTS img_awaited_accession ON img_awaited (establishment_id, accession_number)",
        # exams awaited by the patient's ID at the gateway (issue 13): the last await of each
        """CREATE TABLE IF NOT EXISTS img_awaited_patients (
            dossier_id uuid NOT NULL, establishment_id uuid NOT NULL, patient_id text NOT NULL, issuer text NOT NULL,
            awaited_at timestamptz NOT NULL, PRIMARY KEY (dossier_id, patient_id, issuer))""",
        "CREATE INDEX IF NOT EXISTS img_awaited_patient ON img_awaited_patients (establishment_id, patient_id)",
        """CREATE TABLE IF NOT EXISTS img_attached (
            study_id uuid NOT NULL, dossier_id uuid NOT NULL, PRIMARY KEY (study_id, dossier_id))""",
    )
    tables = ("img_studies", "img_series", "img_instances", "img_awaited", "img_attached", "img_awaited_patients")
    # 1: the studies' patient identities and the dossiers each study is attached to (issue 11), rebuilt
    # from the log at the next start so that studies attached before are identity-checked too
    schema_version = 1

    def studies_for(self, establishment_id: str, limit: int = 50, search: str = "") -> list[StudyRow]:
        """Studies received for an establishment, the latest first (search: patient, accession, description)."""
        like = f"%{search.strip()}%" if search.strip() else "%"
        rows = self.query(
            f"""SELECT {_STUDY_COLUMNS} FROM img_studies WHERE establishment_id = %s
                AND (patient_name ILIKE %s OR patient_id ILIKE %s OR accession_number ILIKE %s OR description ILIKE %s)
                ORDER BY last_received_at DESC LIMIT %s""",
            (establishment_id, like, like, like, like, limit),
        )
        return [_study(r) for r in rows]

    def study(self, study_id: str) -> StudyRow | None:
        rows = self.query(f"SELECT {_STUDY_COLUMNS} FROM img_studies WHERE id = %s", (study_id,))
        return _study(rows[0]) if rows else None

    def series_of(self, study_id: str) -> list[SeriesRow]:
        rows = self.query(
            """SELECT series_instance_uid, modality, description, number, instance_count FROM img_series
               WHERE study_id = %s ORDER BY number NULLS LAST, series_instance_uid""",
            (study_id,),
        )
        return [SeriesRow(**r) for r in rows]

    def instances_of(self, study_id: str, series_uid: str | None = None) -> list[InstanceRow]:
        rows = self.query(
            """SELECT sop_instance_uid, series_instance_uid, sop_class_uid, transfer_syntax_uid, instance_number, size
               FROM img_instances WHERE study_id = %s AND (%s::text IS NULL OR series_instance_uid = %s)
               ORDER BY series_instance_uid, instance_number NULLS LAST, sop_instance_uid""",
            (study_id, series_uid, series_uid),
        )
        return [InstanceRow(**r) for r in rows]

    def awaiting(self, establishment_id: str, accession_number: str) -> list[str]:
        """Dossiers of this establishment awaiting this Accession Number."""
        rows = self.query(
            "SELECT dossier_id::text FROM img_awaited WHERE establishment_id = %s AND accession_number = %s",
            (establishment_id, accession_number),
        )
        return [r["dossier_id"] for r in rows]

    def awaiting_patient(self, establishment_id: str, patient_ids: list[str], since: datetime) -> list[str]:
        """Dossiers of this establishment that awaited one of these Patient IDs at `since` or later (open
        or not, issuer or not: the application decides)."""
        if not patient_ids:
            return []
        rows = self.query(
            """SELECT DISTINCT dossier_id::text FROM img_awaited_patients
               WHERE establishment_id = %s AND patient_id = ANY(%s) AND awaited_at >= %s""",
            (establishment_id, list(patient_ids), since),
        )
        return [r["dossier_id"] for r in rows]

    def studies_of_patient(self, establishment_id: str, patient_id: str, since: datetime) -> list[str]:
        """Studies received for this establishment since `since` with an instance of this Patient ID
        (those received before the exam was awaited by it: the awaiting page may attach them)."""
        rows = self.query(
            """SELECT id::text FROM img_studies WHERE establishment_id = %s AND last_received_at >= %s
                 AND (patient_id = %s OR patients @> %s::jsonb) ORDER BY last_received_at""",
            (establishment_id, since, patient_id, json.dumps([{"id": patient_id}])),
        )
        return [r["id"] for r in rows]

    def attached_to(self, study_id: str) -> list[str]:
        """Dossiers a received study is attached to (their new instances are identity-checked there)."""
        rows = self.query("SELECT dossier_id::text FROM img_attached WHERE study_id = %s", (study_id,))
        return [r["dossier_id"] for r in rows]

    def study_by_accession(self, establishment_id: str, accession_number: str) -> list[str]:
        rows = self.query(
            "SELECT id::text FROM img_studies WHERE establishment_id = %s AND accession_number = %s",
            (establishment_id, accession_number),
        )
        return [r["id"] for r in rows]


class ImagingProjection(Projection[PostgresImagingView]):
    """Keeps the received-studies tables in step with ReceivedStudy events (one transaction each)."""

    name = "imaging"
    topics = (
        "relais:ReceivedStudy.Created",
        "relais:ReceivedStudy.InstancesReceived",
        "relais:ReceivedStudy.RetrieveRecorded",
        "relais:Dossier.ImagingAwaited",
        "relais:Dossier.ImagingAttached",
        "relais:Dossier.ImagingDetached",
    )

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.apply(tracking)

    @process_event.register
    def _(self, e: ReceivedStudy.Created, tracking: Tracking) -> None:
        p, s = e.patient, e.study

        def write(c: Cursor[DictRow]) -> None:
            c.execute(
                """INSERT INTO img_studies (id, establishment_id, study_instance_uid, patient_id, patient_name,
                       patient_birth_date, patient_sex, accession_number, study_date, description,
                       first_received_at, last_received_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING""",
                (e.originator_id, e.establishment_id, e.study_instance_uid, p.get("id", ""), p.get("name", ""),
                 p.get("birth_date", ""), p.get("sex", ""), s.get("accession_number", ""), s.get("date", ""),
                 s.get("description", ""), e.occurred_at, e.occurred_at),
            )

        self.view.apply(tracking, write)

    @process_event.register
    def _(self, e: ReceivedStudy.InstancesReceived, tracking: Tracking) -> None:
        sid = e.originator_id

        def write(c: Cursor[DictRow]) -> None:
            for uid, meta in e.series.items():
                c.execute(
                    """INSERT INTO img_series VALUES (%s, %s, %s, %s, %s, 0)
                       ON CONFLICT (study_id, series_instance_uid) DO NOTHING""",
                    (sid, uid, meta.get("modality") or "", meta.get("description") or "", meta.get("number")),
                )
            c.executemany(
                "INSERT INTO img_instances VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(sid, i["sop"], i["series"], i["class"], i["ts"], i.get("number"), i.get("size") or 0)
                 for i in e.instances],
            )
            c.execute(
                """UPDATE img_series s SET instance_count = (SELECT count(*) FROM img_instances i
                       WHERE i.study_id = s.study_id AND i.series_instance_uid = s.series_instance_uid)
                   WHERE s.study_id = %s""",
                (sid,),
            )
            c.execute(
                """UPDATE img_studies SET
                       instance_count = (SELECT count(*) FROM img_instances WHERE study_id = %(id)s),
                       series_count = (SELECT count(*) FROM img_series WHERE study_id = %(id)s),
                       modalities = coalesce((SELECT array_agg(DISTINCT modality ORDER BY modality) FROM img_series
                                              WHERE study_id = %(id)s AND modality <> ''), '{}'),
                       sources = CASE WHEN %(kind)s = '' OR %(kind)s = ANY(sources) THEN sources
                                      ELSE array_append(sources, %(kind)s) END,
                       last_received_at = greatest(last_received_at, %(at)s),
                       patients = patients || %(patients)s::jsonb
                   WHERE id = %(id)s""",
                {"id": sid, "kind": e.source.get("kind") or "", "at": e.occurred_at,
                 "patients": json.dumps(list(e.identities.values()))},
            )

        self.view.apply(tracking, write)

    @process_event.register
    def _(self, e: ReceivedStudy.RetrieveRecorded, tracking: Tracking) -> None:
        info = {
            "dossier_id": e.dossier_id, "node_aet": e.node_aet, "method": e.method, "status": e.status,
            "reason": e.reason, "expected": e.expected, "received": e.received, "at": e.occurred_at.isoformat(),
        }
        self.view.apply(tracking, lambda c: c.execute(
            "UPDATE img_studies SET last_retrieve = %s WHERE id = %s", (json.dumps(info), e.originator_id)
        ))

    @process_event.register
    def _(self, e: Dossier.ImagingAwaited, tracking: Tracking) -> None:
        def write(c: Cursor[DictRow]) -> None:
            if e.accession_number:
                c.execute(
                    "INSERT INTO img_awaited VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (e.originator_id, e.actor["establishment_id"], e.accession_number),
                )
            if e.patient_id:
                c.execute(
                    """INSERT INTO img_awaited_patients VALUES (%s, %s, %s, %s, %s)
                       ON CONFLICT (dossier_id, patient_id, issuer) DO UPDATE SET awaited_at = EXCLUDED.awaited_at""",
                    (e.originator_id, e.actor["establishment_id"], e.patient_id, e.issuer, e.occurred_at),
                )

        self.view.apply(tracking, write)

    @process_event.register
    def _(self, e: Dossier.ImagingAttached, tracking: Tracking) -> None:
        study_id = e.study.get("received_study_id")
        if not study_id:  # an attachment recorded without a received study (metadata only)
            self.view.apply(tracking)
            return
        self.view.apply(tracking, lambda c: c.execute(
            "INSERT INTO img_attached VALUES (%s, %s) ON CONFLICT DO NOTHING", (study_id, e.originator_id),
        ))

    @process_event.register
    def _(self, e: Dossier.ImagingDetached, tracking: Tracking) -> None:
        study_id = received_study_id(e.actor["establishment_id"], e.study_instance_uid)
        self.view.apply(tracking, lambda c: c.execute(
            "DELETE FROM img_attached WHERE study_id = %s AND dossier_id = %s", (study_id, e.originator_id),
        ))
