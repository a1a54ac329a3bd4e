"""The DICOMweb routes of a dossier, `/dicomweb/dossiers/<id>/…`: QIDO-RS, WADO-RS, rendered, thumbnails.

Every request checks that the signed-in user may read the dossier and that the study is attached
to it, and is traced as an `imaging` access ("dicomweb:<study>"); a whole study or series retrieved
is also a ReceivedStudy.Downloaded event."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Stream

from application.errors import NotFoundError
from application.study_reads import StudyView
from domain.imaging import valid_uid
from web.dicomweb import media
from web.dicomweb.search import search
from web.errors import RequestRefused
from web.imaging_access import instance_path, read_study, series_instances
from web.services import Services
from web.session import SessionUser

DW = "/dicomweb/dossiers/{dossier_id:str}"
STUDY = DW + "/studies/{study_uid:str}"
SERIES = STUDY + "/series/{series_uid:str}"
INSTANCE = SERIES + "/instances/{sop:str}"


def _in_series(s: StudyView, series_uid: str, sop: str | None = None) -> list[str]:
    """The SOP Instance UIDs of a series of the study (or the one asked for), else 404."""
    sops = sorted(x for x, se in s.instances.items() if se == series_uid and (sop is None or x == sop))
    if not sops:
        raise NotFoundError("instance introuvable dans cette série" if sop else "série introuvable dans cet examen")
    return sops


# ---------------------------------------------------------------------- QIDO-RS


@get(DW + "/studies", name="qido-studies", sync_to_thread=True)
def qido_studies(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                 dossier_id: FromPath[str]) -> Response[bytes]:
    """The dossier's studies (matching: StudyInstanceUID list, PatientID, PatientName with wildcards,
    StudyDate and ranges, AccessionNumber, ModalitiesInStudy…; includefield, limit, offset)."""
    return search(request, services, user, dossier_id, "study")


@get(DW + "/series", name="qido-all-series", sync_to_thread=True)
def qido_all_series(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                    dossier_id: FromPath[str]) -> Response[bytes]:
    return search(request, services, user, dossier_id, "series")


@get(DW + "/instances", name="qido-all-instances", sync_to_thread=True)
def qido_all_instances(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                       dossier_id: FromPath[str]) -> Response[bytes]:
    return search(request, services, user, dossier_id, "instance")


@get(STUDY + "/series", name="qido-series", sync_to_thread=True)
def qido_series(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                dossier_id: FromPath[str], study_uid: FromPath[str]) -> Response[bytes]:
    return search(request, services, user, dossier_id, "series", study_uid)


@get(STUDY + "/instances", name="qido-study-instances", sync_to_thread=True)
def qido_study_instances(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                         dossier_id: FromPath[str], study_uid: FromPath[str]) -> Response[bytes]:
    return search(request, services, user, dossier_id, "instance", study_uid)


@get(SERIES + "/instances", name="qido-instances", sync_to_thread=True)
def qido_instances(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                   dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str]) -> Response[bytes]:
    return search(request, services, user, dossier_id, "instance", study_uid, valid_uid(series_uid, "series_uid"))


# ---------------------------------------------------------------------- metadata


@get(STUDY + "/metadata", name="wado-metadata", sync_to_thread=True)
def wado_metadata(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                  dossier_id: FromPath[str], study_uid: FromPath[str]) -> Response[bytes]:
    s = read_study(services, user, dossier_id, study_uid, "dicomweb")
    return media.metadata(instance_path(services.imaging, s, sop) for sop in sorted(s.instances))


@get(SERIES + "/metadata", name="wado-series-metadata", sync_to_thread=True)
def wado_series_metadata(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                         dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str]) -> Response[bytes]:
    """Series metadata (what OHIF asks for before showing a series)."""
    s = read_study(services, user, dossier_id, study_uid, "dicomweb")
    return media.metadata(instance_path(services.imaging, s, sop) for sop in _in_series(s, series_uid))


@get(INSTANCE + "/metadata", name="wado-instance-metadata", sync_to_thread=True)
def wado_instance_metadata(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                           dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str],
                           sop: FromPath[str]) -> Response[bytes]:
    s = read_study(services, user, dossier_id, study_uid, "dicomweb")
    return media.metadata(instance_path(services.imaging, s, x) for x in _in_series(s, series_uid, sop))


# ---------------------------------------------------------------------- WADO-RS retrieve


@get(STUDY, name="wado-study", sync_to_thread=True)
def wado_study(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
               dossier_id: FromPath[str], study_uid: FromPath[str]) -> Stream:
    """Every instance of the study (WADO-RS retrieve study), as stored unless Explicit VR Little
    Endian is asked for; recorded as a download (ReceivedStudy.Downloaded, "dicomweb:study")."""
    s = read_study(services, user, dossier_id, study_uid, "dicomweb")
    ts = media.instance_syntax(request)
    services.relais.download_study(
        dossier_id=dossier_id, actor_id=user.practitioner_id, study_uid=s.study_instance_uid, what="dicomweb:study",
        establishment_id=user.establishment_id, role=user.role, read="dicomweb",
    )
    return media.instances((instance_path(services.imaging, s, sop) for sop in sorted(s.instances)), ts)


@get(SERIES, name="wado-series", sync_to_thread=True)
def wado_series(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str]) -> Stream:
    """Every instance of a series; recorded as a download ("dicomweb:series:<uid>")."""
    s = read_study(services, user, dossier_id, study_uid, "dicomweb")
    sops = _in_series(s, series_uid)
    ts = media.instance_syntax(request)
    services.relais.download_study(
        dossier_id=dossier_id, actor_id=user.practitioner_id, study_uid=s.study_instance_uid,
        what=f"dicomweb:series:{series_uid}", establishment_id=user.establishment_id, role=user.role, read="dicomweb",
    )
    return media.instances((instance_path(services.imaging, s, sop) for sop in sops), ts)


@get(INSTANCE, name="wado-instance", sync_to_thread=True)
def wado_instance(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                  dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str], sop: FromPath[str]) -> Stream:
    """One instance (application/dicom in multipart/related, as WADO-RS answers): a read, traced as
    an access, not a download."""
    s = read_study(services, user, dossier_id, study_uid, "dicomweb")
    sops = _in_series(s, series_uid, sop)
    return media.instances((instance_path(services.imaging, s, x) for x in sops), media.instance_syntax(request))


@get(INSTANCE + "/frames/{frames:str}", name="wado-frames", sync_to_thread=True)
def wado_frames(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str], sop: FromPath[str],
                frames: FromPath[str]) -> Stream:
    """Frames of an instance (what OHIF's image loader asks for), one part each; see frame_rendition."""
    s = read_study(services, user, dossier_id, study_uid, "dicomweb")
    (sop,) = _in_series(s, series_uid, sop)
    numbers = media.frame_numbers(frames)
    return media.frames(request, instance_path(services.imaging, s, sop), numbers)


# ---------------------------------------------------------------------- rendered, thumbnails


@get(INSTANCE + "/rendered", name="wado-instance-rendered", sync_to_thread=True)
def wado_instance_rendered(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                           dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str],
                           sop: FromPath[str]) -> Response[bytes]:
    """The instance rendered (its first frame for a multi-frame instance)."""
    s = read_study(services, user, dossier_id, study_uid, "dicomweb")
    (sop,) = _in_series(s, series_uid, sop)
    return media.rendered(request, instance_path(services.imaging, s, sop), 0)


@get(INSTANCE + "/frames/{frames:str}/rendered", name="wado-frame-rendered", sync_to_thread=True)
def wado_frame_rendered(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                        dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str],
                        sop: FromPath[str], frames: FromPath[str]) -> Response[bytes]:
    """One frame rendered (a list of frames would be a video: refused)."""
    s = read_study(services, user, dossier_id, study_uid, "dicomweb")
    (sop,) = _in_series(s, series_uid, sop)
    numbers = media.frame_numbers(frames)
    if len(numbers) != 1:
        raise RequestRefused("une seule image par rendu (frames/<n>/rendered)")
    path = instance_path(services.imaging, s, sop)
    count = media.frame_count(path)
    if numbers[0] > count:
        raise NotFoundError(f"image {numbers[0]} inexistante : cette instance en a {count}")
    return media.rendered(request, path, numbers[0] - 1)


@get(INSTANCE + "/thumbnail", name="wado-instance-thumbnail", sync_to_thread=True)
def wado_instance_thumbnail(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                            dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str],
                            sop: FromPath[str]) -> Response[bytes]:
    s = read_study(services, user, dossier_id, study_uid, "dicomweb")
    (sop,) = _in_series(s, series_uid, sop)
    return media.rendered(request, instance_path(services.imaging, s, sop), 0, thumbnail=True)


@get(SERIES + "/thumbnail", name="wado-series-thumbnail", sync_to_thread=True)
def wado_series_thumbnail(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
                          dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str]) -> Response[bytes]:
    """The series' middle image, small (as the viewer's thumbnails)."""
    s = read_study(services, user, dossier_id, study_uid, "dicomweb")
    _in_series(s, series_uid)
    sops = series_instances(services.imaging, s, series_uid)
    return media.rendered(request, instance_path(services.imaging, s, sops[len(sops) // 2]), 0, thumbnail=True)


HANDLERS = [
    qido_studies, qido_all_series, qido_all_instances, qido_series, qido_study_instances, qido_instances,
    wado_metadata, wado_series_metadata, wado_instance_metadata, wado_study, wado_series, wado_instance,
    wado_frames, wado_instance_rendered, wado_frame_rendered, wado_instance_thumbnail, wado_series_thumbnail,
]
