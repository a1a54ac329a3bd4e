"""A received study as the viewer pages and DICOMweb read it (a StudyView): the read checked and traced, files."""

from __future__ import annotations

from pathlib import Path

from application.errors import NotFoundError
from application.study_reads import StudyView
from domain.imaging import valid_uid
from web.services import ImagingServices, Services
from web.session import SessionUser


def read_study(services: Services, user: SessionUser, dossier_id: str, study_uid: str, read: str | None = None) -> StudyView:
    """The study if the user may read it; with `read` ("viewer", "dicomweb") the read is traced as an
    Access of kind "imaging": every refusal, and one granted access per user, study and kind of read
    per minute (`Relais.view_study`), so a scroll through a series is one access."""
    return services.relais.view_study(
        dossier_id=dossier_id, actor_id=user.practitioner_id, study_uid=valid_uid(study_uid, "study_uid"),
        establishment_id=user.establishment_id, role=user.role, read=read,
    )


def series_instances(imaging: ImagingServices, study: StudyView, series_uid: str) -> list[str]:
    """SOP Instance UIDs of a series in display order (instance number, from the imaging read model)."""
    rows = imaging.studies.instances_of(study.id, series_uid)
    ordered = [r.sop_instance_uid for r in rows if r.sop_instance_uid in study.instances]
    rest = sorted(s for s, se in study.instances.items() if se == series_uid and s not in set(ordered))
    return ordered + rest


def instance_path(imaging: ImagingServices, study: StudyView, sop: str) -> Path:
    """The stored file of an instance of the study, else 404."""
    if study.instances.get(sop) is None:
        raise NotFoundError("image introuvable dans cet examen")
    return imaging.store.path(study.establishment_id, study.study_instance_uid, sop)
