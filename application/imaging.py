"""Imaging use cases: record received instances in batches, attach received studies to dossiers."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from eventsourcing.application import AggregateNotFoundError

from application.base import SYSTEM_ACTOR, RelaisBase
from application.errors import ConflictError, ForbiddenError, NotFoundError
from domain.directory import DicomNode, node_id
from domain.dossier import Dossier
from domain.imaging import ReceivedStudy, received_study_id, valid_uid
from domain.values import Actor, ImagingSource, Role

RETRIES = 5


@dataclass(frozen=True)
class ReceivedInstance:
    """One instance stored durably, as the receiver read it from its header."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    instance_number: int | None = None
    size: int = 0
    patient: dict = field(default_factory=dict)  # id, name, birth_date, sex
    study: dict = field(default_factory=dict)  # accession_number, date, time, description
    series: dict = field(default_factory=dict)  # modality, description, number

    def as_event_item(self) -> dict:
        return {
            "sop": self.sop_instance_uid, "series": self.series_instance_uid, "class": self.sop_class_uid,
            "ts": self.transfer_syntax_uid, "number": self.instance_number, "size": self.size,
        }


@dataclass(frozen=True)
class StudyUpdate:
    """What a batch changed on one received study."""

    study_id: str
    establishment_id: str
    study_instance_uid: str
    accession_number: str
    new_instances: int
    instance_count: int


def system_actor(establishment_id: str, name: str) -> dict:
    return dict(SYSTEM_ACTOR, establishment_id=establishment_id, name=name)


class ImagingUseCases(RelaisBase):
    """Received studies (DICOM node, PACS retrieve, file import) and their attachment to dossiers."""

    def record_received(
        self, *, establishment_id: str, instances: list[ReceivedInstance], source: dict,
        occurred_at: datetime | None = None,
    ) -> list[StudyUpdate]:
        """Records a batch of stored instances: one event per study, all in one transaction.

        Instances already recorded are skipped (a resend changes nothing). A concurrent
        writer on the same study (two associations) makes the batch retry on fresh state.
        """
        when = occurred_at or self.clock()
        actor = system_actor(establishment_id, f"DICOM {source.get('calling_aet') or source.get('kind', '')}".strip())
        by_study: dict[str, list[ReceivedInstance]] = defaultdict(list)
        for i in instances:
            by_study[valid_uid(i.study_instance_uid, "study_instance_uid")].append(i)
        for attempt in range(RETRIES):
            studies: list[ReceivedStudy] = []
            updates: list[StudyUpdate] = []
            for study_uid, items in by_study.items():
                sid = received_study_id(establishment_id, study_uid)
                try:
                    study = self.repository.get(sid)
                except AggregateNotFoundError:
                    first = items[0]
                    study = ReceivedStudy(
                        establishment_id=str(establishment_id), study_instance_uid=study_uid,
                        patient=dict(first.patient), study=dict(first.study), actor=actor, occurred_at=when,
                    )
                series = {}
                for i in items:
                    series.setdefault(i.series_instance_uid, dict(i.series))
                new = study.receive(
                    instances=[i.as_event_item() for i in items], series=series, source=source,
                    actor=actor, occurred_at=when,
                )
                studies.append(study)
                updates.append(StudyUpdate(
                    study_id=str(study.id), establishment_id=str(establishment_id), study_instance_uid=study_uid,
                    accession_number=study.study.get("accession_number") or "", new_instances=len(new),
                    instance_count=study.instance_count,
                ))
            try:
                self.commit(*studies)
                return updates
            except ConflictError:
                if attempt == RETRIES - 1:
                    raise
        return []  # pragma: no cover

    def received_study(self, *, study_id: str) -> ReceivedStudy:
        return self.load(ReceivedStudy, study_id, "étude reçue")

    def await_imaging(
        self, *, dossier_id: str, actor_id: str, accession_number: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        """The requester names the exam awaited: a study received with this Accession Number attaches itself."""
        accession = (accession_number or "").strip()
        return self._act(  # type: ignore[attr-defined]
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.await_imaging(accession_number=accession, actor=a, occurred_at=t), occurred_at,
        )

    def _study_as_attachment(self, study: ReceivedStudy, source: str) -> dict:
        return {
            "study_instance_uid": study.study_instance_uid,
            "source": source,
            "description": (study.study.get("description") or "")[:200],
            "modalities": study.modalities,
            "study_date": study.study.get("date") or None,
            "series_count": len(study.series),
            "instance_count": study.instance_count,
            "received_study_id": str(study.id),
        }

    def attach_received_study(
        self, *, dossier_id: str, actor_id: str, study_id: str, source: str = ImagingSource.DICOM_STORE,
        expected_version: int | None = None, occurred_at: datetime | None = None,
    ) -> int | None:
        """The requester attaches a study received for their establishment."""
        study = self.received_study(study_id=study_id)
        attachment = self._study_as_attachment(study, source)

        def action(d: Dossier, a: Actor, t: datetime) -> None:
            if a.establishment_id != study.establishment_id or d.requester["establishment_id"] != study.establishment_id:
                raise ForbiddenError("cette étude n'a pas été reçue pour votre établissement")
            d.attach_imaging(study=attachment, actor=a, occurred_at=t)

        return self._act(dossier_id, actor_id, expected_version, action, occurred_at)  # type: ignore[attr-defined]

    def auto_attach(self, *, study_id: str, dossier_ids: list[str], source: str = ImagingSource.DICOM_STORE) -> list[str]:
        """Attaches a received study to the dossiers awaiting its Accession Number (the platform acts).

        A dossier already holding the study with the same instance count records nothing."""
        study = self.received_study(study_id=study_id)
        accession = study.study.get("accession_number") or ""
        done = []
        for did in dossier_ids:
            for attempt in range(RETRIES):
                try:
                    dossier = self.load(Dossier, did, "télédossier")
                except NotFoundError:
                    break
                if (
                    dossier.is_over
                    or dossier.requester["establishment_id"] != study.establishment_id
                    or accession not in dossier.awaited_accessions
                ):
                    break
                current = dossier.imaging.get(study.study_instance_uid)
                if current and current.get("instance_count") == study.instance_count:
                    break
                dossier.attach_imaging(
                    study=self._study_as_attachment(study, source),
                    actor=Actor.from_dict(system_actor(study.establishment_id, "Relais (rattachement automatique)")),
                    occurred_at=self.clock(),
                )
                try:
                    self.commit(dossier)
                    done.append(did)
                    break
                except ConflictError:
                    continue
        return done

    def requester_actor(self, *, dossier_id: str, actor_id: str, establishment_id: str | None = None) -> Actor:
        """The actor, if a clinician of the requester side of this open dossier (pickers, search, import)."""
        dossier = self.load(Dossier, dossier_id, "télédossier")
        actor = self._actor_on(dossier, actor_id, establishment_id)  # type: ignore[attr-defined]
        if not dossier.is_requester(actor) or dossier.is_over:
            raise ForbiddenError("seul l'établissement requérant d'un télédossier ouvert peut y joindre de l'imagerie")
        return actor

    # Reads of images traced as Access events (kind "imaging"): at most one granted access per
    # (user, establishment, dossier, study, kind of read) per window, per process; see study_for_reader.
    imaging_read_window: ClassVar[float] = 60.0

    def study_for_reader(
        self, *, dossier_id: str, actor_id: str, study_uid: str, establishment_id: str | None = None,
        role: str = Role.CLINICIAN, read: str | None = None,
    ) -> ReceivedStudy:
        """A study attached to a dossier the actor may read (viewer, download, DICOMweb, export).

        With `read` (the kind of read: "viewer" for the viewer page, frames, images and thumbnails;
        "dicomweb" for QIDO-RS/WADO-RS; "download"; "export"), the read is traced as an Access event
        of kind "imaging", target "<read>:<study uid>":

        - a refusal (role not held, dossier not theirs, study not attached to it) is always
          recorded, once per attempt;
        - a granted read is recorded once per (user, establishment, dossier, study, kind of read)
          per `imaging_read_window` seconds (60) in this process: scrolling through a series asks
          for one frame and one image per slice, and that whole scroll (or a DICOMweb viewer
          fetching hundreds of instances) is one access, not hundreds. Each web process keeps its
          own window, so several processes may record the same minute once each — never zero.
        """
        dossier = self.load(Dossier, dossier_id, "télédossier")
        who = {"practitioner_id": actor_id, "role": str(role), "establishment_id": establishment_id or ""}
        target = f"{read}:{study_uid}"
        try:
            actor = self._actor_on(dossier, actor_id, establishment_id, role)  # type: ignore[attr-defined]
            who = actor.as_dict()
            if not dossier.may_read(actor):
                raise ForbiddenError("ce télédossier ne vous concerne pas")
            if study_uid not in dossier.imaging:
                raise NotFoundError("examen non joint à ce télédossier")
        except (ForbiddenError, NotFoundError) as e:
            if read:
                self.record_access(  # type: ignore[attr-defined]
                    dossier_id=str(dossier.id), actor=who, kind="imaging", target=target, outcome="denied",
                    reason=str(e), dossier_version=dossier.version,
                )
            raise
        study = self.load(
            ReceivedStudy, received_study_id(dossier.requester["establishment_id"], study_uid), "étude reçue"
        )
        if read and self._first_read_in_window(
            (actor_id, who.get("establishment_id") or "", str(dossier.id), study_uid, read)
        ):
            self.record_access(  # type: ignore[attr-defined]
                dossier_id=str(dossier.id), actor=who, kind="imaging", target=target, dossier_version=dossier.version,
            )
        return study

    def _first_read_in_window(self, key: tuple) -> bool:
        """True when `key` was not seen in the last `imaging_read_window` seconds (and marks it seen)."""
        state = self.__dict__.get("_imaging_reads")
        if state is None:
            state = self.__dict__.setdefault("_imaging_reads", (threading.Lock(), {}))
        lock, seen = state
        now = time.monotonic()
        with lock:
            last = seen.get(key)
            if last is not None and now - last < self.imaging_read_window:
                return False
            seen[key] = now
            if len(seen) > 10_000:  # forget expired keys
                for k in [k for k, t in seen.items() if now - t >= self.imaging_read_window]:
                    del seen[k]
            return True

    def may_see_study(self, *, study_id: str, actor_id: str) -> ReceivedStudy:
        """The study, if the actor is a clinician of the establishment that received it."""
        study = self.received_study(study_id=study_id)
        try:
            self.actor_for(practitioner_id=actor_id, establishment_id=study.establishment_id, role=Role.CLINICIAN)  # type: ignore[attr-defined]
        except ForbiddenError:
            raise ForbiddenError("cette étude n'a pas été reçue pour votre établissement") from None
        return study

    # ------------------------------------------------------------------ PACS query/retrieve

    def set_node_retrieve_method(self, *, aet: str, method: str, admin_id: str | None = None) -> int | None:
        """C-MOVE to our node (default) or C-GET, per PACS (a new event on the node)."""
        node = self.load(DicomNode, node_id(aet), "nœud DICOM")
        node.set_retrieve_method(method=method, actor=self._admin(admin_id), occurred_at=self.clock())  # type: ignore[attr-defined]
        return self.commit(node)

    def pacs_for(self, *, dossier_id: str, actor_id: str, node_aet: str) -> dict:
        """The PACS a requester may query/retrieve from for this dossier (a PACS of their establishment)."""
        dossier = self.load(Dossier, dossier_id, "télédossier")
        actor = self._actor_on(dossier, actor_id, None)  # type: ignore[attr-defined]
        if not dossier.is_requester(actor) or dossier.is_over:
            raise ForbiddenError("seul l'établissement requérant d'un télédossier ouvert peut interroger son PACS")
        node = self.load(DicomNode, node_id(node_aet), "PACS")
        if node.kind != "pacs" or node.establishment_id != dossier.requester["establishment_id"] or not node.active:
            raise ForbiddenError("ce PACS n'est pas un PACS de votre établissement")
        return {
            "aet": node.aet, "host": node.host, "port": node.port, "method": node.retrieve_method,
            "establishment_id": node.establishment_id,
        }

    def record_retrieve(
        self, *, establishment_id: str, study_instance_uid: str, patient: dict, study: dict, dossier_id: str,
        node_aet: str, method: str, status: str, reason: str, expected: int, received: int,
    ) -> str:
        """Records a retrieve's start or outcome on the received study (created from C-FIND if need be)."""
        uid = valid_uid(study_instance_uid, "study_instance_uid")
        actor = system_actor(establishment_id, f"DICOM {node_aet}")
        for attempt in range(RETRIES):
            sid = received_study_id(establishment_id, uid)
            try:
                agg = self.repository.get(sid)
            except AggregateNotFoundError:
                agg = ReceivedStudy(
                    establishment_id=str(establishment_id), study_instance_uid=uid, patient=dict(patient),
                    study=dict(study), actor=actor, occurred_at=self.clock(),
                )
            agg.record_retrieve(
                dossier_id=dossier_id, node_aet=node_aet, method=method, status=status, reason=reason,
                expected=expected, received=received, actor=actor, occurred_at=self.clock(),
            )
            try:
                self.commit(agg)
                return str(agg.id)
            except ConflictError:
                if attempt == RETRIES - 1:
                    raise
        return ""  # pragma: no cover

    def attach_retrieved(self, *, dossier_id: str, study_id: str) -> bool:
        """Attaches a completely retrieved study to the dossier that asked for it (the platform acts)."""
        study = self.received_study(study_id=study_id)
        for _ in range(RETRIES):
            dossier = self.load(Dossier, dossier_id, "télédossier")
            if dossier.requester["establishment_id"] != study.establishment_id:
                raise ForbiddenError("étude d'un autre établissement")
            current = dossier.imaging.get(study.study_instance_uid)
            if current and current.get("instance_count") == study.instance_count:
                return False
            dossier.attach_imaging(
                study=self._study_as_attachment(study, ImagingSource.PACS_RETRIEVE),
                actor=Actor.from_dict(system_actor(study.establishment_id, "Relais (récupération PACS)")),
                occurred_at=self.clock(),
            )
            try:
                self.commit(dossier)
                return True
            except ConflictError:
                continue
        return False

    # ------------------------------------------------------------------ at the recipient

    def _reader_actor(self, dossier_id: str, actor_id: str, establishment_id: str | None) -> Actor:
        dossier = self.load(Dossier, dossier_id, "télédossier")
        return self._actor_on(dossier, actor_id, establishment_id)  # type: ignore[attr-defined]

    def _on_study(self, study_id: str, change: Callable[[ReceivedStudy], None]) -> None:
        for attempt in range(RETRIES):
            study = self.received_study(study_id=study_id)
            change(study)
            try:
                self.commit(study)
                return
            except ConflictError:
                if attempt == RETRIES - 1:
                    raise

    def record_download(
        self, *, dossier_id: str, actor_id: str, study_uid: str, what: str = "zip", establishment_id: str | None = None,
        role: str = Role.CLINICIAN, read: str = "download",
    ) -> ReceivedStudy:
        """A download of a study attached to a dossier the actor may read: checked (the read traced as
        `read`: "download" for the ZIP, "dicomweb" for a WADO-RS study or series retrieve), then
        recorded as ReceivedStudy.Downloaded with `what` ("zip", "dicomweb:study",
        "dicomweb:series:<Series Instance UID>")."""
        study = self.study_for_reader(
            dossier_id=dossier_id, actor_id=actor_id, study_uid=study_uid, establishment_id=establishment_id,
            role=role, read=read,
        )
        actor = self._reader_actor(dossier_id, actor_id, establishment_id).as_dict()
        self._on_study(str(study.id), lambda s: s.record_download(
            dossier_id=dossier_id, what=what, actor=actor, occurred_at=self.clock()))
        return study

    def export_target(
        self, *, dossier_id: str, actor_id: str, study_uid: str, node_aet: str, establishment_id: str | None = None,
    ) -> dict:
        """The actor's own establishment's DICOM node to export a study of this dossier to."""
        study = self.study_for_reader(
            dossier_id=dossier_id, actor_id=actor_id, study_uid=study_uid, establishment_id=establishment_id,
            read="export",
        )
        actor = self._reader_actor(dossier_id, actor_id, establishment_id)
        node = self.load(DicomNode, node_id(node_aet), "nœud DICOM")
        if node.establishment_id != actor.establishment_id or not node.active:
            raise ForbiddenError("export possible seulement vers un nœud DICOM de votre établissement")
        return {"aet": node.aet, "host": node.host, "port": node.port, "study_id": str(study.id), "actor": actor.as_dict()}

    def record_export(
        self, *, study_id: str, dossier_id: str, node_aet: str, status: str, sent: int, total: int,
        failures: list, actor: dict,
    ) -> None:
        self._on_study(study_id, lambda s: s.record_export(
            dossier_id=dossier_id, node_aet=node_aet, status=status, sent=sent, total=total, failures=failures,
            actor=actor, occurred_at=self.clock()))
