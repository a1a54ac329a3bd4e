"""Read-only DICOMweb scoped to one dossier (`/dicomweb/dossiers/<id>/…`), for a viewer such as OHIF
or any standard client: QIDO-RS searches, WADO-RS retrieve, metadata, frames, rendered images and
thumbnails. Every request checks that the signed-in user may read the dossier and that the study
is attached to it, and is traced as an `imaging` access ("dicomweb:<study>"); a whole study or
series retrieved is also a ReceivedStudy.Downloaded event."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Stream
from pydicom import dcmread

from adapters.dicom.dicomjson import header_json, result
from adapters.dicom.frames import MEDIA_OF_TS, FrameError, StoredFrames
from adapters.dicom.multipart_related import multipart_related
from adapters.dicom.negotiation import accepted as parse_accept
from adapters.dicom.negotiation import frame_rendition, instance_rendition, rendered_format
from adapters.dicom.transcode import TranscodeError, instance_bytes
from adapters.dicom.render import CT_PRESETS, RenderError, render
from application.errors import ForbiddenError, NotFoundError
from domain.imaging import ReceivedStudy, valid_uid
from web import qido
from web.errors import RequestRefused
from web.pages.viewer import _path, _series_instances, _series_list, _study
from web.services import ImagingServices, Services
from web.session import SessionUser

DW = "/dicomweb/dossiers/{dossier_id:str}"
STUDY = DW + "/studies/{study_uid:str}"
SERIES = STUDY + "/series/{series_uid:str}"
INSTANCE = SERIES + "/instances/{sop:str}"
MAX_FRAMES = 1000


def _json(body: object, headers: dict | None = None) -> Response:
    return Response(json.dumps(body).encode(), media_type="application/dicom+json", headers=headers)


def _base(request: Request, dossier_id: str) -> str:
    return str(request.base_url).rstrip("/") + f"/dicomweb/dossiers/{dossier_id}"


def _dossier_study_uids(services: Services, user: SessionUser, dossier_id: str) -> list[str]:
    """The Study Instance UIDs attached to the dossier, if the user may read it (a refusal is traced)."""
    try:
        d = services.relais.get_dossier(dossier_id=dossier_id, actor_id=user.practitioner_id, role=user.role)
    except ForbiddenError as e:
        services.relais.trace_denied(
            dossier_id=dossier_id, kind="imaging", reason=str(e), target="dicomweb:studies",
            actor={"practitioner_id": user.practitioner_id, "role": user.role, "establishment_id": user.establishment_id or ""},
        )
        raise
    return [att["study_instance_uid"] for att in d.imaging]


# ---------------------------------------------------------------------- QIDO-RS


def _study_record(s: ReceivedStudy, base: str) -> dict:
    return {
        "StudyInstanceUID": s.study_instance_uid, "StudyDate": s.study.get("date"), "StudyTime": s.study.get("time"),
        "AccessionNumber": s.study.get("accession_number"), "StudyDescription": s.study.get("description"),
        "ReferringPhysicianName": s.study.get("referring"), "PatientName": s.patient.get("name"),
        "PatientID": s.patient.get("id"), "PatientBirthDate": s.patient.get("birth_date"),
        "PatientSex": s.patient.get("sex"), "ModalitiesInStudy": s.modalities,
        "NumberOfStudyRelatedSeries": len(s.series), "NumberOfStudyRelatedInstances": s.instance_count,
        "RetrieveURL": f"{base}/studies/{s.study_instance_uid}",
    }


def _series_record(s: ReceivedStudy, se: dict, base: str) -> dict:
    return {
        "SeriesInstanceUID": se["uid"], "Modality": se.get("modality"), "SeriesDescription": se.get("description"),
        "SeriesNumber": se.get("number"), "NumberOfSeriesRelatedInstances": se.get("count"),
        "RetrieveURL": f"{base}/studies/{s.study_instance_uid}/series/{se['uid']}",
    }


def _search(
    request: Request, services: Services, user: SessionUser, dossier_id: str, level: str,
    study_uid: str | None = None, series_uid: str | None = None,
) -> Response:
    """A QIDO-RS search at `level` under the dossier, a study or a series (fixed by the URL)."""
    # authorised (and traced) before the query is looked at
    studies = [_study(services, user, dossier_id, study_uid, "dicomweb")] if study_uid else []
    attached = [] if study_uid else _dossier_study_uids(services, user, dossier_id)
    try:
        q = qido.parse(request.query_params.multi_items(), level)
    except qido.QueryError as e:
        raise RequestRefused(str(e)) from None
    if not study_uid:  # each study read is checked and traced; those the UID keys exclude are not read
        uid_filters = [f for f in q.filters if f.keyword == "StudyInstanceUID"]
        for uid in attached:
            if all(f.matches(uid) for f in uid_filters):
                try:
                    studies.append(_study(services, user, dossier_id, uid, "dicomweb"))
                except NotFoundError:
                    continue
    base = _base(request, dossier_id)
    study_filters = [f for f in q.filters if f.level == "study"]
    found: list[tuple[dict, ReceivedStudy, str | None]] = []  # (record, study, SOP Instance UID of its header)
    for s in studies:
        srec = _study_record(s, base)
        if not all(f.matches(srec.get(f.keyword)) for f in study_filters):
            continue
        if level == "study":
            first = _series_list(s)[0]["uid"] if s.series else None  # its first instance: the header of study attributes not held
            found.append((srec, s, min((sop for sop, se in s.instances.items() if se == first), default=None)))
            continue
        rows = {r.sop_instance_uid: r for r in services.imaging.studies.instances_of(str(s.id))} if level == "instance" else {}
        for se in _series_list(s):
            if series_uid and se["uid"] != series_uid:
                continue
            serec = {**srec, **_series_record(s, se, base)}
            sops = _series_instances(services.imaging, s, se["uid"])
            if level == "series":
                if sops:
                    found.append((serec, s, sops[0]))
                continue
            for sop in sops:
                row = rows.get(sop)
                found.append(({
                    **serec, "SOPInstanceUID": sop, "SOPClassUID": row.sop_class_uid if row else None,
                    "InstanceNumber": row.instance_number if row else None,
                    "AvailableTransferSyntaxUID": row.transfer_syntax_uid if row else None,
                    "RetrieveURL": f"{serec['RetrieveURL']}/instances/{sop}",
                }, s, sop))
    matched = q.page([f for f in found if q.matches(f[0])])
    shown = [lv for lv in qido.LEVELS[: qido.LEVELS.index(level) + 1]
             if lv == level or (lv == "study" and not study_uid) or (lv == "series" and not series_uid)]
    keywords = [kw for lv in shown for kw in qido.DEFAULT[lv]] + ["StudyInstanceUID"] + (
        ["SeriesInstanceUID"] if level != "study" else []) + q.returned
    from_header = [kw for kw in dict.fromkeys(q.returned) if kw not in found[0][0]] if found else []
    if q.all_fields:
        keywords += list(found[0][0]) if found else []
        extra = qido.ALL_FROM_HEADER[level]
        from_header = None if extra is None else from_header + extra
    out = []
    for record, s, sop in matched:
        header = header_json(_path(services.imaging, s, sop), from_header) if sop and (from_header is None or from_header) else None
        out.append(result(record, dict.fromkeys(keywords), header))
    headers = {"Warning": '299 relais: The fuzzymatching parameter is not supported. Only literal matching has been performed.'} if q.fuzzy else None
    return _json(out, headers)


@get(DW + "/studies", name="qido-studies", sync_to_thread=True)
def qido_studies(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                 dossier_id: FromPath[str]) -> Response:
    """The dossier's studies (matching: StudyInstanceUID list, PatientID, PatientName with wildcards,
    StudyDate and ranges, AccessionNumber, ModalitiesInStudy…; includefield, limit, offset)."""
    return _search(request, services, user, dossier_id, "study")


@get(DW + "/series", name="qido-all-series", sync_to_thread=True)
def qido_all_series(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                    dossier_id: FromPath[str]) -> Response:
    return _search(request, services, user, dossier_id, "series")


@get(DW + "/instances", name="qido-all-instances", sync_to_thread=True)
def qido_all_instances(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                       dossier_id: FromPath[str]) -> Response:
    return _search(request, services, user, dossier_id, "instance")


@get(STUDY + "/series", name="qido-series", sync_to_thread=True)
def qido_series(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                dossier_id: FromPath[str], study_uid: FromPath[str]) -> Response:
    return _search(request, services, user, dossier_id, "series", study_uid)


@get(STUDY + "/instances", name="qido-study-instances", sync_to_thread=True)
def qido_study_instances(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                         dossier_id: FromPath[str], study_uid: FromPath[str]) -> Response:
    return _search(request, services, user, dossier_id, "instance", study_uid)


@get(SERIES + "/instances", name="qido-instances", sync_to_thread=True)
def qido_instances(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                   dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str]) -> Response:
    return _search(request, services, user, dossier_id, "instance", study_uid, valid_uid(series_uid, "series_uid"))


# ---------------------------------------------------------------------- metadata


def _metadata(imaging: ImagingServices, s: ReceivedStudy, sops: list[str]) -> Response:
    return _json([header_json(_path(imaging, s, sop), None) for sop in sops])


def _in_series(s: ReceivedStudy, series_uid: str, sop: str | None = None) -> list[str]:
    """The SOP Instance UIDs of a series of the study (or the one asked for), else 404."""
    sops = sorted(x for x, se in s.instances.items() if se == series_uid and (sop is None or x == sop))
    if not sops:
        raise NotFoundError("instance introuvable dans cette série" if sop else "série introuvable dans cet examen")
    return sops


@get(STUDY + "/metadata", name="wado-metadata", sync_to_thread=True)
def wado_metadata(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                  dossier_id: FromPath[str], study_uid: FromPath[str]) -> Response:
    s = _study(services, user, dossier_id, study_uid, "dicomweb")
    return _metadata(services.imaging, s, sorted(s.instances))


@get(SERIES + "/metadata", name="wado-series-metadata", sync_to_thread=True)
def wado_series_metadata(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                         dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str]) -> Response:
    """Series metadata (what OHIF asks for before showing a series)."""
    s = _study(services, user, dossier_id, study_uid, "dicomweb")
    return _metadata(services.imaging, s, _in_series(s, series_uid))


@get(INSTANCE + "/metadata", name="wado-instance-metadata", sync_to_thread=True)
def wado_instance_metadata(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                           dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str],
                           sop: FromPath[str]) -> Response:
    s = _study(services, user, dossier_id, study_uid, "dicomweb")
    return _metadata(services.imaging, s, _in_series(s, series_uid, sop))


# ---------------------------------------------------------------------- media types


def accepted(request: Request) -> list[tuple[str | None, str | None]]:
    """What the client accepts, best first, from the `accept` query parameter or the Accept header."""
    return parse_accept(request.query_params.get("accept") or request.headers.get("accept") or "")


def _refuse_media(request: Request, what: str, offered: str) -> RequestRefused:
    asked = request.query_params.get("accept") or request.headers.get("accept") or ""
    return RequestRefused(f"{what} : aucun des formats demandés ({asked[:200]}) n'est disponible ; possibles : {offered}", 406)


def _multipart(parts: Iterator[tuple[str, bytes]], kind: str) -> Stream:
    """A multipart/related answer streamed part by part (a study is never held in memory whole)."""
    media_type, body = multipart_related(parts, kind)
    return Stream(body, media_type=media_type)


# ---------------------------------------------------------------------- WADO-RS retrieve


def _dicom_rendition(request: Request) -> str:
    """The transfer syntax asked for instances: as stored, else Explicit VR Little Endian
    (compressed instances decoded); 406 for anything else."""
    ts = instance_rendition(accepted(request))
    if ts is None:
        raise _refuse_media(request, "instances", 'multipart/related; type="application/dicom" (tel que stocké, '
                            "transfer-syntax=* ou 1.2.840.10008.1.2.1)")
    return ts


def _instance_bytes(path: Path, ts: str) -> tuple[str, bytes]:
    try:
        return instance_bytes(path, ts)
    except TranscodeError as e:
        raise RequestRefused(str(e), 406) from None


def _instances(imaging: ImagingServices, s: ReceivedStudy, sops: list[str], ts: str) -> Stream:
    def parts() -> Iterator[tuple[str, bytes]]:
        for sop in sops:
            syntax, data = _instance_bytes(_path(imaging, s, sop), ts)
            yield f"application/dicom; transfer-syntax={syntax}", data

    return _multipart(parts(), "application/dicom")


@get(STUDY, name="wado-study", sync_to_thread=True)
def wado_study(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
               dossier_id: FromPath[str], study_uid: FromPath[str]) -> Stream:
    """Every instance of the study (WADO-RS retrieve study), as stored unless Explicit VR Little
    Endian is asked for; recorded as a download (ReceivedStudy.Downloaded, "dicomweb:study")."""
    s = _study(services, user, dossier_id, study_uid, "dicomweb")
    ts = _dicom_rendition(request)
    services.relais.record_download(
        dossier_id=dossier_id, actor_id=user.practitioner_id, study_uid=s.study_instance_uid, what="dicomweb:study",
        establishment_id=user.establishment_id, role=user.role, read="dicomweb",
    )
    return _instances(services.imaging, s, sorted(s.instances), ts)


@get(SERIES, name="wado-series", sync_to_thread=True)
def wado_series(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str]) -> Stream:
    """Every instance of a series; recorded as a download ("dicomweb:series:<uid>")."""
    s = _study(services, user, dossier_id, study_uid, "dicomweb")
    sops = _in_series(s, series_uid)
    ts = _dicom_rendition(request)
    services.relais.record_download(
        dossier_id=dossier_id, actor_id=user.practitioner_id, study_uid=s.study_instance_uid,
        what=f"dicomweb:series:{series_uid}", establishment_id=user.establishment_id, role=user.role, read="dicomweb",
    )
    return _instances(services.imaging, s, sops, ts)


@get(INSTANCE, name="wado-instance", sync_to_thread=True)
def wado_instance(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                  dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str], sop: FromPath[str]) -> Stream:
    """One instance (application/dicom in multipart/related, as WADO-RS answers): a read, traced as
    an access, not a download."""
    s = _study(services, user, dossier_id, study_uid, "dicomweb")
    sops = _in_series(s, series_uid, sop)
    return _instances(services.imaging, s, sops, _dicom_rendition(request))


# ---------------------------------------------------------------------- frames


def _frame_numbers(frames: str) -> list[int]:
    try:
        numbers = [int(n) for n in frames.split(",")]
    except ValueError:
        raise RequestRefused(f"numéros d'image attendus (1,2,…), reçu « {frames[:40]} »") from None
    if not numbers or any(n < 1 for n in numbers):
        raise RequestRefused("les numéros d'image commencent à 1")
    if len(numbers) > MAX_FRAMES:
        raise RequestRefused(f"au plus {MAX_FRAMES} images par requête")
    return numbers


def _stored_frames(path: Path, numbers: list[int]) -> StoredFrames:
    try:
        f = StoredFrames(path)
        f.check(numbers)
    except FrameError as e:
        raise (NotFoundError(str(e)) if e.status == 404 else RequestRefused(str(e), e.status)) from None
    return f


@get(INSTANCE + "/frames/{frames:str}", name="wado-frames", sync_to_thread=True)
def wado_frames(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str], sop: FromPath[str],
                frames: FromPath[str]) -> Stream:
    """Frames of an instance (what OHIF's image loader asks for), one part each; see frame_rendition."""
    s = _study(services, user, dossier_id, study_uid, "dicomweb")
    (sop,) = _in_series(s, series_uid, sop)
    numbers = _frame_numbers(frames)
    f = _stored_frames(_path(services.imaging, s, sop), numbers)
    choice = frame_rendition(accepted(request), f.transfer_syntax, f.encapsulated)
    if choice is None:
        offered = 'multipart/related; type="application/octet-stream" (décompressé, ou transfer-syntax=* tel que stocké)'
        if f.encapsulated and MEDIA_OF_TS.get(f.transfer_syntax):
            offered += f' ; type="{MEDIA_OF_TS[f.transfer_syntax]}" (tel que stocké, {f.transfer_syntax})'
        raise _refuse_media(request, "images", offered)
    media, ts, decode = choice
    try:
        data = [f.native(n) if decode else f.stored(n) for n in numbers]
    except FrameError as e:
        raise (NotFoundError(str(e)) if e.status == 404 else RequestRefused(str(e), e.status)) from None
    return _multipart(((f"{media}; transfer-syntax={ts}", d) for d in data), media)


# ---------------------------------------------------------------------- rendered, thumbnails

RENDERED_PARAMS = {"window", "preset", "quality", "viewport", "accept", "annotation", "iccprofile", "charset"}


def _rendered(request: Request, path: Path, frame: int, *, thumbnail: bool = False) -> Response:
    """A JPEG (default) or PNG of frame `frame` (0-based): `window=center,width[,linear]`, or our
    `preset=` (CT presets of the viewer), `quality=1..100`, `viewport=width,height` (fit within)."""
    p = request.query_params
    unknown = sorted(set(p.keys()) - RENDERED_PARAMS)
    if unknown:
        raise RequestRefused(f"paramètre inconnu « {unknown[0]} » (possibles : {', '.join(sorted(RENDERED_PARAMS))})")
    window = None
    if p.get("window"):
        w = p["window"].split(",")
        try:
            center, width = float(w[0]), float(w[1])
        except (ValueError, IndexError):
            raise RequestRefused("window : centre,largeur[,fonction] attendus (ex. 40,80)") from None
        if width <= 0 or len(w) > 3 or (len(w) == 3 and w[2].strip().lower() not in ("linear", "")):
            raise RequestRefused("window : largeur positive et fonction « linear » seulement")
        window = (center, width)
    preset = p.get("preset") or "auto"
    if preset not in CT_PRESETS:
        raise RequestRefused(f"preset : un de {', '.join(CT_PRESETS)}")
    quality = 90
    if p.get("quality"):
        if not re.fullmatch(r"\d{1,3}", p["quality"]) or not 1 <= int(p["quality"]) <= 100:
            raise RequestRefused("quality : entier de 1 à 100")
        quality = int(p["quality"])
    size: int | tuple[int, int] | None = 128 if thumbnail else None
    if p.get("viewport"):
        m = re.fullmatch(r"(\d{1,5}),(\d{1,5})", p["viewport"])
        if not m or not int(m.group(1)) or not int(m.group(2)):
            raise RequestRefused("viewport : largeur,hauteur en pixels (ex. 512,512)")
        size = (int(m.group(1)), int(m.group(2)))
    fmt = rendered_format(accepted(request))
    if fmt is None:
        raise _refuse_media(request, "image rendue", "image/jpeg, image/png")
    try:
        data = render(path, preset=preset, window=window, size=size, frame=frame, fmt=fmt, quality=quality)
    except RenderError as e:
        raise RequestRefused(f"image non affichable : {e}", 406) from None
    return Response(data, media_type="image/jpeg" if fmt == "JPEG" else "image/png",
                    headers={"Cache-Control": "private, max-age=600"})


@get(INSTANCE + "/rendered", name="wado-instance-rendered", sync_to_thread=True)
def wado_instance_rendered(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                           dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str],
                           sop: FromPath[str]) -> Response:
    """The instance rendered (its first frame for a multi-frame instance)."""
    s = _study(services, user, dossier_id, study_uid, "dicomweb")
    (sop,) = _in_series(s, series_uid, sop)
    return _rendered(request, _path(services.imaging, s, sop), 0)


@get(INSTANCE + "/frames/{frames:str}/rendered", name="wado-frame-rendered", sync_to_thread=True)
def wado_frame_rendered(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                        dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str],
                        sop: FromPath[str], frames: FromPath[str]) -> Response:
    """One frame rendered (a list of frames would be a video: refused)."""
    s = _study(services, user, dossier_id, study_uid, "dicomweb")
    (sop,) = _in_series(s, series_uid, sop)
    numbers = _frame_numbers(frames)
    if len(numbers) != 1:
        raise RequestRefused("une seule image par rendu (frames/<n>/rendered)")
    path = _path(services.imaging, s, sop)
    count = int(dcmread(path, stop_before_pixels=True).get("NumberOfFrames") or 1)
    if numbers[0] > count:
        raise NotFoundError(f"image {numbers[0]} inexistante : cette instance en a {count}")
    return _rendered(request, path, numbers[0] - 1)


@get(INSTANCE + "/thumbnail", name="wado-instance-thumbnail", sync_to_thread=True)
def wado_instance_thumbnail(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                            dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str],
                            sop: FromPath[str]) -> Response:
    s = _study(services, user, dossier_id, study_uid, "dicomweb")
    (sop,) = _in_series(s, series_uid, sop)
    return _rendered(request, _path(services.imaging, s, sop), 0, thumbnail=True)


@get(SERIES + "/thumbnail", name="wado-series-thumbnail", sync_to_thread=True)
def wado_series_thumbnail(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
                          dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str]) -> Response:
    """The series' middle image, small (as the viewer's thumbnails)."""
    s = _study(services, user, dossier_id, study_uid, "dicomweb")
    _in_series(s, series_uid)
    sops = _series_instances(services.imaging, s, series_uid)
    return _rendered(request, _path(services.imaging, s, sops[len(sops) // 2]), 0, thumbnail=True)


HANDLERS = [
    qido_studies, qido_all_series, qido_all_instances, qido_series, qido_study_instances, qido_instances,
    wado_metadata, wado_series_metadata, wado_instance_metadata, wado_study, wado_series, wado_instance,
    wado_frames, wado_instance_rendered, wado_frame_rendered, wado_instance_thumbnail, wado_series_thumbnail,
]
