"""Imaging use cases: record received instances and retrieves, attach received studies to dossiers."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from application.actors import Acting, Actors, Who
from application.base import SYSTEM_ACTOR, Core
from application.commands import DossierCommands
from application.errors import ConflictError, ForbiddenError, NotFoundError
from domain.directory import DicomNode, node_id
from domain.dossier import Dossier
from domain.imaging import ReceivedStudy, received_study_id, valid_uid
from domain.values import Actor, ImagingSource, Json

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
    patient: Json = field(default_factory=dict)  # id, name, birth_date, sex
    study: Json = field(default_factory=dict)  # accession_number, date, time, description
    series: Json = field(default_factory=dict)  # modality, description, number

    def as_event_item(self) -> Json:
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


def system_actor(establishment_id: str, name: str) -> Json:
    """The platform acting for an establishment (a DICOM receipt, an automatic attachment)."""
    return dict(SYSTEM_ACTOR, establishment_id=establishment_id, name=name)


def attachment_of(study: ReceivedStudy, source: str) -> Json:
    """What a dossier records of a received study it is attached to."""
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


class ImagingUseCases:
    """Received studies (DICOM node, PACS retrieve, file import) and their attachment to dossiers."""

    def __init__(self, core: Core, actors: Actors, commands: DossierCommands) -> None:
        self.core = core
        self.actors = actors
        self.commands = commands

    def record_received(
        self, *, establishment_id: str, instances: list[ReceivedInstance], source: Json,
        occurred_at: datetime | None = None,
    ) -> list[StudyUpdate]:
        """Records a batch of stored instances: one event per study, all in one transaction.

        Instances already recorded are skipped (a resend changes nothing). A concurrent
        writer on the same study (two associations) makes the batch retry on fresh state.
        """
        when = occurred_at or self.core.clock()
        actor = system_actor(establishment_id, f"DICOM {source.get('calling_aet') or source.get('kind', '')}".strip())
        by_study: dict[str, list[ReceivedInstance]] = defaultdict(list)
        for i in instances:
            by_study[valid_uid(i.study_instance_uid, "study_instance_uid")].append(i)
        for attempt in range(RETRIES):
            studies: list[ReceivedStudy] = []
            updates: list[StudyUpdate] = []
            for study_uid, items in by_study.items():
                study = self.core.find(ReceivedStudy, received_study_id(establishment_id, study_uid))
                if study is None:
                    first = items[0]
                    study = ReceivedStudy(
                        establishment_id=str(establishment_id), study_instance_uid=study_uid,
                        patient=dict(first.patient), study=dict(first.study), actor=actor, occurred_at=when,
                    )
                series: dict[str, Json] = {}
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
                self.core.commit(*studies)
                return updates
            except ConflictError:
                if attempt == RETRIES - 1:
                    raise
        return []  # pragma: no cover

    def received_study(self, *, study_id: str) -> ReceivedStudy:
        return self.core.load(ReceivedStudy, study_id, "étude reçue")

    def await_imaging(
        self, *, dossier_id: str, actor_id: Who, accession_number: str, expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> int | None:
        """The requester names the exam awaited: a study received with this Accession Number attaches itself."""
        accession = (accession_number or "").strip()
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.await_imaging(accession_number=accession, actor=a, occurred_at=t), occurred_at,
        )

    def attach_received_study(
        self, *, dossier_id: str, actor_id: Who, study_id: str, source: str = ImagingSource.DICOM_STORE,
        expected_version: int | None = None, occurred_at: datetime | None = None,
    ) -> int | None:
        """The requester attaches a study received for their establishment."""
        study = self.received_study(study_id=study_id)
        attachment = attachment_of(study, source)

        def action(d: Dossier, a: Actor, t: datetime) -> None:
            if a.establishment_id != study.establishment_id or d.requester["establishment_id"] != study.establishment_id:
                raise ForbiddenError("cette étude n'a pas été reçue pour votre établissement")
            d.attach_imaging(study=attachment, actor=a, occurred_at=t)

        return self.commands.run(dossier_id, actor_id, expected_version, action, occurred_at)

    def auto_attach(self, *, study_id: str, dossier_ids: list[str], source: str = ImagingSource.DICOM_STORE) -> list[str]:
        """Attaches a received study to the dossiers awaiting its Accession Number (the platform acts).

        A dossier already holding the study with the same instance count records nothing."""
        study = self.received_study(study_id=study_id)
        accession = study.study.get("accession_number") or ""
        done = []
        for did in dossier_ids:
            for _attempt in range(RETRIES):
                try:
                    dossier = self.core.load(Dossier, did, "télédossier")
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
                    study=attachment_of(study, source),
                    actor=Actor.from_dict(system_actor(study.establishment_id, "Relais (rattachement automatique)")),
                    occurred_at=self.core.clock(),
                )
                try:
                    self.core.commit(dossier)
                    done.append(did)
                    break
                except ConflictError:
                    continue
        return done

    def requester_actor(self, *, dossier_id: str, actor_id: Who, establishment_id: str | None = None) -> Actor:
        """The actor, if a clinician of the requester side of this open dossier (pickers, search, import).
        A session's `Acting` acts in exactly its establishment and role."""
        dossier = self.core.load(Dossier, dossier_id, "télédossier")
        if isinstance(actor_id, Acting):
            actor = self.actors.of(actor_id, dossier)
        else:
            actor = self.actors.on_dossier(dossier, actor_id, establishment_id)
        if not dossier.is_requester(actor) or dossier.is_over:
            raise ForbiddenError("seul l'établissement requérant d'un télédossier ouvert peut y joindre de l'imagerie")
        return actor

    # ------------------------------------------------------------------ PACS query/retrieve

    def pacs_for(self, *, dossier_id: str, actor_id: Who, node_aet: str) -> Json:
        """The PACS a requester may query/retrieve from for this dossier (a PACS of their establishment)."""
        dossier = self.core.load(Dossier, dossier_id, "télédossier")
        actor = self.actors.of(actor_id, dossier)
        if not dossier.is_requester(actor) or dossier.is_over:
            raise ForbiddenError("seul l'établissement requérant d'un télédossier ouvert peut interroger son PACS")
        node = self.core.load(DicomNode, node_id(node_aet), "PACS")
        if node.kind != "pacs" or node.establishment_id != dossier.requester["establishment_id"] or not node.active:
            raise ForbiddenError("ce PACS n'est pas un PACS de votre établissement")
        return {
            "aet": node.aet, "host": node.host, "port": node.port, "method": node.retrieve_method,
            "establishment_id": node.establishment_id,
        }

    def record_retrieve(
        self, *, establishment_id: str, study_instance_uid: str, patient: Json, study: Json, dossier_id: str,
        node_aet: str, method: str, status: str, reason: str, expected: int, received: int,
    ) -> str:
        """Records a retrieve's start or outcome on the received study (created from C-FIND if need be)."""
        uid = valid_uid(study_instance_uid, "study_instance_uid")
        actor = system_actor(establishment_id, f"DICOM {node_aet}")
        for attempt in range(RETRIES):
            agg = self.core.find(ReceivedStudy, received_study_id(establishment_id, uid))
            if agg is None:
                agg = ReceivedStudy(
                    establishment_id=str(establishment_id), study_instance_uid=uid, patient=dict(patient),
                    study=dict(study), actor=actor, occurred_at=self.core.clock(),
                )
            agg.record_retrieve(
                dossier_id=dossier_id, node_aet=node_aet, method=method, status=status, reason=reason,
                expected=expected, received=received, actor=actor, occurred_at=self.core.clock(),
            )
            try:
                self.core.commit(agg)
                return str(agg.id)
            except ConflictError:
                if attempt == RETRIES - 1:
                    raise
        return ""  # pragma: no cover

    def attach_retrieved(self, *, dossier_id: str, study_id: str) -> bool:
        """Attaches a completely retrieved study to the dossier that asked for it (the platform acts)."""
        study = self.received_study(study_id=study_id)
        for _ in range(RETRIES):
            dossier = self.core.load(Dossier, dossier_id, "télédossier")
            if dossier.requester["establishment_id"] != study.establishment_id:
                raise ForbiddenError("étude d'un autre établissement")
            current = dossier.imaging.get(study.study_instance_uid)
            if current and current.get("instance_count") == study.instance_count:
                return False
            dossier.attach_imaging(
                study=attachment_of(study, ImagingSource.PACS_RETRIEVE),
                actor=Actor.from_dict(system_actor(study.establishment_id, "Relais (récupération PACS)")),
                occurred_at=self.core.clock(),
            )
            try:
                self.core.commit(dossier)
                return True
            except ConflictError:
                continue
        return False

