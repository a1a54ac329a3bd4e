"""Imaging fragments for the dossier form and page: studies received, awaited exam, PACS search and
retrieve with progress (htmx fragments under /dossiers/{id}/dicom/…)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated

import anyio
import multipart
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Template

from adapters.dicom.fileimport import MAX_FILES, discard, extract_zip, identity_differences, import_studies, safe_name, scan
from adapters.dicom.recording import recorder
from adapters.dicom.qr import Peer, QRError, QueryRetrieve
from adapters.dicom.retrieve import retrieve_job_id
from application.errors import NotFoundError
from domain.errors import InvalidFieldError
from domain.imaging import received_study_id, valid_uid
from web.services import Services
from web.session import SessionUser

FIND_TIMEOUT = 15


def _requester(services: Services, user: SessionUser, dossier_id: str) -> None:
    services.relais.requester_actor(
        dossier_id=dossier_id, actor_id=user.practitioner_id, establishment_id=user.establishment_id
    )


def _as_list(value: list[str] | str) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


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


# ---------------------------------------------------------------------- picker (form slot)


@get("/dossiers/{dossier_id:str}/dicom", name="imaging-picker", sync_to_thread=True)
def picker(
    request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
) -> Template:
    """The imaging slot of the dossier form: received studies, awaited exam, PACS search."""
    _requester(services, user, dossier_id)
    web = services.imaging
    return Template("imaging/_picker.html", context={
        "dossier_id": dossier_id, "studies": web.studies.studies_for(user.establishment_id),
        "pacs": web.directory.pacs_of(user.establishment_id), "notice": "",
        "attached": {s["study_instance_uid"] for s in services.relais.get_dossier(
            dossier_id=dossier_id, actor_id=user.practitioner_id).imaging},
    })


@get("/dossiers/{dossier_id:str}/dicom/received", name="imaging-received", sync_to_thread=True)
def received(
    request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    q: FromQuery[str] = "",
) -> Template:
    """Studies received by the platform for the user's establishment (gateway push, retrieve, import)."""
    _requester(services, user, dossier_id)
    return _received(request, services, user, dossier_id, q, "")


def _received(request: Request, services: Services, user: SessionUser, dossier_id: str, q: str, notice: str) -> Template:
    web = services.imaging
    d = services.relais.get_dossier(dossier_id=dossier_id, actor_id=user.practitioner_id)
    return Template("imaging/_received.html", context={
        "dossier_id": dossier_id, "studies": web.studies.studies_for(user.establishment_id, search=q[:64]),
        "attached": {s["study_instance_uid"] for s in d.imaging}, "q": q, "notice": notice,
    })


@post("/dossiers/{dossier_id:str}/dicom/received/{study_id:str}/attach", name="imaging-attach", sync_to_thread=True)
def attach(
    request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], study_id: FromPath[str],
) -> Template:
    services.relais.attach_received_study(dossier_id=dossier_id, actor_id=user.practitioner_id, study_id=study_id)
    t = _received(request, services, user, dossier_id, "", "Examen joint au télédossier.")
    t.headers["HX-Trigger"] = "imaging-changed"
    return t


@dataclass
class AwaitForm:
    accession_number: str = ""


@post("/dossiers/{dossier_id:str}/dicom/await", name="imaging-await", sync_to_thread=True)
def await_exam(
    request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    data: Annotated[AwaitForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    """The exam awaited (Accession Number): it attaches itself on arrival, or now if already received."""
    relais = services.relais
    accession = data.accession_number.strip()
    relais.await_imaging(dossier_id=dossier_id, actor_id=user.practitioner_id, accession_number=accession)
    web = services.imaging
    attached = []
    for sid in web.studies.study_by_accession(user.establishment_id, accession):
        attached += relais.auto_attach(study_id=sid, dossier_ids=[dossier_id])
    notice = (
        "Examen déjà reçu : joint au télédossier." if attached
        else f"Examen {accession} attendu : il sera joint dès sa réception par le nœud DICOM."
    )
    t = _received(request, services, user, dossier_id, "", notice)
    if attached:
        t.headers["HX-Trigger"] = "imaging-changed"
    return t


# ---------------------------------------------------------------------- PACS query / retrieve


def _peer(services: Services, user: SessionUser, dossier_id: str, node: str) -> dict:
    return services.relais.pacs_for(dossier_id=dossier_id, actor_id=user.practitioner_id, node_aet=node)


@get("/dossiers/{dossier_id:str}/dicom/pacs/search", name="imaging-pacs-search", sync_to_thread=True)
def pacs_search(
    request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    node: FromQuery[str] = "", patient_id: FromQuery[str] = "", patient_name: FromQuery[str] = "",
    birth_date: FromQuery[str] = "", date_from: FromQuery[str] = "", date_to: FromQuery[str] = "",
    modality: FromQuery[str] = "", accession_number: FromQuery[str] = "",
) -> Template:
    """C-FIND at study level on a PACS of the user's establishment; results as a fragment."""
    info = _peer(services, user, dossier_id, node)
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
    request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    node: FromQuery[str] = "", study_uid: FromQuery[str] = "",
) -> Template:
    """The series of a study on the PACS (C-FIND series level), to retrieve only some of them."""
    info = _peer(services, user, dossier_id, node)
    uid = valid_uid(study_uid, "study_uid")
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


def _progress(request: Request, services: Services, user: SessionUser, dossier_id: str, node: str, study_uid: str) -> Template:
    info = _peer(services, user, dossier_id, node)
    sid = received_study_id(info["establishment_id"], study_uid)
    state = {"status": "queued", "expected": 0, "received": 0, "reason": ""}
    try:
        study = services.relais.received_study(study_id=str(sid))
        if study.last_retrieve:
            state = dict(study.last_retrieve)
        state["received"] = study.instance_count
    except NotFoundError:
        pass
    return Template("imaging/_retrieve_progress.html", context={
        "dossier_id": dossier_id, "node": node, "study_uid": study_uid, "state": state,
        "running": state["status"] in ("queued", "started"),
    })


@post("/dossiers/{dossier_id:str}/dicom/pacs/retrieve", name="imaging-pacs-retrieve", sync_to_thread=True)
def pacs_retrieve(
    request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    data: Annotated[RetrieveForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    """Starts (or restarts) the retrieve job `retrieve:<dossier>:<study>`; the answer polls its progress."""
    _peer(services, user, dossier_id, data.node)
    uid = valid_uid(data.study_uid, "study_uid")
    series = [valid_uid(s, "series_uids") for s in _as_list(data.series_uids) if s] or None
    services.imaging.jobs.enqueue(
        "retrieve_study", job_id=retrieve_job_id(dossier_id, uid), dossier_id=dossier_id, study_uid=uid,
        node_aet=data.node, series_uids=series,
    )
    t = _progress(request, services, user, dossier_id, data.node, uid)
    t.context["running"] = True
    return t


@get("/dossiers/{dossier_id:str}/dicom/pacs/progress", name="imaging-pacs-progress", sync_to_thread=True)
def pacs_progress(
    request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    node: FromQuery[str] = "", study_uid: FromQuery[str] = "",
) -> Template:
    t = _progress(request, services, user, dossier_id, node, valid_uid(study_uid, "study_uid"))
    if not t.context["running"] and t.context["state"]["status"] == "completed":
        t.headers["HX-Trigger"] = "imaging-changed"
    return t


HANDLERS = [picker, received, attach, await_exam, pacs_search, pacs_series, pacs_retrieve, pacs_progress]


# ---------------------------------------------------------------------- file import (CD, ZIP, files)

IMPORT_MAX_BYTES = 4 * 1024**3
IMPORT_ID = re.compile(r"[0-9a-f]{32}")


def _import_dir(services: Services, import_id: str) -> Path:
    if not IMPORT_ID.fullmatch(import_id):
        raise NotFoundError("import introuvable")
    return services.settings.data_dir / "imports" / import_id


def _review(services: Services, user: SessionUser, dossier_id: str, import_id: str, notice: str = "") -> Template:
    folder = _import_dir(services, import_id)
    owner = json.loads((folder / "owner.json").read_text()) if (folder / "owner.json").exists() else {}
    if (owner.get("dossier_id"), owner.get("practitioner_id")) != (dossier_id, user.practitioner_id):
        raise NotFoundError("import introuvable")
    result = scan(folder / "files")
    d = services.relais.get_dossier(dossier_id=dossier_id, actor_id=user.practitioner_id)
    studies = []
    for s in result.studies.values():
        studies.append({
            "uid": s.study_instance_uid, "patient": s.patient, "description": s.description, "date": s.study_date,
            "modalities": sorted(s.modalities), "count": len(s.files), "accession": s.accession_number,
            "differences": identity_differences(d.patient, s.patient),
        })
    must_confirm = len(result.patients) > 1 or any(s["differences"] for s in studies)
    return Template("imaging/_import_review.html", context={
        "dossier_id": dossier_id, "import_id": import_id, "studies": studies, "skipped": result.skipped,
        "refused": owner.get("refused", []), "dicomdir": result.dicomdir, "must_confirm": must_confirm,
        "patient": d.patient, "several_patients": len(result.patients) > 1, "notice": notice,
    })


@post("/dossiers/{dossier_id:str}/dicom/import", name="imaging-import-upload", request_max_body_size=IMPORT_MAX_BYTES)
async def import_upload(
    request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
) -> Template:
    """Files, ZIPs or a CD folder (multipart, several files) streamed to disk, then scanned."""
    await anyio.to_thread.run_sync(lambda: _requester(services, user, dossier_id))
    content_type = request.headers.get("content-type", "")
    boundary = multipart.parse_options_header(content_type)[1].get("boundary")
    if not content_type.startswith("multipart/form-data") or not boundary:
        raise InvalidFieldError("file", "formulaire de fichiers attendu")
    import_id = uuid.uuid4().hex
    folder = _import_dir(services, import_id)
    (folder / "upload").mkdir(parents=True)
    (folder / "files").mkdir()
    parser = multipart.PushMultipartParser(boundary, max_segment_count=MAX_FILES + 10)
    out, current, count, total, uploaded = None, None, 0, 0, []
    try:
        async for chunk in request.stream():
            for event in parser.parse(chunk):
                if isinstance(event, multipart.MultipartSegment):
                    current = event
                    if event.filename is not None and event.name == "files":
                        count += 1
                        rel = safe_name(event.filename) or PurePosixPath(f"fichier-{count}")
                        target = folder / "upload" / f"{count:06d}" / rel.name
                        target.parent.mkdir(parents=True)
                        out = target.open("wb")
                        uploaded.append((str(rel), target))
                elif event is None:
                    if out is not None:
                        out.close()
                        out = None
                    current = None
                elif current is not None and out is not None:
                    total += len(event)
                    out.write(event)
        parser.close()
    except multipart.MultipartError:
        discard(folder)
        raise InvalidFieldError("file", "envoi de fichiers incomplet ou invalide") from None
    finally:
        if out is not None:
            out.close()
    if not uploaded:
        discard(folder)
        raise InvalidFieldError("file", "choisissez des fichiers DICOM, une archive ZIP ou le dossier d'un CD")

    def unpack() -> list[str]:
        refused: list[str] = []
        for rel, path in uploaded:
            with path.open("rb") as f:
                is_zip = f.read(4) == b"PK\x03\x04"
            dest = folder / "files" / path.parent.name
            if is_zip:
                refused += extract_zip(path, dest)
                path.unlink()
            else:
                target = dest / (safe_name(rel) or PurePosixPath(path.name))
                target.parent.mkdir(parents=True, exist_ok=True)
                path.replace(target)
        return refused

    try:
        refused = await anyio.to_thread.run_sync(unpack)
    except InvalidFieldError:
        discard(folder)
        raise
    (folder / "owner.json").write_text(json.dumps({
        "dossier_id": dossier_id, "practitioner_id": user.practitioner_id, "refused": refused,
    }))
    return await anyio.to_thread.run_sync(lambda: _review(services, user, dossier_id, import_id))


@dataclass
class ConfirmForm:
    study_uids: list[str] | str = field(default_factory=list)  # one value arrives as a str
    confirm_identity: str = ""


@post("/dossiers/{dossier_id:str}/dicom/import/{import_id:str}", name="imaging-import-confirm", sync_to_thread=True)
def import_confirm(
    request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], import_id: FromPath[str],
    data: Annotated[ConfirmForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    """Imports the studies chosen; several patients or an identity mismatch need an explicit confirmation."""
    _requester(services, user, dossier_id)
    review = _review(services, user, dossier_id, import_id)
    known = {s["uid"] for s in review.context["studies"]}
    chosen = [u for u in _as_list(data.study_uids) if u in known]
    if not chosen:
        review.context["notice"] = "Choisissez au moins un examen à importer."
        return review
    needs = len({tuple(sorted(s["patient"].items())) for s in review.context["studies"] if s["uid"] in chosen}) > 1 or any(
        s["differences"] for s in review.context["studies"] if s["uid"] in chosen
    )
    if needs and data.confirm_identity != "yes":
        review.context["notice"] = "Vérifiez l'identité du patient puis cochez la confirmation."
        return review
    folder = _import_dir(services, import_id)
    web = services.imaging
    result = scan(folder / "files")
    updates = import_studies(result, chosen, store=web.store, establishment_id=user.establishment_id,
                             record=recorder(services.relais))
    study_ids = {u.study_instance_uid: u.study_id for u in updates}
    for uid in chosen:
        services.relais.attach_received_study(
            dossier_id=dossier_id, actor_id=user.practitioner_id, study_id=study_ids[uid], source="file_import",
        )
    discard(folder)
    t = _received(request, services, user, dossier_id, "", f"{len(chosen)} examen(s) importé(s) et joint(s) au télédossier.")
    t.headers["HX-Trigger"] = "imaging-changed"
    return t


HANDLERS += [import_upload, import_confirm]
