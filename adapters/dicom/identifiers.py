"""The identifiers of C-FIND, C-MOVE and C-GET requests, what their answers say (matches), and the
French reasons for a PACS's failure statuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset


@dataclass(frozen=True)
class StudyMatch:
    study_instance_uid: str
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    study_date: str
    accession_number: str
    description: str
    modalities: tuple[str, ...]
    series_count: int | None
    instance_count: int | None


@dataclass(frozen=True)
class SeriesMatch:
    series_instance_uid: str
    modality: str
    description: str
    number: int | None
    instance_count: int | None


@dataclass(frozen=True)
class InstanceMatch:
    sop_instance_uid: str
    number: int | None


def int_or_none(value: Any) -> int | None:
    """An integer attribute of an answer, None when absent or not a number."""
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def text_of(ds: Dataset, keyword: str) -> str:
    """A text attribute of an answer, "" when absent (ModalitiesInStudy joined by backslashes)."""
    v = ds.get(keyword)
    if v is None:
        return ""
    if keyword == "ModalitiesInStudy":
        return "\\".join(str(x) for x in v) if not isinstance(v, str) else v
    return str(v).strip()


STATUS_REASONS = {
    0xA801: "le PACS ne connaît pas la destination {dest} (à déclarer comme modalité sur le PACS)",
    0xA701: "le PACS manque de ressources (calcul du nombre d'instances)",
    0xA702: "le PACS manque de ressources (sous-opérations)",
    0xA900: "requête refusée par le PACS (identifiant ne correspondant pas à la classe SOP)",
    0xFE00: "récupération annulée",
}


def status_reason(status: int, dest: str = "") -> str:
    if status in STATUS_REASONS:
        return STATUS_REASONS[status].format(dest=dest)
    return f"échec du PACS (statut DICOM 0x{status:04X})"


def study_query(
    *, patient_id: str = "", patient_name: str = "", birth_date: str = "", date_from: str = "", date_to: str = "",
    modality: str = "", accession_number: str = "", study_instance_uid: str = "",
) -> Dataset:
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.PatientID = patient_id
    q.PatientName = patient_name
    q.PatientBirthDate = birth_date
    q.PatientSex = ""
    q.StudyDate = f"{date_from}-{date_to}" if (date_from or date_to) else ""
    q.StudyTime = ""
    q.ModalitiesInStudy = modality
    q.AccessionNumber = accession_number
    q.StudyInstanceUID = study_instance_uid
    q.StudyDescription = ""
    q.NumberOfStudyRelatedSeries = None
    q.NumberOfStudyRelatedInstances = None
    return q


def study_match(ds: Dataset) -> StudyMatch:
    mods = text_of(ds, "ModalitiesInStudy")
    return StudyMatch(
        study_instance_uid=text_of(ds, "StudyInstanceUID"), patient_id=text_of(ds, "PatientID"),
        patient_name=text_of(ds, "PatientName"), patient_birth_date=text_of(ds, "PatientBirthDate"),
        patient_sex=text_of(ds, "PatientSex"), study_date=text_of(ds, "StudyDate"),
        accession_number=text_of(ds, "AccessionNumber"), description=text_of(ds, "StudyDescription"),
        modalities=tuple(m for m in mods.split("\\") if m),
        series_count=int_or_none(ds.get("NumberOfStudyRelatedSeries")),
        instance_count=int_or_none(ds.get("NumberOfStudyRelatedInstances")),
    )


def series_query(study_uid: str) -> Dataset:
    q = Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.StudyInstanceUID = study_uid
    q.SeriesInstanceUID = ""
    q.Modality = ""
    q.SeriesDescription = ""
    q.SeriesNumber = None
    q.NumberOfSeriesRelatedInstances = None
    return q


def series_match(ds: Dataset) -> SeriesMatch:
    return SeriesMatch(
        series_instance_uid=text_of(ds, "SeriesInstanceUID"), modality=text_of(ds, "Modality"),
        description=text_of(ds, "SeriesDescription"), number=int_or_none(ds.get("SeriesNumber")),
        instance_count=int_or_none(ds.get("NumberOfSeriesRelatedInstances")),
    )


def instance_query(study_uid: str, series_uid: str) -> Dataset:
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = study_uid
    q.SeriesInstanceUID = series_uid
    q.SOPInstanceUID = ""
    q.InstanceNumber = None
    return q


def retrieve_query(study_uid: str, series_uids: list[str] | None = None, sop_uids: list[str] | None = None) -> Dataset:
    """The identifier of a C-MOVE/C-GET: the whole study, some of its series, or some instances of
    one series (IMAGE level: `series_uids` names that one series)."""
    q = Dataset()
    q.StudyInstanceUID = study_uid
    if sop_uids:
        if not series_uids or len(series_uids) != 1:
            raise ValueError("instances of exactly one series")
        q.QueryRetrieveLevel = "IMAGE"
        q.SeriesInstanceUID = series_uids[0]
        q.SOPInstanceUID = list(sop_uids) if len(sop_uids) > 1 else sop_uids[0]
    elif series_uids:
        q.QueryRetrieveLevel = "SERIES"
        q.SeriesInstanceUID = list(series_uids) if len(series_uids) > 1 else series_uids[0]
    else:
        q.QueryRetrieveLevel = "STUDY"
    return q
