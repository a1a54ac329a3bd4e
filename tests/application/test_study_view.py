"""A received study as readers get it: StudyView, a frozen dataclass, with the read traced as before."""

from __future__ import annotations

import dataclasses
from uuid import UUID

import pytest

from application import Relais
from application.errors import ForbiddenError
from application.imaging import ReceivedInstance
from application.study_reads import SeriesSummary, StudyView

STUDY = "1.2.250.1.59.1"
PATIENT = {"id": "P123", "name": "DUPONT^JEANNE", "birth_date": "19500302", "sex": "F"}
ATTRS = {"accession_number": "ACC42", "date": "20261129", "time": "101500", "description": "IRM cérébrale",
         "referring": "MARTIN^CLAIRE"}


def instance(sop: str, series: str, number: int | None, modality: str) -> ReceivedInstance:
    return ReceivedInstance(
        sop_instance_uid=sop, series_instance_uid=series, study_instance_uid=STUDY, sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        transfer_syntax_uid="1.2.840.10008.1.2.1", size=10, patient=PATIENT, study=ATTRS,
        series={"modality": modality, "description": f"série {number}", "number": number},
    )


@pytest.fixture()
def study(relais: Relais, world: dict, sent_dossier: dict) -> str:
    """A study received for Toulouse (three series), attached to the dossier sent to Montpellier."""
    (update,) = relais.record_received(
        establishment_id=world["toulouse"], source={"kind": "dicom_store", "calling_aet": "MODALITY"},
        instances=[
            instance("1.2.250.1.59.1.3.1", "1.2.250.1.59.1.3", None, "SR"),
            instance("1.2.250.1.59.1.2.1", "1.2.250.1.59.1.2", 2, "MR"),
            instance("1.2.250.1.59.1.2.2", "1.2.250.1.59.1.2", 2, "MR"),
            instance("1.2.250.1.59.1.1.1", "1.2.250.1.59.1.1", 1, "MR"),
        ],
    )
    relais.attach_received_study(dossier_id=sent_dossier["dossier_id"], actor_id=world["requester"], study_id=update.study_id)
    return update.study_id


def imaging_accesses(relais: Relais, dossier_id: str) -> list[tuple[str, str]]:
    out = []
    for n in relais.recorder.select_notifications(1, 1_000_000, topics=["relais:Access.Created"]):
        e = relais.mapper.to_domain_event(n)
        if e.kind == "imaging" and e.dossier_id == dossier_id:
            out.append((e.outcome, e.target))
    return out


def test_the_viewer_gets_a_frozen_study_view_and_the_read_is_traced(relais: Relais, world: dict, sent_dossier: dict, study: str) -> None:
    did = sent_dossier["dossier_id"]
    view = relais.view_study(dossier_id=did, actor_id=world["recipient"], study_uid=STUDY, read="viewer")

    assert isinstance(view, StudyView)
    assert (view.id, view.establishment_id, view.study_instance_uid) == (study, world["toulouse"], STUDY)
    assert (view.accession_number, view.study_date, view.study_time, view.description, view.referring_physician) == (
        "ACC42", "20261129", "101500", "IRM cérébrale", "MARTIN^CLAIRE")
    assert (view.patient_id, view.patient_name, view.patient_birth_date, view.patient_sex) == (
        "P123", "DUPONT^JEANNE", "19500302", "F")
    assert view.modalities == ("MR", "SR") and view.sources == ("dicom_store",)
    assert view.series == (  # by Series Number, a series without one last
        SeriesSummary(uid="1.2.250.1.59.1.1", modality="MR", description="série 1", number=1, count=1),
        SeriesSummary(uid="1.2.250.1.59.1.2", modality="MR", description="série 2", number=2, count=2),
        SeriesSummary(uid="1.2.250.1.59.1.3", modality="SR", description="série None", number=None, count=1),
    )
    assert view.instance_count == 4 and view.instances["1.2.250.1.59.1.2.2"] == "1.2.250.1.59.1.2"
    assert view.last_retrieve is None and view.exports == {} and view.export_to(did, "PACS") is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.accession_number = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        view.instances["x"] = "y"  # type: ignore[index]

    # one granted read traced per window; every refusal traced
    relais.view_study(dossier_id=did, actor_id=world["recipient"], study_uid=STUDY, read="viewer")
    assert imaging_accesses(relais, did) == [("granted", f"viewer:{STUDY}")]
    with pytest.raises(ForbiddenError):
        relais.view_study(dossier_id=did, actor_id=world["outsider"], study_uid=STUDY, read="viewer")
    assert imaging_accesses(relais, did)[-1] == ("denied", f"viewer:{STUDY}")


def test_exports_downloads_and_the_untraced_view_by_id(relais: Relais, world: dict, sent_dossier: dict, study: str) -> None:
    did = sent_dossier["dossier_id"]
    failures = [{"sop": "1.2.250.1.59.1.3.1", "status": "0xA700", "reason": "refusée"}]
    relais.record_export(study_id=study, dossier_id=did, node_aet="PACS_MTP", status="partial", sent=3, total=4,
                         failures=failures, actor={"practitioner_id": world["recipient"]})

    view = relais.download_study(dossier_id=did, actor_id=world["recipient"], study_uid=STUDY)
    export = view.export_to(did, "PACS_MTP")
    assert export is not None and (export["status"], export["sent"], export["total"], export["failures"]) == (
        "partial", 3, 4, failures)
    assert [type(e).__name__ for e in relais.events.get(UUID(study))][-1] == "Downloaded"

    assert relais.received_study_view(study_id=study) == view
