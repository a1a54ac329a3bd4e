"""What the DICOM node does with what it received: record it in the event store, attach what dossiers await."""

from __future__ import annotations

from collections.abc import Callable

from adapters.dicom.receive import Record
from application import Relais
from application.imaging import PATIENT_ID_WINDOW, ReceivedInstance, StudyUpdate
from domain.imaging import received_study_id
from domain.values import Json
from projections.imaging import PostgresImagingView


def attach_awaiting(app: Relais, view: PostgresImagingView, updates: list[StudyUpdate]) -> list[str]:
    """Attaches each updated study to the dossiers awaiting its Accession Number or one of its Patient IDs
    (unless its patient identity needs a person's confirmation, or a Patient ID is awaited by several open
    dossiers: application/imaging.py `auto_attach`), and checks the new instances of studies already
    attached to dossiers: those of another patient are quarantined there and the requester told."""
    attached: list[str] = []
    for u in updates:
        if not u.new_instances:
            continue
        awaiting = view.awaiting(u.establishment_id, u.accession_number) if u.accession_number else []
        since = app.clock() - PATIENT_ID_WINDOW
        awaiting += [d for d in view.awaiting_patient(u.establishment_id, list(u.patient_ids), since) if d not in awaiting]
        if awaiting:
            attached += app.auto_attach(study_id=u.study_id, dossier_ids=awaiting)
        holding = [d for d in view.attached_to(u.study_id) if d not in awaiting]
        if holding:
            app.check_attached(study_id=u.study_id, dossier_ids=holding)
    return attached


def attach_received_for_patient(
    app: Relais, view: PostgresImagingView, *, dossier_id: str, establishment_id: str, patient_id: str,
) -> list[str]:
    """Just after a dossier awaited a Patient ID: the studies of that patient the establishment received in
    the PATIENT_ID_WINDOW before (the CT pushed before the request was written) attach themselves as if
    they arrived now — same rules: identity checked, none when another open dossier awaits them too.
    Returns the study ids attached."""
    since = app.clock() - PATIENT_ID_WINDOW
    attached = []
    for study_id in view.studies_of_patient(establishment_id, patient_id.strip(), since):
        row = view.study(study_id)
        others = view.awaiting_patient(establishment_id, [patient_id.strip()], since)
        if row is not None and row.accession_number:
            others += view.awaiting(establishment_id, row.accession_number)
        candidates = list(dict.fromkeys([dossier_id, *others]))  # the await just made may not be projected yet
        if dossier_id in app.auto_attach(study_id=study_id, dossier_ids=candidates):
            attached.append(study_id)
    return attached


def attach_already_received(
    app: Relais, view: PostgresImagingView, *, dossier_id: str, establishment_id: str, accession_number: str = "",
    patient_id: str = "",
) -> list[str]:
    """Just after a dossier awaited an exam (by Accession Number and/or Patient ID): what the establishment
    already received of it attaches itself as if it arrived now (the stroke CT is pushed before the request is
    written) — same rules as on arrival: identity checked, an exam other open dossiers await is not guessed.
    Returns the study ids attached."""
    attached: list[str] = []
    accession = accession_number.strip()
    if accession:
        others = view.awaiting(establishment_id, accession)
        for study_id in view.study_by_accession(establishment_id, accession):
            if dossier_id in app.auto_attach(study_id=study_id, dossier_ids=list(dict.fromkeys([dossier_id, *others]))):
                attached.append(study_id)
    if patient_id.strip():
        attached += [s for s in attach_received_for_patient(
            app, view, dossier_id=dossier_id, establishment_id=establishment_id, patient_id=patient_id,
        ) if s not in attached]
    return attached


def recorder(app: Relais) -> Record:
    def record(establishment_id: str, items: list[ReceivedInstance], source: Json) -> list[StudyUpdate]:
        return app.record_received(establishment_id=establishment_id, instances=items, source=source)

    return record


def recorded_sops(app: Relais) -> Callable[[str, str], set[str]]:
    def known(establishment_id: str, study_uid: str) -> set[str]:
        sid = received_study_id(establishment_id, study_uid)
        if sid not in app.repository:
            return set()
        return set(app.repository.get(sid).instances)

    return known

