"""Reading received studies from a dossier: traced reads, downloads and exports, and the StudyView."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from application.access_log import AccessLog
from application.actors import Actors
from application.base import Core
from application.errors import ConflictError, ForbiddenError, NotFoundError
from domain.directory import DicomNode, node_id
from domain.dossier import Dossier
from domain.imaging import ReceivedStudy, accepted_identities, attached_instances, received_study_id
from domain.values import Actor, Json, Role

RETRIES = 5


@dataclass(frozen=True)
class SeriesSummary:
    """One series of a received study, as the viewer's thumbnails and QIDO-RS show it."""

    uid: str
    modality: str | None
    description: str | None
    number: int | None
    count: int  # instances received


@dataclass(frozen=True)
class StudyView:
    """A received study as its readers get it (viewer, DICOMweb, download, export): never the aggregate.

    Study and patient attributes are as received (None: not in what was received; a study created
    from a PACS's C-FIND answer has no time nor referring physician).
    """

    id: str
    establishment_id: str
    study_instance_uid: str
    accession_number: str | None
    study_date: str | None
    study_time: str | None
    description: str | None
    referring_physician: str | None
    patient_id: str | None
    patient_name: str | None
    patient_birth_date: str | None
    patient_sex: str | None
    modalities: tuple[str, ...]
    series: tuple[SeriesSummary, ...]  # by Series Number (series without one last), then UID
    instances: Mapping[str, str]  # SOP Instance UID → Series Instance UID (read-only)
    sources: tuple[str, ...]  # how instances came: "dicom_store", "pacs_retrieve", "file_import"…
    first_received_on: datetime
    last_received_on: datetime
    last_retrieve: Mapping[str, Any] | None  # dossier_id, node_aet, method, status, reason, expected, received, at
    exports: Mapping[str, Mapping[str, Any]]  # "<dossier id>:<node AE title>" → status, sent, total, failures, at, by

    @property
    def instance_count(self) -> int:
        return len(self.instances)

    def export_to(self, dossier_id: str, node_aet: str) -> Mapping[str, Any] | None:
        """The last recorded state of this study's export from `dossier_id` to the node, if any."""
        return self.exports.get(f"{dossier_id}:{node_aet}")


def study_view(study: ReceivedStudy, attachment: Json | None = None) -> StudyView:
    """The StudyView of a received study aggregate (built here and only here). Read from a dossier
    (`attachment`), it holds only the instances of the patient identities the dossier accepted:
    instances of another patient (quarantined) are in no viewer, download, export or DICOMweb answer."""
    instances = dict(study.instances) if attachment is None else attached_instances(study, attachment)
    patient = study.patient  # the study's first patient; read from a dossier, the patient it accepted
    if attachment is not None:
        known = study.identities
        patient = next((known[k] for k in accepted_identities(study, attachment) if k in known), patient)
    counts: dict[str, int] = {}
    for se in instances.values():
        counts[se] = counts.get(se, 0) + 1
    shown = study.series if attachment is None else {u: m for u, m in study.series.items() if u in counts}
    series = sorted(shown.items(), key=lambda s: (s[1].get("number") is None, s[1].get("number") or 0, s[0]))
    exports: dict[str, Json] = getattr(study, "exports", {})  # set by the first ExportRecorded event
    return StudyView(
        id=str(study.id), establishment_id=study.establishment_id, study_instance_uid=study.study_instance_uid,
        accession_number=study.study.get("accession_number"), study_date=study.study.get("date"),
        study_time=study.study.get("time"), description=study.study.get("description"),
        referring_physician=study.study.get("referring"),
        patient_id=patient.get("id"), patient_name=patient.get("name"),
        patient_birth_date=patient.get("birth_date"), patient_sex=patient.get("sex"),
        modalities=tuple(sorted({m["modality"] for m in shown.values() if m.get("modality")})),
        series=tuple(
            SeriesSummary(
                uid=uid, modality=meta.get("modality"), description=meta.get("description"),
                number=meta.get("number"), count=counts.get(uid, 0) if attachment is not None else meta.get("count", 0),
            )
            for uid, meta in series
        ),
        instances=MappingProxyType(instances), sources=tuple(study.sources),
        first_received_on=study.first_received_on, last_received_on=study.last_received_on,
        last_retrieve=MappingProxyType(dict(study.last_retrieve)) if study.last_retrieve else None,
        exports=MappingProxyType({k: MappingProxyType(dict(v)) for k, v in exports.items()}),
    )


class StudyReadUseCases:
    """Studies attached to dossiers, read by those who may read the dossier; each read traced."""

    # Reads of images traced as Access events (kind "imaging"): at most one granted access per
    # (user, establishment, dossier, study, kind of read) per window, per process; see view_study.
    # Why not one per request: an Access is one committed stream, a median 5.9 ms (131/s, p99 29 ms)
    # on the 2-core machine under load 11.8 (bench/access_events.py); a DICOMweb viewer scrolling a
    # 500-slice series asks for ~500 frames — 500 events and ~3 s of commits per scroll and user,
    # the audit trail drowned in them. Coalesced, the trace stays auditable: each granted access
    # stands for that user's reads of that kind of that study for the next minute; refusals are
    # never coalesced.
    read_window: float = 60.0

    def __init__(self, core: Core, actors: Actors, access_log: AccessLog) -> None:
        self.core = core
        self.actors = actors
        self.access_log = access_log
        self._reads_lock = threading.Lock()
        self._reads: dict[tuple[str, ...], float] = {}  # key of a granted read → when it was traced

    def _study(self, study_id: str) -> ReceivedStudy:
        return self.core.load(ReceivedStudy, study_id, "étude reçue")

    def received_study_view(self, *, study_id: str, dossier_id: str | None = None) -> StudyView:
        """A received study by id, not traced: for the retrieve's progress and the export job (their callers
        check the user); with `dossier_id`, as that dossier shows it (its accepted identities only)."""
        study = self._study(study_id)
        return study_view(study) if dossier_id is None else self._dossier_view(dossier_id, study)

    def view_study(
        self, *, dossier_id: str, actor_id: str, study_uid: str, establishment_id: str | None = None,
        role: str = Role.CLINICIAN, read: str | None = None,
    ) -> StudyView:
        """A study attached to a dossier the actor may read, as a StudyView (viewer, DICOMweb, download, export).

        With `read` (the kind of read: "viewer" for the viewer page, frames, images and thumbnails;
        "dicomweb" for QIDO-RS/WADO-RS; "download"; "export"), the read is traced as an Access event
        of kind "imaging", target "<read>:<study uid>":

        - a refusal (role not held, dossier not theirs, study not attached to it) is always
          recorded, once per attempt;
        - a granted read is recorded once per (user, establishment, dossier, study, kind of read)
          per `read_window` seconds (60) in this process: scrolling through a series asks
          for one frame and one image per slice, and that whole scroll (or a DICOMweb viewer
          fetching hundreds of instances) is one access, not hundreds. Each web process keeps its
          own window, so several processes may record the same minute once each — never zero.
        """
        return self._dossier_view(dossier_id, self._readable(dossier_id, actor_id, study_uid, establishment_id, role, read))

    def _dossier_view(self, dossier_id: str, study: ReceivedStudy) -> StudyView:
        """The study as the dossier shows it: only the identities its attachment accepted."""
        dossier = self.core.load(Dossier, dossier_id, "télédossier")
        return study_view(study, dossier.imaging.get(study.study_instance_uid) or {"identities": []})

    def _readable(
        self, dossier_id: str, actor_id: str, study_uid: str, establishment_id: str | None, role: str, read: str | None,
    ) -> ReceivedStudy:
        """The aggregate behind `view_study`, checked and traced as described there."""
        dossier = self.core.load(Dossier, dossier_id, "télédossier")
        who: Json = {"practitioner_id": actor_id, "role": str(role), "establishment_id": establishment_id or ""}
        target = f"{read}:{study_uid}"
        try:
            actor = self.actors.on_dossier(dossier, actor_id, establishment_id, role)
            who = actor.as_dict()
            if not dossier.may_read(actor):
                raise ForbiddenError("ce télédossier ne vous concerne pas")
            if study_uid not in dossier.imaging:
                raise NotFoundError("examen non joint à ce télédossier")
        except (ForbiddenError, NotFoundError) as e:
            if read:
                self.access_log.record_access(
                    dossier_id=str(dossier.id), actor=who, kind="imaging", target=target, outcome="denied",
                    reason=str(e), dossier_version=dossier.version,
                )
            raise
        study = self.core.load(
            ReceivedStudy, received_study_id(dossier.requester["establishment_id"], study_uid), "étude reçue"
        )
        if read and self._first_read_in_window(
            (actor_id, who.get("establishment_id") or "", str(dossier.id), study_uid, read)
        ):
            self.access_log.record_access(
                dossier_id=str(dossier.id), actor=who, kind="imaging", target=target, dossier_version=dossier.version,
            )
        return study

    def _first_read_in_window(self, key: tuple[str, ...]) -> bool:
        """True when `key` was not seen in the last `read_window` seconds (and marks it seen)."""
        now = time.monotonic()
        with self._reads_lock:
            last = self._reads.get(key)
            if last is not None and now - last < self.read_window:
                return False
            self._reads[key] = now
            if len(self._reads) > 10_000:  # forget expired keys
                for k in [k for k, t in self._reads.items() if now - t >= self.read_window]:
                    del self._reads[k]
            return True

    # ------------------------------------------------------------------ downloads and exports

    def _reader_actor(self, dossier_id: str, actor_id: str, establishment_id: str | None) -> Actor:
        dossier = self.core.load(Dossier, dossier_id, "télédossier")
        return self.actors.on_dossier(dossier, actor_id, establishment_id)

    def _on_study(self, study_id: str, change: Callable[[ReceivedStudy], None]) -> None:
        for attempt in range(RETRIES):
            study = self._study(study_id)
            change(study)
            try:
                self.core.commit(study)
                return
            except ConflictError:
                if attempt == RETRIES - 1:
                    raise

    def download_study(
        self, *, dossier_id: str, actor_id: str, study_uid: str, what: str = "zip", establishment_id: str | None = None,
        role: str = Role.CLINICIAN, read: str = "download",
    ) -> StudyView:
        """A download of a study attached to a dossier the actor may read: checked (the read traced as
        `read`: "download" for the ZIP, "dicomweb" for a WADO-RS study or series retrieve), then
        recorded as ReceivedStudy.Downloaded with `what` ("zip", "dicomweb:study",
        "dicomweb:series:<Series Instance UID>"). Returns the study as it was read."""
        study = self._readable(dossier_id, actor_id, study_uid, establishment_id, role, read)
        actor = self._reader_actor(dossier_id, actor_id, establishment_id).as_dict()
        self._on_study(str(study.id), lambda s: s.record_download(
            dossier_id=dossier_id, what=what, actor=actor, occurred_at=self.core.clock()))
        return self._dossier_view(dossier_id, study)

    def export_target(
        self, *, dossier_id: str, actor_id: str, study_uid: str, node_aet: str, establishment_id: str | None = None,
    ) -> Json:
        """The actor's own establishment's DICOM node to export a study of this dossier to."""
        study = self._readable(dossier_id, actor_id, study_uid, establishment_id, Role.CLINICIAN, "export")
        actor = self._reader_actor(dossier_id, actor_id, establishment_id)
        node = self.core.load(DicomNode, node_id(node_aet), "nœud DICOM")
        if node.establishment_id != actor.establishment_id or not node.active:
            raise ForbiddenError("export possible seulement vers un nœud DICOM de votre établissement")
        return {"aet": node.aet, "host": node.host, "port": node.port, "study_id": str(study.id), "actor": actor.as_dict()}

    def record_export(
        self, *, study_id: str, dossier_id: str, node_aet: str, status: str, sent: int, total: int,
        failures: list[Json], actor: Json,
    ) -> None:
        self._on_study(study_id, lambda s: s.record_export(
            dossier_id=dossier_id, node_aet=node_aet, status=status, sent=sent, total=total, failures=failures,
            actor=actor, occurred_at=self.core.clock()))
