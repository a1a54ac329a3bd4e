"""PACS query and retrieve from the dossier form: C-FIND of studies and series, the retrieve job's progress."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Template

from adapters.dicom.qr import Peer, QRError, QueryRetrieve
from adapters.dicom.retrieve import retrieve_job_id
from application.errors import NotFoundError
from domain.errors import InvalidFieldError
from domain.imaging import received_study_id, valid_uid
from domain.values import Json
from web.pages.imaging import form_list, requester_only
from web.services import Services
from web.session import SessionUser

FIND_TIMEOUT = 15


def _dicom_date(value: str, field_name: str) -> str:
    value = (value or "").strip()
    if not value:
        return ""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise InvalidFieldError(field_name, "date attendue au format AAAA-MM-JJ")
    return value.replace("-", "")


def _dicom_text(value: str, limit: int = 64) -> str:
    """A C-FIND key typed by a user: no backslash (multi-value) nor control characters."""
    return re.sub(r"[\\\x00-\x1f]", "", (value or "").strip())[:limit]


def _peer(services: Services, user: SessionUser, dossier_id: str, node: str) -> Json:
    return services.relais.pacs_for(dossier_id=dossier_id, actor_id=user.acting(), node_aet=node)


@get("/dossiers/{dossier_id:str}/dicom/pacs/search", name="imaging-pacs-search", sync_to_thread=True)
def pacs_search(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    node: FromQuery[str] = "", patient_id: FromQuery[str] = "", patient_name: FromQuery[str] = "",
    birth_date: FromQuery[str] = "", date_from: FromQuery[str] = "", date_to: FromQuery[str] = "",
    modality: FromQuery[str] = "", accession_number: FromQuery[str] = "",
) -> Template:
    """C-FIND at study level on a PACS of the user's establishment; results as a fragment (patients'
    identities as the PACS holds them: the read is traced, whatever the PACS answers)."""
    info = _peer(services, user, dossier_id, node)
    requester_only(services, user, dossier_id, f"pacs-search:{info['aet']}")
    keys = {
        "patient_id": _dicom_text(patient_id), "patient_name": _dicom_text(patient_name),
        "birth_date": _dicom_date(birth_date, "birth_date"), "date_from": _dicom_date(date_from, "date_from"),
        "date_to": _dicom_date(date_to, "date_to"), "modality": _dicom_text(modality, 16).upper(),
        "accession_number": _dicom_text(accession_number, 16),
    }
    error, studies = "", []
    if not any(keys.values()):
        error = "Indiquez au moins un critère de recherche."
    else:
        if keys["patient_name"] and "*" not in keys["patient_name"]:
            keys["patient_name"] += "*"
        try:
            studies = QueryRetrieve(services.imaging.our_aet, timeout=FIND_TIMEOUT).find_studies(
                Peer(info["aet"], info["host"], info["port"]), **keys
            )
        except QRError as e:
            error = e.reason
    return Template("imaging/_pacs_results.html", context={
        "dossier_id": dossier_id, "node": info["aet"], "studies": studies, "error": error,
    })


@get("/dossiers/{dossier_id:str}/dicom/pacs/series", name="imaging-pacs-series", sync_to_thread=True)
def pacs_series(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    node: FromQuery[str] = "", study_uid: FromQuery[str] = "",
) -> Template:
    """The series of a study on the PACS (C-FIND series level), to retrieve only some of them (traced)."""
    info = _peer(services, user, dossier_id, node)
    uid = valid_uid(study_uid, "study_uid")
    requester_only(services, user, dossier_id, f"pacs-series:{uid}")
    error, series = "", []
    try:
        series = QueryRetrieve(services.imaging.our_aet, timeout=FIND_TIMEOUT).find_series(
            Peer(info["aet"], info["host"], info["port"]), uid
        )
    except QRError as e:
        error = e.reason
    return Template("imaging/_pacs_series.html", context={
        "dossier_id": dossier_id, "node": info["aet"], "study_uid": uid, "series": series, "error": error,
    })


@dataclass
class RetrieveForm:
    node: str = ""
    study_uid: str = ""
    series_uids: list[str] | str = field(default_factory=list)  # one value arrives as a str


def _progress(
    request: Request[Any, Any, Any], services: Services, user: SessionUser, dossier_id: str, node: str, study_uid: str,
) -> Template:
    info = _peer(services, user, dossier_id, node)
    sid = received_study_id(info["establishment_id"], study_uid)
    state = {"status": "queued", "expected": 0, "received": 0, "reason": ""}
    try:
        study = services.relais.received_study_view(study_id=str(sid))
        if study.last_retrieve:
            state = dict(study.last_retrieve)
        state["received"] = study.instance_count
    except NotFoundError:
        pass
    d = services.relais.get_dossier(dossier_id=dossier_id, actor_id=user.practitioner_id)
    return Template("imaging/_retrieve_progress.html", context={
        "dossier_id": dossier_id, "node": node, "study_uid": study_uid, "state": state,
        "running": state["status"] in ("queued", "started"),
        # a retrieved study whose patient identity needs checking is held, not attached (Dossier.ImagingHeld)
        "attached": any(s["study_instance_uid"] == study_uid for s in d.imaging),
        "held": [h for h in d.imaging_held if h["study_instance_uid"] == study_uid],
    })


@post("/dossiers/{dossier_id:str}/dicom/pacs/retrieve", name="imaging-pacs-retrieve", sync_to_thread=True)
def pacs_retrieve(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    data: Annotated[RetrieveForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    """Starts (or restarts) the retrieve job `retrieve:<dossier>:<study>`; the answer polls its progress."""
    _peer(services, user, dossier_id, data.node)
    uid = valid_uid(data.study_uid, "study_uid")
    series = [valid_uid(s, "series_uids") for s in form_list(data.series_uids) if s] or None
    services.imaging.jobs.enqueue(
        "retrieve_study", job_id=retrieve_job_id(dossier_id, uid), dossier_id=dossier_id, study_uid=uid,
        node_aet=data.node, series_uids=series,
    )
    t = _progress(request, services, user, dossier_id, data.node, uid)
    t.context["running"] = True
    return t


@get("/dossiers/{dossier_id:str}/dicom/pacs/progress", name="imaging-pacs-progress", sync_to_thread=True)
def pacs_progress(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    node: FromQuery[str] = "", study_uid: FromQuery[str] = "",
) -> Template:
    t = _progress(request, services, user, dossier_id, node, valid_uid(study_uid, "study_uid"))
    if not t.context["running"] and t.context["state"]["status"] == "completed":
        t.headers["HX-Trigger"] = "imaging-changed"
    return t


HANDLERS = [pacs_search, pacs_series, pacs_retrieve, pacs_progress]
