"""The ReceivedStudy aggregate: a DICOM study received by the platform for one establishment."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidFieldError
from domain.values import Json, folded

UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")


def valid_uid(value: str | None, field: str = "uid") -> str:
    """A DICOM UID (digits and dots, 64 characters at most): safe in paths and queries."""
    value = (value or "").strip().rstrip("\x00").strip()
    if not UID_RE.fullmatch(value) or len(value) > 64:
        raise InvalidFieldError(field, f"UID DICOM invalide « {value[:80]} »")
    return value


def received_study_id(establishment_id: str | UUID, study_instance_uid: str) -> UUID:
    """One aggregate per (establishment, Study Instance UID), enforced by the event store."""
    return uuid5(UUID(str(establishment_id)), f"study:{study_instance_uid}")


# ---------------------------------------------------------------------- patient identity of images
#
# Identity is per instance: every instance carries its own Patient ID, Name, Birth Date and Sex, and
# a "study" (one Study Instance UID) may hold instances of several patients (a modality or a PACS
# export mixing them). One comparison, here, is used on every path: file import, C-STORE, PACS
# retrieve, instances arriving after a study was attached.

ABSENT = "(absent)"


def _name_part(text: str) -> str:
    return " ".join(folded(text).replace("-", " ").split())


def dicom_identity(patient: Json) -> Json:
    """A DICOM patient (id, name, birth_date, sex) as compared: stripped, empty name components dropped;
    with the issuer of its id when the images give one (not part of the identity's key)."""
    name = "^".join(p.strip() for p in (patient.get("name") or "").split("^")).rstrip("^ ")
    identity = {
        "id": (patient.get("id") or "").strip(), "name": name,
        "birth_date": (patient.get("birth_date") or "").strip(), "sex": (patient.get("sex") or "").strip().upper(),
    }
    issuer = (patient.get("issuer") or "").strip()
    return dict(identity, issuer=issuer) if issuer else identity


def identity_key(patient: Json) -> str:
    """A short key naming one DICOM identity: two instances of one patient have the same key
    (case, accents, spaces and empty name components aside); any other trait differing gives another."""
    p = dicom_identity(patient)
    canonical = [p["id"], [_name_part(x) for x in p["name"].split("^")], p["birth_date"], p["sex"]]
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()[:16]


def identity_differences(patient: Json, dicom_patient: Json) -> list[tuple[str, str, str]]:
    """(trait, dossier's value, DICOM value) for each identity trait of the images that does not match
    the dossier's patient. Every trait is compared: family name (birth or used name), first name,
    birth date, sex (« O » against « M » differs) and, when both are national identifiers (INS), the
    identifier. A trait missing from the images is a difference too: an identity too thin to compare
    (a family name only) must be confirmed by someone, never taken as a match."""
    out: list[tuple[str, str, str]] = []
    p = dicom_identity(dicom_patient)
    family, _, given = p["name"].partition("^")
    given = given.replace("^", " ").strip()
    names = {_name_part(patient.get("birth_name") or ""), _name_part(patient.get("used_name") or "")} - {""}
    if not family.strip() or _name_part(family) not in names:
        out.append(("Nom", patient.get("birth_name") or "", family or ABSENT))
    dossier_given = _name_part(patient.get("first_names") or "").split()
    if not given or _name_part(given).split()[0] not in dossier_given:
        out.append(("Prénom(s)", patient.get("first_names") or "", given or ABSENT))
    dossier_birth = (patient.get("birth_date") or "").replace("-", "")
    if p["birth_date"] != dossier_birth:
        out.append(("Date de naissance", patient.get("birth_date") or "", p["birth_date"] or ABSENT))
    if p["sex"] != (patient.get("sex") or "").upper():
        out.append(("Sexe", patient.get("sex") or "", p["sex"] or ABSENT))
    ins = (patient.get("ins") or "").replace(" ", "")
    dicom_id = p["id"].replace(" ", "")
    if ins and re.fullmatch(r"[0-9]{13}([0-9]{2})?", dicom_id) and dicom_id[:13] != ins[:13]:
        out.append(("Identifiant (INS)", ins, p["id"]))
    return out


def identity_rows(patient: Json, identities: dict[str, Json], counts: dict[str, int] | None = None) -> list[Json]:
    """Each DICOM identity with its differences from the dossier's patient (and its instance count)."""
    return [
        {"key": key, "patient": dict(ident), "count": (counts or {}).get(key, 0),
         "differences": [list(d) for d in identity_differences(patient, ident)]}
        for key, ident in identities.items()
    ]


def needs_confirmation(rows: list[Json]) -> bool:
    """Attaching these identities needs a person's explicit confirmation: several patients, or one
    that differs from (or is too thin to compare with) the dossier's patient."""
    return len(rows) > 1 or any(r["differences"] for r in rows)


class ReceivedStudy(Aggregate):
    """A study received by the platform (gateway push, PACS retrieve or file import) for one
    establishment. Instances are recorded in batches (one event per association flush) and
    deduplicated by SOP Instance UID: a resend records nothing."""

    TOPIC = "relais:ReceivedStudy"

    @staticmethod
    def create_id(establishment_id: str, study_instance_uid: str, **_: object) -> UUID:
        return received_study_id(establishment_id, study_instance_uid)

    class Created(Aggregate.Created):
        """The study's first instances arrived for this establishment."""

        TOPIC = "relais:ReceivedStudy.Created"

        establishment_id: str
        study_instance_uid: str
        patient: Json
        study: Json
        actor: Json
        occurred_at: datetime

    class InstancesReceived(Aggregate.Event):
        """Instances not seen before (one batch), with the series they opened; `source` says how they came.
        v2: each instance names its patient identity (`pid`, an identity_key) and `identities` holds the
        identities first seen in this batch (key → DICOM patient); v1 instances are the study's first patient's."""

        TOPIC = "relais:ReceivedStudy.InstancesReceived"
        class_version = 2

        instances: list[Json]
        series: dict[str, Json]
        identities: dict[str, Json]
        source: Json
        actor: Json
        occurred_at: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["identities"] = {}

    class RetrieveRecorded(Aggregate.Event):
        """A retrieve from a PACS for a dossier: started, completed, incomplete or failed."""

        TOPIC = "relais:ReceivedStudy.RetrieveRecorded"

        dossier_id: str
        node_aet: str
        method: str
        status: str
        reason: str
        expected: int
        received: int
        actor: Json
        occurred_at: datetime

    class Downloaded(Aggregate.Event):
        """Someone downloaded the study for a dossier (`what`: ZIP or DICOMweb instances)."""

        TOPIC = "relais:ReceivedStudy.Downloaded"

        dossier_id: str
        what: str
        actor: Json
        occurred_at: datetime

    class ExportRecorded(Aggregate.Event):
        """An export to a DICOM node: its status, progress and the instances not stored."""

        TOPIC = "relais:ReceivedStudy.ExportRecorded"

        dossier_id: str
        node_aet: str
        status: str
        sent: int
        total: int
        failures: list[Json]
        actor: Json
        occurred_at: datetime

    @event(Created)
    def __init__(
        self,
        *,
        establishment_id: str,
        study_instance_uid: str,
        patient: Json,
        study: Json,
        actor: Json,
        occurred_at: datetime,
    ) -> None:
        self.establishment_id = establishment_id
        self.study_instance_uid = study_instance_uid
        self.patient = patient
        self.study = study
        self.instances: dict[str, str] = {}  # SOP Instance UID -> Series Instance UID
        self.series: dict[str, Json] = {}
        self.first_received_on = occurred_at
        self.last_received_on = occurred_at
        self.sources: list[str] = []
        self.last_retrieve: Json | None = None

    @property
    def instance_count(self) -> int:
        return len(self.instances)

    @property
    def modalities(self) -> list[str]:
        return sorted({s["modality"] for s in self.series.values() if s.get("modality")})

    @property
    def first_identity(self) -> str:
        """The identity of the instances recorded before identities were (and of the study's creation)."""
        return identity_key(self.patient)

    @property
    def identities(self) -> dict[str, Json]:
        """Every DICOM patient identity among the study's instances (key → patient), first seen first."""
        known: dict[str, Json] = self.__dict__.get("_identities") or {}
        if any(pid not in known for pid in self.identity_counts):
            return {self.first_identity: dicom_identity(self.patient), **known}
        return dict(known)

    def identity_of(self, sop: str) -> str:
        return self.__dict__.get("_pids", {}).get(sop) or self.first_identity

    @property
    def identity_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for sop in self.instances:
            pid = self.identity_of(sop)
            counts[pid] = counts.get(pid, 0) + 1
        return counts

    def instances_of(self, identities: list[str] | set[str]) -> dict[str, str]:
        """SOP Instance UID → Series Instance UID of the instances of these identities only."""
        return {sop: se for sop, se in self.instances.items() if self.identity_of(sop) in identities}

    def receive(
        self, *, instances: list[Json], series: dict[str, Json], source: Json, actor: Json, occurred_at: datetime,
        identities: dict[str, Json] | None = None,
    ) -> list[Json]:
        """Records the instances not seen yet (one event); returns them. Nothing new: no event.
        Each instance names its identity (`pid`); `identities` gives the patient of each key."""
        seen: set[str] = set()
        new: list[Json] = []
        for i in instances:
            sop = i["sop"]
            if sop in self.instances or sop in seen:
                continue
            seen.add(sop)
            new.append(i)
        if new:
            new_series = {
                uid: meta for uid, meta in series.items()
                if uid not in self.series and any(i["series"] == uid for i in new)
            }
            known = self.__dict__.get("_identities") or {}
            arrived = dict.fromkeys(i.get("pid") for i in new)  # first seen first: it names the patient shown
            new_identities = {
                pid: dicom_identity((identities or {}).get(pid) or {}) for pid in arrived if pid and pid not in known
            }
            self._instances_received(
                instances=new, series=new_series, identities=new_identities, source=source, actor=actor,
                occurred_at=occurred_at,
            )
        return new

    @event(InstancesReceived)
    def _instances_received(
        self, instances: list[Json], series: dict[str, Json], identities: dict[str, Json], source: Json, actor: Json,
        occurred_at: datetime,
    ) -> None:
        if identities:
            self._identities = {**(self.__dict__.get("_identities") or {}), **identities}
        pids = self.__dict__.setdefault("_pids", {})
        for i in instances:
            if i.get("pid"):
                pids[i["sop"]] = i["pid"]
        for uid, meta in series.items():
            self.series.setdefault(uid, dict(meta, count=0))
        for i in instances:
            self.instances[i["sop"]] = i["series"]
            s = self.series.setdefault(i["series"], {"modality": "", "description": "", "number": None, "count": 0})
            s["count"] += 1
        if source.get("kind") and source["kind"] not in self.sources:
            self.sources.append(source["kind"])
        self.last_received_on = max(self.last_received_on, occurred_at)

    def record_retrieve(
        self, *, dossier_id: str, node_aet: str, method: str, status: str, reason: str,
        expected: int, received: int, actor: Json, occurred_at: datetime,
    ) -> None:
        """Records a retrieve from a PACS: started, then completed, incomplete or failed (with a reason)."""
        if status not in ("started", "completed", "incomplete", "failed"):
            raise InvalidFieldError("status", "started, completed, incomplete ou failed")
        self._retrieve_recorded(
            dossier_id=dossier_id, node_aet=node_aet, method=method, status=status, reason=reason,
            expected=expected, received=received, actor=actor, occurred_at=occurred_at,
        )

    @event(RetrieveRecorded)
    def _retrieve_recorded(
        self, dossier_id: str, node_aet: str, method: str, status: str, reason: str,
        expected: int, received: int, actor: Json, occurred_at: datetime,
    ) -> None:
        self.last_retrieve = {
            "dossier_id": dossier_id, "node_aet": node_aet, "method": method, "status": status,
            "reason": reason, "expected": expected, "received": received, "at": occurred_at.isoformat(),
        }

    def record_download(self, *, dossier_id: str, what: str, actor: Json, occurred_at: datetime) -> None:
        """Someone downloaded the study (ZIP with DICOMDIR, or DICOMweb instances)."""
        self._downloaded(dossier_id=dossier_id, what=what, actor=actor, occurred_at=occurred_at)

    @event(Downloaded)
    def _downloaded(self, dossier_id: str, what: str, actor: Json, occurred_at: datetime) -> None:
        pass

    def record_export(
        self, *, dossier_id: str, node_aet: str, status: str, sent: int, total: int, failures: list[Json],
        actor: Json, occurred_at: datetime,
    ) -> None:
        """An export to a DICOM node: started, running (progress: `sent` of `total` so far), then
        completed, partial or failed, with the status of
        every instance that was not stored (`failures`: SOP Instance UID, DICOM status, reason)."""
        if status not in ("started", "running", "completed", "partial", "failed"):
            raise InvalidFieldError("status", "started, running, completed, partial ou failed")
        self._export_recorded(
            dossier_id=dossier_id, node_aet=node_aet, status=status, sent=sent, total=total, failures=failures,
            actor=actor, occurred_at=occurred_at,
        )

    @event(ExportRecorded)
    def _export_recorded(
        self, dossier_id: str, node_aet: str, status: str, sent: int, total: int, failures: list[Json],
        actor: Json, occurred_at: datetime,
    ) -> None:
        self.__dict__.setdefault("exports", {})[f"{dossier_id}:{node_aet}"] = {
            "status": status, "sent": sent, "total": total, "failures": failures, "at": occurred_at.isoformat(),
            "by": actor.get("practitioner_id"),
        }


def accepted_identities(study: ReceivedStudy, attachment: Json) -> list[str]:
    """The identities a dossier's attachment accepted (attachments made before identities were
    recorded accepted the study's first patient only)."""
    return list(attachment.get("identities") or [study.first_identity])


def attached_instances(study: ReceivedStudy, attachment: Json) -> dict[str, str]:
    """The study's instances a dossier shows: those of the identities its attachment accepted; the
    others are quarantined (kept, listed, never shown in that dossier)."""
    return study.instances_of(set(accepted_identities(study, attachment)))
