"""The dossier page: banner, question, documents, imaging, timeline, and the actions allowed now."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Annotated, Any, TypedDict

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.plugins.htmx import ClientRedirect
from litestar.response import File, Redirect, Template

from application.access import Workspace
from application.actors import Acting
from application.errors import ConflictError, ForbiddenError, NotFoundError
from domain.dossier import DECLINE_REASONS
from domain.errors import NotAllowedError
from domain.values import Json, Role
from web.errors import StaleView, is_htmx
from web.forms import new_token
from web.guards import requires_role
from web.present import CHANNELS, FOLLOW_UP
from web.services import Services
from web.session import SessionUser

CLINICIAN = requires_role(Role.CLINICIAN)

DONE = {
    "accept": "Télédossier pris en charge.",
    "decline": "Demande refusée ; le requérant en est informé.",
    "request_complement": "Demande de complément envoyée.",
    "provide_complement": "Complément envoyé au destinataire.",
    "forward": "Télédossier transféré.",
    "give_opinion": "Avis rendu : le requérant le voit dès maintenant.",
    "close": "Télédossier clôturé.",
    "cancel": "Télédossier annulé.",
    "acknowledge_receipt": "Réception accusée : le transfert d'imagerie est terminé et le télédossier clôturé.",
}


@dataclass
class ActionForm:
    expected_version: int | None = None
    form_token: str = ""
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
    to_establishment_id: str = ""
    to: str = ""  # "establishment|service|practitioner" chosen from the directory search (another establishment)
    to_channel: str = ""
    q: str = ""  # the directory search box of the forward form (not used by the command)


def actor_dict(user: SessionUser) -> Json:
    return {"practitioner_id": user.practitioner_id, "role": user.role, "establishment_id": user.establishment_id,
            "name": user.display_name}


@contextmanager
def refusals_traced(services: Services, user: SessionUser, dossier_id: str, what: str) -> Iterator[None]:
    """A command refused for want of rights (role, establishment, dossier) is traced, then answered 403."""
    try:
        yield
    except (ForbiddenError, NotAllowedError) as e:
        services.relais.trace_refusal(dossier_id=dossier_id, actor=actor_dict(user), what=what, error=e)
        raise


def open_workspace(services: Services, user: SessionUser, dossier_id: str, kind: str = "dossier", target: str = "") -> Workspace:
    return services.relais.open_dossier(
        dossier_id=dossier_id, actor_id=user.practitioner_id, establishment_id=user.establishment_id, role=user.role,
        kind=kind, target=target,
    )


def page_context(services: Services, user: SessionUser, ws: Workspace, **extra: Any) -> dict[str, Any]:
    d = ws.dossier
    names = services.names
    mine = set(ws.send_actions)
    return {
        "ws": ws, "d": d, "names": names, "user": user, "form": {}, "notice": "",
        "decline_reasons": DECLINE_REASONS, "follow_up": FOLLOW_UP, "mine": mine,
        "forward_services": names.services_of(user.establishment_id) if any("forward" in a for a in ws.send_actions.values()) else [],
        "forward_colleagues": [c for c in names.colleagues(user.establishment_id) if c[0] != user.practitioner_id]
        if any("forward" in a for a in ws.send_actions.values()) else [],
        "channels": CHANNELS, "history": list(ws.history), "form_token": new_token,
        # an imaging transfer's recipient may export the images to its own PACS before acknowledging receipt
        "pacs_nodes": [n.aet for n in services.imaging.directory.pacs_of(user.establishment_id)]
        if any("acknowledge_receipt" in a for a in ws.send_actions.values()) else [],
        "documents_by_id": {doc["document_id"]: doc for doc in d.documents},
        "studies_by_uid": {st["study_instance_uid"]: st for st in d.imaging}, **extra,
    }


@get("/dossiers/{dossier_id:str}", name="dossier", sync_to_thread=True)
def dossier_page(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], live: FromQuery[bool] = False,
) -> Template:
    """The page; with `live=1` (htmx, the page's stream said it changed) its #workspace block only.
    Opening it marks my notifications about this dossier read (a live refresh does not: the bell keeps
    counting what arrived while the page was open, until it is opened or marked read)."""
    position = services.inbox.position() if not live else None  # read before the dossier: the stream's `last`
    ws = open_workspace(services, user, dossier_id)
    if user.role == Role.CLINICIAN and not live:
        services.notifications.mark_all_read(user.practitioner_id, dossier_id=str(ws.dossier.id))
    if live and is_htmx(request):
        return HTMXBlockTemplate(template_name="dossier/page.html", block_name="workspace",
                                 context=page_context(services, user, ws))
    return Template("dossier/page.html", context=page_context(services, user, ws, position=position))


class CommandArgs(TypedDict):
    """What every command on a dossier is given besides its own fields."""

    dossier_id: str
    actor_id: Acting
    expected_version: int | None


def run_action(services: Services, user: SessionUser, dossier_id: str, action: str, f: ActionForm) -> None:
    r = services.relais
    common: CommandArgs = {
        "dossier_id": dossier_id, "actor_id": user.acting(f.form_token, version_required=True),
        "expected_version": f.expected_version,
    }
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
            establishment, service, practitioner = f.to_establishment_id, f.to_service_id, f.to_practitioner_id
            if f.to:  # a team or colleague of another establishment, from the directory search
                establishment, service, practitioner = (f.to.split("|") + ["", "", ""])[:3]
            r.forward(send_id=f.send_id, to_establishment_id=establishment or None, to_service_id=service or None,
                      to_practitioner_id=practitioner or None, to_channel=f.to_channel or None, note=f.note, **common)
        case "give_opinion":
            r.give_opinion(send_id=f.send_id, report=f.report, conclusion=f.conclusion,
                           recommendations=f.recommendations, follow_up=f.follow_up or "none", **common)
        case "close":
            r.close_dossier(note=f.note, **common)
        case "cancel":
            r.cancel_dossier(reason=f.reason, **common)
        case "acknowledge_receipt":
            r.acknowledge_receipt(send_id=f.send_id, note=f.note, **common)
        case _:
            raise NotFoundError(f"action inconnue : {action}")


@post("/dossiers/{dossier_id:str}/actions/{action:str}", name="dossier-action", sync_to_thread=True)
def dossier_action(
    request: Request[Any, Any, Any],
    services: NamedDependency[Services],
    user: NamedDependency[SessionUser],
    dossier_id: FromPath[str],
    action: FromPath[str],
    data: Annotated[ActionForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template | Redirect | ClientRedirect:
    """One command; the page (or its #workspace block for htmx) comes back in its new state.

    After a forward the dossier may no longer concern me (handed to a colleague or another
    establishment): back to my inbox, saying it was forwarded."""
    if action not in DONE:
        raise NotFoundError(f"action inconnue : {action}")
    try:
        with refusals_traced(services, user, dossier_id, action):
            run_action(services, user, dossier_id, action, data)
    except ConflictError as e:
        ws = open_workspace(services, user, dossier_id)
        context = page_context(services, user, ws, form=asdict(data), failed_action=action)
        raise StaleView(
            "Ce dossier a changé pendant que vous le consultiez : voici son nouvel état. Rien n'a été enregistré ; "
            "votre saisie est conservée ci-dessous.", "dossier/page.html", "workspace", context,
        ) from e
    if action == "forward" and not services.relais.may_read_now(
        dossier_id=dossier_id, actor_id=user.practitioner_id, establishment_id=user.establishment_id, role=user.role
    ):
        url = "/inbox/received?done=forwarded"
        if not is_htmx(request):
            return Redirect(url, status_code=303)
        redirect = ClientRedirect(url)
        redirect.status_code = 200  # like every other answer to an action (a POST handler defaults to 201)
        return redirect
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
    """One imaging study with the patient's identity banner; the page loads the viewer fragments."""
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


@get("/dossiers/{dossier_id:str}/forward-targets", name="forward-targets", guards=[CLINICIAN], sync_to_thread=True)
def forward_targets(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    q: FromQuery[str] = "", send_id: FromQuery[str] = "",
) -> Template:
    """Teams and colleagues of other establishments to forward a send to (directory search, no patient data),
    for a user who may forward that send of that dossier now (scoped like every other dossier URL)."""
    with refusals_traced(services, user, dossier_id, "forward-targets"):
        services.relais.may_forward(dossier_id=dossier_id, actor_id=user.acting(), send_id=send_id[:64])
    results = [e for e in services.names.search(q[:100]) if e["id"] != user.establishment_id] if len(q.strip()) >= 2 else []
    return Template("dossier/_forward_targets.html", context={
        "results": results, "q": q, "send_id": send_id, "user": user,
    })


HANDLERS = [dossier_page, dossier_action, document, imaging, report, forward_targets]
