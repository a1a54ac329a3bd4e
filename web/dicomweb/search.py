"""QIDO-RS searches of a dossier's studies, series and instances."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response

from adapters.dicom.dicomjson import HeldValue, header_json, result
from application.errors import ForbiddenError, NotFoundError
from application.study_reads import SeriesSummary, StudyView
from web.dicomweb import query
from web.dicomweb.media import dicom_json
from web.errors import RequestRefused
from web.imaging_access import instance_path, read_study, series_instances
from web.services import Services
from web.session import SessionUser

FUZZY_WARNING = '299 relais: The fuzzymatching parameter is not supported. Only literal matching has been performed.'


def warnings(q: query.Query, more: int) -> dict[str, str] | None:
    """The Warning header of a search's answer (PS3.18 8.3.4.4 and 6.7.1.2), if it needs one."""
    said = [FUZZY_WARNING] if q.fuzzy else []
    if q.ignored:
        said.append(f"299 relais: The following query parameters were not understood and were ignored: {', '.join(q.ignored)}")
    if q.cut_by_server(more):
        said.append(f"299 relais: There are {more} additional results that can be requested")
    return {"Warning": ", ".join(said)} if said else None


def _base(request: Request[Any, Any, Any], dossier_id: str) -> str:
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


def _study_record(s: StudyView, base: str) -> dict[str, HeldValue]:
    return {
        "StudyInstanceUID": s.study_instance_uid, "StudyDate": s.study_date, "StudyTime": s.study_time,
        "AccessionNumber": s.accession_number, "StudyDescription": s.description,
        "ReferringPhysicianName": s.referring_physician, "PatientName": s.patient_name,
        "PatientID": s.patient_id, "PatientBirthDate": s.patient_birth_date,
        "PatientSex": s.patient_sex, "ModalitiesInStudy": s.modalities,
        "NumberOfStudyRelatedSeries": len(s.series), "NumberOfStudyRelatedInstances": s.instance_count,
        "RetrieveURL": f"{base}/studies/{s.study_instance_uid}",
    }


def _series_record(s: StudyView, se: SeriesSummary, base: str) -> dict[str, HeldValue]:
    return {
        "SeriesInstanceUID": se.uid, "Modality": se.modality, "SeriesDescription": se.description,
        "SeriesNumber": se.number, "NumberOfSeriesRelatedInstances": se.count,
        "RetrieveURL": f"{base}/studies/{s.study_instance_uid}/series/{se.uid}",
    }


def search(
    request: Request[Any, Any, Any], services: Services, user: SessionUser, dossier_id: str, level: str,
    study_uid: str | None = None, series_uid: str | None = None,
) -> Response[bytes]:
    """A QIDO-RS search at `level` under the dossier, a study or a series (fixed by the URL)."""
    # authorised (and traced) before the query is looked at
    studies = [read_study(services, user, dossier_id, study_uid, "dicomweb")] if study_uid else []
    attached = [] if study_uid else _dossier_study_uids(services, user, dossier_id)
    try:
        q = query.parse(request.query_params.multi_items(), level)
    except query.QueryError as e:
        raise RequestRefused(str(e)) from None
    if not study_uid:  # each study read is checked and traced; those the UID keys exclude are not read
        uid_filters = [f for f in q.filters if f.keyword == "StudyInstanceUID"]
        for uid in attached:
            if all(f.matches(uid) for f in uid_filters):
                try:
                    studies.append(read_study(services, user, dossier_id, uid, "dicomweb"))
                except NotFoundError:
                    continue
    base = _base(request, dossier_id)
    study_filters = [f for f in q.filters if f.level == "study"]
    found: list[tuple[dict[str, HeldValue], StudyView, str | None]] = []  # (record, study, SOP Instance UID of its header)
    for s in studies:
        srec = _study_record(s, base)
        if not all(f.matches(srec.get(f.keyword)) for f in study_filters):
            continue
        if level == "study":
            first = s.series[0].uid if s.series else None  # its first instance: the header of study attributes not held
            found.append((srec, s, min((sop for sop, se in s.instances.items() if se == first), default=None)))
            continue
        rows = {r.sop_instance_uid: r for r in services.imaging.studies.instances_of(s.id)} if level == "instance" else {}
        for se in s.series:
            if series_uid and se.uid != series_uid:
                continue
            serec = {**srec, **_series_record(s, se, base)}
            sops = series_instances(services.imaging, s, se.uid)
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
    matched, more = q.page([f for f in found if q.matches(f[0])])
    shown = [lv for lv in query.LEVELS[: query.LEVELS.index(level) + 1]
             if lv == level or (lv == "study" and not study_uid) or (lv == "series" and not series_uid)]
    keywords = [kw for lv in shown for kw in query.DEFAULT[lv]] + ["StudyInstanceUID"] + (
        ["SeriesInstanceUID"] if level != "study" else []) + q.returned
    asked = [kw for kw in dict.fromkeys(q.returned) if kw not in found[0][0]] if found else []
    from_header: list[str] | None = asked  # None: the whole header
    if q.all_fields:
        keywords += list(found[0][0]) if found else []
        extra = query.ALL_FROM_HEADER[level]
        from_header = None if extra is None else asked + extra
    out = []
    for record, s, header_sop in matched:
        header = (
            header_json(instance_path(services.imaging, s, header_sop), from_header)
            if header_sop and (from_header is None or from_header) else None
        )
        out.append(result(record, dict.fromkeys(keywords), header))
    return dicom_json(out, warnings(q, more))
