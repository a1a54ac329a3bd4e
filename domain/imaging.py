"""The ReceivedStudy aggregate: a DICOM study received by the platform for one establishment."""

from __future__ import annotations

import re
from datetime import datetime
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidFieldError
from domain.values import Json

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
        """Instances not seen before (one batch), with the series they opened; `source` says how they came."""

        TOPIC = "relais:ReceivedStudy.InstancesReceived"

        instances: list[Json]
        series: dict[str, Json]
        source: Json
        actor: Json
        occurred_at: datetime

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

    def receive(
        self, *, instances: list[Json], series: dict[str, Json], source: Json, actor: Json, occurred_at: datetime
    ) -> list[Json]:
        """Records the instances not seen yet (one event); returns them. Nothing new: no event."""
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
            self._instances_received(
                instances=new, series=new_series, source=source, actor=actor, occurred_at=occurred_at
            )
        return new

    @event(InstancesReceived)
    def _instances_received(
        self, instances: list[Json], series: dict[str, Json], source: Json, actor: Json, occurred_at: datetime
    ) -> None:
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
