"""The dossier page: banner, question, documents, imaging, timeline, and the actions allowed now."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import File, Template

from application.access import Workspace
from application.errors import ConflictError, NotFoundError
from domain.dossier import DECLINE_REASONS
from domain.errors import NotAllowedError
from application.errors import ForbiddenError
from web.errors import StaleView, is_htmx
from web.present import FOLLOW_UP
from web.services import Services
from web.session import SessionUser

DONE = {
    "accept": "Télédossier pris en charge.",
    "decline": "Demande refusée ; le requérant en est informé.",
    "request_complement": "Demande de complément envoyée.",
    "provide_complement": "Complément envoyé au destinataire.",
    "forward": "Télédossier transféré.",
    "give_opinion": "Avis rendu : le requérant le voit dès maintenant.",
    "close": "Télédossier clôturé.",
    "cancel": "Télédossier annulé.",
}


@dataclass
class ActionForm:
    expected_version: int | None = None
    send_id: str = ""
    message: str = ""
    reason_code: str = ""
    reason: str = ""
    note: str = ""
    report: str = ""
    conclusion: str = ""
    recommendations: str = ""
    follow_up: str = ""
    to_service_id: str = ""
    to_practitioner_id: str = ""


def actor_dict(user: SessionUser) -> dict:
    return {"practitioner_id": user.practitioner_id, "role": user.role, "establishment_id": user.establishment_id,
            "name": user.display_name}


def open_workspace(services: Services, user: SessionUser, dossier_id: str, kind: str = "dossier", target: str = "") -> Workspace:
    return services.relais.open_dossier(
        dossier_id=dossier_id, actor_id=user.practitioner_id, establishment_id=user.establishment_id, role=user.role,
        kind=kind, target=target,
    )


def page_context(services: Services, user: SessionUser, ws: Workspace, **extra: Any) -> dict:
    d = ws.dossier
    names = services.names
    mine = set(ws.send_actions)
    return {
        "ws": ws, "d": d, "names": names, "user": user, "form": {}, "notice": "",
        "decline_reasons": DECLINE_REASONS, "follow_up": FOLLOW_UP, "mine": mine,
        "forward_services": names.services_of(user.establishment_id) if any("forward" in a for a in ws.send_actions.values()) else [],
        "forward_colleagues": [c for c in names.colleagues(user.establishment_id) if c[0] != user.practitioner_id]
        if any("forward" in a for a in ws.send_actions.values()) else [],
        "history": list(ws.history), **extra,
    }


@get("/dossiers/{dossier_id:str}", name="dossier", sync_to_thread=True)
def dossier_page(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str]
) -> Template:
    ws = open_workspace(services, user, dossier_id)
    return Template("dossier/page.html", context=page_context(services, user, ws))


def run_action(services: Services, user: SessionUser, dossier_id: str, action: str, f: ActionForm) -> None:
    r = services.relais
    common = {"dossier_id": dossier_id, "actor_id": user.practitioner_id, "expected_version": f.expected_version}
    match action:
        case "accept":
            r.accept(send_id=f.send_id, **common)
        case "decline":
            r.decline(send_id=f.send_id, reason_code=f.reason_code, reason=f.reason, **common)
        case "request_complement":
            r.request_complement(send_id=f.send_id, message=f.message, **common)
        case "provide_complement":
            r.provide_complement(send_id=f.send_id, message=f.message, **common)
        case "forward":
            r.forward(send_id=f.send_id, to_service_id=f.to_service_id or None,
                      to_practitioner_id=f.to_practitioner_id or None, note=f.note, **common)
        case "give_opinion":
            r.give_opinion(send_id=f.send_id, report=f.report, conclusion=f.conclusion,
                           recommendations=f.recommendations, follow_up=f.follow_up or "none", **common)
        case "close":
            r.close_dossier(note=f.note, **common)
        case "cancel":
            r.cancel_dossier(reason=f.reason, **common)
        case _:
            raise NotFoundError(f"action inconnue : {action}")


@post("/dossiers/{dossier_id:str}/actions/{action:str}", name="dossier-action", sync_to_thread=True)
def dossier_action(
    request: Request,
    services: NamedDependency[Services],
    user: NamedDependency[SessionUser],
    dossier_id: FromPath[str],
    action: FromPath[str],
    data: Annotated[ActionForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    """One command; the page (or its #workspace block for htmx) comes back in its new state."""
    if action not in DONE:
        raise NotFoundError(f"action inconnue : {action}")
    try:
        run_action(services, user, dossier_id, action, data)
    except ConflictError as e:
        ws = open_workspace(services, user, dossier_id)
        context = page_context(services, user, ws, form=asdict(data), failed_action=action)
        raise StaleView(
            "Ce dossier a changé pendant que vous le consultiez : voici son nouvel état. Rien n'a été enregistré ; "
            "votre saisie est conservée ci-dessous.", "dossier/page.html", "workspace", context,
        ) from e
    except (ForbiddenError, NotAllowedError) as e:
        services.relais.trace_refusal(dossier_id=dossier_id, actor=actor_dict(user), what=action, error=e)
        raise
    ws = open_workspace(services, user, dossier_id)
    context = page_context(services, user, ws, notice=DONE[action])
    if is_htmx(request):
        return HTMXBlockTemplate(template_name="dossier/page.html", block_name="workspace", context=context)
    return Template("dossier/page.html", context=context)


@get("/dossiers/{dossier_id:str}/documents/{document_id:str}", name="document", sync_to_thread=True)
def document(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    document_id: FromPath[str],
) -> File:
    """A document of the dossier, after the same authorisation as the page; the opening is traced."""
    ws = open_workspace(services, user, dossier_id, kind="document", target=document_id)
    doc = next((x for x in ws.dossier.documents if x["document_id"] == document_id), None)
    if doc is None:
        raise NotFoundError("document introuvable")
    path = services.blobs.path(doc["sha256"])
    if not path.exists():
        raise NotFoundError("fichier du document introuvable sur le serveur")
    return File(path=path, filename=doc["filename"], media_type=doc["media_type"], content_disposition_type="inline")


@get("/dossiers/{dossier_id:str}/imaging/{study_uid:str}", name="imaging", sync_to_thread=True)
def imaging(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    study_uid: FromPath[str],
) -> Template:
    """One imaging study with the patient's identity (the DICOM viewer comes with the imaging issue)."""
    ws = open_workspace(services, user, dossier_id, kind="imaging", target=study_uid)
    study = next((s for s in ws.dossier.imaging if s["study_instance_uid"] == study_uid), None)
    if study is None:
        raise NotFoundError("examen introuvable dans ce télédossier")
    return Template("dossier/imaging.html", context=page_context(services, user, ws, study=study))


@get("/dossiers/{dossier_id:str}/report", name="report", sync_to_thread=True)
def report(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str]
) -> Template:
    """The printable report (compte rendu) for the patient's file; the browser prints it or saves a PDF."""
    ws = open_workspace(services, user, dossier_id, kind="report")
    return Template("dossier/report.html", context=page_context(services, user, ws))


HANDLERS = [dossier_page, dossier_action, document, imaging, report]
