"""Imaging use cases: record received instances and retrieves, attach received studies to dossiers."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from application.actors import Acting, Actors, Who
from application.base import SYSTEM_ACTOR, Core
from application.commands import DossierCommands
from application.errors import ConflictError, ForbiddenError, NotFoundError
from domain.directory import DicomNode, node_id
from domain.dossier import Dossier
from domain.errors import InvalidFieldError
from domain.imaging import (
    ReceivedStudy,
    accepted_identities,
    identity_key,
    identity_rows,
    needs_confirmation,
    received_study_id,
    valid_uid,
)
from domain.values import Actor, ImagingSource, Json

RETRIES = 5

PATIENT_ID_WINDOW = timedelta(hours=24)
"""How long after a dossier awaited a Patient ID a study of that patient still attaches itself: the
exams of the day (a stroke's CT, then its angiography), not the patient's next stay."""


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
            "pid": identity_key(self.patient),
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
    patient_ids: tuple[str, ...] = ()  # the Patient IDs of its instances (an exam may be awaited by one)


def system_actor(establishment_id: str, name: str) -> Json:
    """The platform acting for an establishment (a DICOM receipt, an automatic attachment)."""
    return dict(SYSTEM_ACTOR, establishment_id=establishment_id, name=name)


class IdentityConfirmationRequired(InvalidFieldError):
    """The images' patient identity needs the requester's explicit confirmation (« J'ai vérifié »)."""

    def __init__(self, rows: list[Json]):
        super().__init__("confirm_identity", "identité du patient des images à vérifier et confirmer")
        self.rows = rows


def attachment_of(study: ReceivedStudy, source: str, identities: list[str] | None = None) -> Json:
    """What a dossier records of a received study it is attached to: the identities accepted (all the
    study's when None) and what they hold."""
    accepted = list(identities) if identities is not None else list(study.identities)
    shown = study.instances_of(set(accepted))
    return {
        "study_instance_uid": study.study_instance_uid,
        "source": source,
        "description": (study.study.get("description") or "")[:200],
        "modalities": study.modalities,
        "study_date": study.study.get("date") or None,
        "series_count": len(set(shown.values())),
        "instance_count": len(shown),
        "received_study_id": str(study.id),
        "identities": accepted,
    }


def identity_check(dossier: Dossier, study: ReceivedStudy, identities: list[str] | None = None) -> list[Json]:
    """The study's DICOM identities (those named, else all) compared with the dossier's patient."""
    known = study.identities
    chosen = {k: known[k] for k in (identities if identities is not None else list(known)) if k in known}
    return identity_rows(dossier.patient, chosen, study.identity_counts)


def patient_ids(study: ReceivedStudy) -> tuple[str, ...]:
    """The Patient IDs among a study's instances."""
    return tuple(sorted({(p.get("id") or "").strip() for p in study.identities.values()} - {""}))


def awaits_patient(dossier: Dossier, study: ReceivedStudy, now: datetime) -> bool:
    """Whether the dossier awaits, since PATIENT_ID_WINDOW at most, a Patient ID of the study's instances
    (the issuers compared when both are known)."""
    ids = [((p.get("id") or "").strip(), (p.get("issuer") or "").strip()) for p in study.identities.values()]
    for awaited in dossier.awaited_patients:
        if datetime.fromisoformat(awaited["at"]) < now - PATIENT_ID_WINDOW:
            continue
        if any(pid == awaited["id"] and (not issuer or not awaited["issuer"] or issuer == awaited["issuer"])
               for pid, issuer in ids):
            return True
    return False


def _override(rows: list[Json]) -> Json:
    """What a requester confirmed: every identity attached with its differences from the dossier's."""
    return {
        "identities": [{"key": r["key"], "patient": r["patient"], "count": r["count"]} for r in rows],
        "differences": [d for r in rows for d in r["differences"]],
        "several_patients": len(rows) > 1,
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
                identities: dict[str, Json] = {}
                for i in items:
                    series.setdefault(i.series_instance_uid, dict(i.series))
                    identities.setdefault(identity_key(i.patient), dict(i.patient))
                new = study.receive(
                    instances=[i.as_event_item() for i in items], series=series, source=source,
                    actor=actor, occurred_at=when, identities=identities,
                )
                studies.append(study)
                updates.append(StudyUpdate(
                    study_id=str(study.id), establishment_id=str(establishment_id), study_instance_uid=study_uid,
                    accession_number=study.study.get("accession_number") or "", new_instances=len(new),
                    instance_count=study.instance_count, patient_ids=patient_ids(study),
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
        self, *, dossier_id: str, actor_id: Who, accession_number: str | None = None, patient_id: str | None = None,
        issuer: str | None = None, expected_version: int | None = None, occurred_at: datetime | None = None,
    ) -> int | None:
        """The requester names the exam awaited — its Accession Number, or the patient's ID at the
        establishment's gateway (with its issuer if known): a study received for the establishment with
        that Accession Number attaches itself; one of that Patient ID too when received within
        PATIENT_ID_WINDOW of the await, the dossier open and no other open dossier awaiting it."""
        return self.commands.run(
            dossier_id, actor_id, expected_version,
            lambda d, a, t: d.await_imaging(
                accession_number=accession_number or "", patient_id=patient_id or "", issuer=issuer or "",
                actor=a, occurred_at=t,
            ),
            occurred_at,
        )

    def identity_check(self, *, dossier_id: str, actor_id: Who, study_id: str) -> list[Json]:
        """The received study's identities compared with the dossier's patient (for the requester)."""
        dossier = self.core.load(Dossier, dossier_id, "télédossier")
        self.requester_actor(dossier_id=dossier_id, actor_id=actor_id)
        return identity_check(dossier, self.received_study(study_id=study_id))

    def attach_received_study(
        self, *, dossier_id: str, actor_id: Who, study_id: str, source: str = ImagingSource.DICOM_STORE,
        expected_version: int | None = None, occurred_at: datetime | None = None,
        identities: list[str] | None = None, confirm_identity: bool = False,
    ) -> int | None:
        """The requester attaches a study received for their establishment: the identities named (all
        the study's when None). Several patients, or one differing from the dossier's, need
        `confirm_identity` (else IdentityConfirmationRequired); the confirmation is recorded."""
        study = self.received_study(study_id=study_id)

        def action(d: Dossier, a: Actor, t: datetime) -> None:
            if a.establishment_id != study.establishment_id or d.requester["establishment_id"] != study.establishment_id:
                raise ForbiddenError("cette étude n'a pas été reçue pour votre établissement")
            rows = identity_check(d, study, identities)
            if not rows:
                raise InvalidFieldError("identities", "aucune image de ce patient dans cet examen")
            override = None
            if needs_confirmation(rows):
                if not confirm_identity:
                    raise IdentityConfirmationRequired(rows)
                override = _override(rows)
            keys = [r["key"] for r in rows]
            previous = d.imaging.get(study.study_instance_uid)
            if previous is not None:  # already attached: what was accepted stays accepted
                keys = list(dict.fromkeys([*accepted_identities(study, previous), *keys]))
            d.attach_imaging(study=attachment_of(study, source, keys), actor=a, occurred_at=t, override=override)

        return self.commands.run(dossier_id, actor_id, expected_version, action, occurred_at)

    def _follow(
        self, dossier: Dossier, study: ReceivedStudy, source: str, who: str, awaited: bool, ambiguous: bool = False,
    ) -> str:
        """The platform brings a dossier up to date with a received study: attaches it when `awaited` and
        its identity matches the dossier's patient, else holds it (the requester is told once; `ambiguous`:
        held as awaited by other open dossiers too); once
        attached, instances of an identity not accepted are quarantined (told once per identity), the
        others update the attachment. Returns "attached", "held" or "" (nothing to do). Not committed."""
        actor = Actor.from_dict(system_actor(study.establishment_id, who))
        now = self.core.clock()
        uid = study.study_instance_uid
        held = {(h["reason"], r["key"]) for h in dossier.imaging_held if h["study_instance_uid"] == uid
                for r in h["identities"]}
        current = dossier.imaging.get(uid)
        if current is None:
            if not awaited:
                return ""
            rows = identity_check(dossier, study)
            if ambiguous:
                if all(("ambiguous", r["key"]) in held for r in rows):
                    return ""
                dossier.hold_imaging(study_instance_uid=uid, received_study_id=str(study.id), reason="ambiguous",
                                     identities=rows, actor=actor, occurred_at=now)
                return "held"
            if needs_confirmation(rows):
                if all(("auto_refused", r["key"]) in held for r in rows):
                    return ""
                dossier.hold_imaging(study_instance_uid=uid, received_study_id=str(study.id), reason="auto_refused",
                                     identities=rows, actor=actor, occurred_at=now)
                return "held"
            dossier.attach_imaging(study=attachment_of(study, source), actor=actor, occurred_at=now)
            return "attached"
        accepted = accepted_identities(study, current)
        others = [k for k in study.identities if k not in accepted and ("quarantined", k) not in held]
        changed = ""
        if others:
            dossier.hold_imaging(study_instance_uid=uid, received_study_id=str(study.id), reason="quarantined",
                                 identities=identity_check(dossier, study, others), actor=actor, occurred_at=now)
            changed = "held"
        update = attachment_of(study, current.get("source") or source, accepted)
        if update["instance_count"] != current.get("instance_count") or "identities" not in current:
            dossier.attach_imaging(study=update, actor=actor, occurred_at=now)
            changed = "attached"
        return changed

    def _follow_each(
        self, study_id: str, dossier_ids: list[str], source: str, who: str, awaited: bool, retrieved: bool = False,
        ambiguous: frozenset[str] = frozenset(),
    ) -> list[str]:
        """`_follow` for each dossier, committed one by one (retried on a concurrent change)."""
        done = []
        for did in dossier_ids:
            for _attempt in range(RETRIES):
                study = self.received_study(study_id=study_id)
                try:
                    dossier = self.core.load(Dossier, did, "télédossier")
                except NotFoundError:
                    break
                if dossier.requester["establishment_id"] != study.establishment_id:
                    break
                waiting = awaited and not dossier.is_over and (retrieved or self._awaits(dossier, study) != "")
                if dossier.is_over and study.study_instance_uid not in dossier.imaging:
                    break
                outcome = self._follow(dossier, study, source, who, waiting, ambiguous=did in ambiguous)
                if not outcome:
                    break
                try:
                    self.core.commit(dossier)
                    if outcome == "attached":
                        done.append(did)
                    break
                except ConflictError:
                    continue
        return done

    def _awaits(self, dossier: Dossier, study: ReceivedStudy) -> str:
        """How the dossier awaits the study: "accession" (its Accession Number), "patient" (a Patient ID of
        its instances, awaited within PATIENT_ID_WINDOW) or ""."""
        accession = study.study.get("accession_number") or ""
        if accession and accession in dossier.awaited_accessions:
            return "accession"
        return "patient" if awaits_patient(dossier, study, self.core.clock()) else ""

    def auto_attach(self, *, study_id: str, dossier_ids: list[str], source: str = ImagingSource.DICOM_STORE) -> list[str]:
        """Attaches a received study to the dossiers awaiting it — its Accession Number, or a Patient ID
        of its instances awaited within PATIENT_ID_WINDOW (the platform acts) — unless its patient identity
        needs a person's confirmation: then the requester is told (Dossier.ImagingHeld) and attaches it
        by hand. A Patient ID names a patient, not an exam: when another open dossier of the establishment
        awaits the study too, a dossier awaiting it by Patient ID only is not given it (held « ambiguous »,
        each requester told, who attaches it by hand), never a guess. A dossier already holding the study
        with the same instance count records nothing; new instances of another patient are quarantined."""
        study = self.received_study(study_id=study_id)
        how: dict[str, str] = {}
        for did in dict.fromkeys(dossier_ids):
            try:
                dossier = self.core.load(Dossier, did, "télédossier")
            except NotFoundError:
                continue
            if dossier.requester["establishment_id"] == study.establishment_id and not dossier.is_over:
                how[did] = self._awaits(dossier, study)
        waiting = [did for did, way in how.items() if way]
        ambiguous = frozenset(did for did in waiting if how[did] == "patient") if len(waiting) > 1 else frozenset()
        return self._follow_each(study_id, dossier_ids, source, "Relais (rattachement automatique)", awaited=True,
                                 ambiguous=ambiguous)

    def check_attached(self, *, study_id: str, dossier_ids: list[str]) -> list[str]:
        """Instances that arrived for a study already attached to these dossiers: those of the accepted
        identities update the attachment, those of another patient are quarantined and the requester told."""
        return self._follow_each(study_id, dossier_ids, ImagingSource.DICOM_STORE, "Relais (contrôle d'identité)",
                                 awaited=False)

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
        """Attaches a completely retrieved study to the dossier that asked for it (the platform acts),
        unless its patient identity needs the requester's confirmation (then held, the requester told)."""
        study = self.received_study(study_id=study_id)
        dossier = self.core.load(Dossier, dossier_id, "télédossier")
        if dossier.requester["establishment_id"] != study.establishment_id:
            raise ForbiddenError("étude d'un autre établissement")
        return bool(self._follow_each(study_id, [dossier_id], ImagingSource.PACS_RETRIEVE,
                                      "Relais (récupération PACS)", awaited=True, retrieved=True))
