"""Creating a dossier in steps: workflow → patient → question and consent → documents → imaging →
recipients → review and send. The draft is recorded at step 3 and saved at every step after."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypedDict

import anyio
from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template

from adapters.blobs import MAX_DOCUMENT_BYTES, DocumentRejectedError
from application.access import Workspace
from application.actors import Acting
from application.errors import ConflictError
from domain.errors import InvalidFieldError
from domain.values import PARIS, URGENCY_LABELS, WORKFLOW_LABELS, Json, Role, patient_identity
from web.errors import FormRejected, StaleView, is_htmx
from web.forms import ItemForm, new_token
from web.guards import requires_role
from web.pages.dossier import open_workspace, refusals_traced
from web.present import CHANNELS, IMAGING_SOURCES, paris
from web.services import Services
from web.session import SessionUser
from web.uploads import BrokenUpload, form_boundary, receive

STEPS = {
    "workflow": "Parcours", "patient": "Patient", "question": "Question et consentement", "documents": "Documents",
    "imaging": "Imagerie", "recipients": "Destinataires", "review": "Vérification et envoi",
}
ORDER = list(STEPS)
CLINICIAN = requires_role(Role.CLINICIAN)
FIELD_LABELS = {
    "birth_name": "nom de naissance", "first_names": "prénoms", "birth_date": "date de naissance", "sex": "sexe",
    "birth_place_code": "lieu de naissance", "ins": "matricule INS", "used_name": "nom d'usage", "question": "question",
    "workflow": "parcours", "urgency": "urgence", "consent": "consentement", "consent_note": "précisions",
}
CREATABLE = {k: v for k, v in WORKFLOW_LABELS.items() if k != "legacy"}


@dataclass
class DraftForm:
    expected_version: int | None = None
    form_token: str = ""
    workflow: str = ""
    urgency: str = "routine"
    birth_name: str = ""
    first_names: str = ""
    used_name: str = ""
    birth_date: str = ""
    sex: str = ""
    birth_place_code: str = ""
    ins: str = ""
    question: str = ""
    consent: str = ""
    consent_note: str = ""
    imaging_source: str = ""
    establishment_id: str = ""
    service_id: str = ""
    practitioner_id: str = ""
    channel: str = ""


def _patient(f: DraftForm) -> Json:
    return {"birth_name": f.birth_name, "first_names": f.first_names, "birth_date": f.birth_date, "sex": f.sex,
            "birth_place_code": f.birth_place_code, "ins": f.ins or None, "used_name": f.used_name or None}


def _context(
    step: str, form: dict[str, Any], ws: Workspace | None = None, services: Services | None = None, **extra: Any,
) -> dict[str, Any]:
    return {
        "step": step, "steps": STEPS, "order": ORDER, "form": form, "ws": ws, "d": ws.dossier if ws else None,
        "workflows": CREATABLE, "urgencies": URGENCY_LABELS, "sources": IMAGING_SOURCES, "channels": CHANNELS,
        "names": services.names if services else None, "field_labels": FIELD_LABELS, "max_mb": MAX_DOCUMENT_BYTES // (1024 * 1024),
        "form_token": new_token, "target_key": target_key, **extra,
    }


def _form_of(ws: Workspace) -> dict[str, Any]:
    d = ws.dossier
    p = d.patient
    return asdict(DraftForm(
        expected_version=d.version, workflow=d.workflow, urgency=d.urgency, birth_name=p["birth_name"],
        first_names=p["first_names"], used_name=p.get("used_name") or "", birth_date=p["birth_date"], sex=p["sex"],
        birth_place_code=p["birth_place_code"], ins=p.get("ins") or "", question=d.question,
        consent=(d.consent or {}).get("status", ""), consent_note=(d.consent or {}).get("note", ""),
        imaging_source=d.imaging_source,
    ))


# ---------------------------------------------------------------- before the draft exists


@get("/dossiers/new", guards=[CLINICIAN], name="compose-new")
async def new(workflow: FromQuery[str] = "") -> Template:
    return Template("compose/step.html", context=_context("workflow", asdict(DraftForm(workflow=workflow))))


@post("/dossiers/new/{step:str}", guards=[CLINICIAN], sync_to_thread=True, name="compose-new-step")
def new_step(
    services: NamedDependency[Services], step: FromPath[str],
    data: Annotated[DraftForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    """Steps 1 and 2 are carried in the form; each is checked before the next is shown."""
    if data.workflow not in CREATABLE:
        raise FormRejected(InvalidFieldError("workflow", "choisissez un parcours"), "compose/step.html",
                           _context("workflow", asdict(data)))
    if step == "question":
        try:
            patient_identity(**_patient(data), today=datetime.now(PARIS).date())
        except InvalidFieldError as e:
            raise FormRejected(e, "compose/step.html", _context("patient", asdict(data))) from None
    elif step != "patient":
        step = "workflow"
    return Template("compose/step.html", context=_context(step, asdict(data)))


@post("/dossiers/new", guards=[CLINICIAN], sync_to_thread=True, status_code=303, name="compose-create")
def create(
    services: NamedDependency[Services], user: NamedDependency[SessionUser],
    data: Annotated[DraftForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Redirect:
    try:
        did = _create(services, user, data)
    except InvalidFieldError as e:
        raise FormRejected(e, "compose/step.html", _context("question", asdict(data))) from None
    return Redirect(f"/dossiers/{did}/edit/documents", status_code=303)


def _create(services: Services, user: SessionUser, data: DraftForm) -> str:
    return services.relais.create_dossier(
        actor_id=user.acting(data.form_token), workflow=data.workflow,
        urgency=data.urgency, patient_birth_name=data.birth_name, patient_first_names=data.first_names,
        patient_birth_date=data.birth_date, patient_sex=data.sex, patient_birth_place_code=data.birth_place_code,
        patient_ins=data.ins or None, patient_used_name=data.used_name or None, question=data.question,
        consent=data.consent or None, consent_note=data.consent_note,
    )


# ---------------------------------------------------------------- editing the draft


def _draft(services: Services, user: SessionUser, dossier_id: str) -> Workspace | None:
    ws = open_workspace(services, user, dossier_id)
    return ws if "edit" in ws.actions else None


@get("/dossiers/{dossier_id:str}/edit/{step:str}", guards=[CLINICIAN], name="compose-edit")
async def edit_step(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str], step: FromPath[str]
) -> Template | Redirect:
    def build() -> Template | Redirect:
        ws = _draft(services, user, dossier_id)
        if ws is None:
            return Redirect(f"/dossiers/{dossier_id}", status_code=303)
        return Template("compose/step.html", context=_context(step if step in STEPS else "review", _form_of(ws), ws, services))

    return await anyio.to_thread.run_sync(build)


@get("/dossiers/{dossier_id:str}/edit/version", guards=[CLINICIAN], sync_to_thread=True, name="compose-version")
def version_seen(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    expected_version: FromQuery[int],
) -> Template:
    """The step form's version once the user's own changes from the same page are counted (the imaging
    step asks after a study was attached or imported there): their own change never makes the next
    step look stale, anyone else's still does."""
    version = services.relais.version_seen(dossier_id=dossier_id, actor_id=user.acting(), seen=expected_version)
    return HTMXBlockTemplate(template_name="compose/step.html", block_name="step_version",
                             context={"d": {"id": dossier_id}, "form": {"expected_version": version}})


class DraftActor(TypedDict):
    """Which draft, and who edits it: what every command of a step is given."""

    dossier_id: str
    actor_id: Acting


def _save(
    services: Services, user: SessionUser, dossier_id: str, step: str, f: DraftForm, ws: Workspace, token: str,
) -> None:
    """The step's commands, on the version the form showed (required), once per form sent (`token`)."""
    r = services.relais
    who = DraftActor(dossier_id=dossier_id, actor_id=user.acting(token, version_required=True))
    d = ws.dossier
    if step == "workflow":
        r.edit_draft(**who, expected_version=f.expected_version, workflow=f.workflow, urgency=f.urgency)
    elif step == "patient":
        r.edit_draft(**who, expected_version=f.expected_version, patient=_patient(f))
    elif step == "question":
        version = f.expected_version
        if f.question.strip() != d.question:
            recorded = r.edit_draft(**who, expected_version=version, question=f.question)
            version = version + 1 if recorded and version is not None else None  # the consent goes on the version the edit made
        if f.consent and (f.consent, f.consent_note) != ((d.consent or {}).get("status"), (d.consent or {}).get("note", "")):
            r.record_consent(  # a command of its own in the same form: a token of its own
                dossier_id=dossier_id, actor_id=user.acting(f"{token}-consent" if token else "", version_required=True),
                expected_version=version, status=f.consent, note=f.consent_note,
            )
    elif step == "imaging" and f.imaging_source and f.imaging_source != d.imaging_source:
        r.edit_draft(**who, expected_version=f.expected_version, imaging_source=f.imaging_source)
    elif step == "review":
        r.send_dossier(**who, expected_version=f.expected_version)


@post("/dossiers/{dossier_id:str}/edit/{step:str}", guards=[CLINICIAN], sync_to_thread=True, name="compose-save")
def save(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], step: FromPath[str],
    data: Annotated[DraftForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    autosave: FromQuery[bool] = False,
) -> Template | Redirect:
    """Saves the step and shows the next one (the review step sends the dossier)."""
    ws = _draft(services, user, dossier_id)
    if ws is None:
        return Redirect(f"/dossiers/{dossier_id}", status_code=303)
    step = step if step in STEPS else "review"
    try:
        # an autosave is not a submission (it runs as the user types, and the form is sent later)
        with refusals_traced(services, user, dossier_id, f"edit:{step}"):
            _save(services, user, dossier_id, step, data, ws, "" if autosave else data.form_token)
    except InvalidFieldError as e:
        if autosave:
            raise
        raise FormRejected(e, "compose/step.html", _context(step, asdict(data), ws, services)) from None
    except ConflictError as e:
        fresh = open_workspace(services, user, dossier_id)
        form = asdict(data) | {"expected_version": fresh.dossier.version}
        raise StaleView(
            "Ce brouillon a été modifié ailleurs : voici son nouvel état. Votre saisie est conservée ; vérifiez-la "
            "puis enregistrez à nouveau.", "compose/step.html", "wizard", _context(step, form, fresh, services),
        ) from e
    if step == "review":
        return Redirect(f"/dossiers/{dossier_id}", status_code=303)
    if autosave and is_htmx(request):
        fresh = open_workspace(services, user, dossier_id)
        return HTMXBlockTemplate(
            template_name="compose/step.html", block_name="autosave",
            context={"saved_at": paris(datetime.now(UTC), "%H:%M:%S"), "version": fresh.dossier.version, "oob": True},
        )
    return Redirect(f"/dossiers/{dossier_id}/edit/{ORDER[ORDER.index(step) + 1]}", status_code=303)


# ---------------------------------------------------------------- documents (streamed upload)


@post("/dossiers/{dossier_id:str}/documents", guards=[CLINICIAN], request_max_body_size=MAX_DOCUMENT_BYTES + 1_000_000,
      name="document-upload")
async def upload(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
) -> Template:
    """multipart/form-data streamed to disk (SHA-256 as it arrives), type told by the first bytes."""
    boundary = form_boundary(request)
    if boundary is None:
        raise InvalidFieldError("file", "formulaire de fichier attendu")
    try:
        form = await receive(request, boundary, "file", lambda filename: services.blobs.writer(), max_segments=10)
    except DocumentRejectedError as e:
        raise InvalidFieldError("file", str(e)) from None
    except BrokenUpload:
        raise InvalidFieldError("file", "envoi de fichier incomplet ou invalide") from None
    stored = [(filename.replace("\\", "/").rsplit("/", 1)[-1] or "document", blob) for filename, blob in form.files]
    if not stored:
        raise InvalidFieldError("file", "choisissez un fichier PDF, PNG ou JPEG")
    description = form.fields.get("description", b"").decode("utf-8", "replace")
    item = ItemForm.of_fields(form.fields)

    def attach() -> Workspace:
        with refusals_traced(services, user, dossier_id, "attach_document"):
            # each file once per form sent; the first on the version shown, the next on the version the previous made
            for (name, blob), (i, version) in zip(stored, item.versions(len(stored)), strict=True):
                services.relais.attach_document(
                    dossier_id=dossier_id, actor_id=item.acting(user, i), filename=name[:255], media_type=blob.media_type,
                    size=blob.size, sha256=blob.sha256, description=description, expected_version=version,
                )
        return open_workspace(services, user, dossier_id)

    ws = await anyio.to_thread.run_sync(attach)
    return HTMXBlockTemplate(template_name="compose/step.html", block_name="documents",
                             context=_context("documents", _form_of(ws), ws, services))


@post("/dossiers/{dossier_id:str}/documents/{document_id:str}/remove", guards=[CLINICIAN], sync_to_thread=True)
def remove_document(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    document_id: FromPath[str], data: Annotated[ItemForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    with refusals_traced(services, user, dossier_id, "remove_document"):
        services.relais.remove_document(dossier_id=dossier_id, actor_id=data.acting(user), document_id=document_id,
                                        expected_version=data.expected_version)
    ws = open_workspace(services, user, dossier_id)
    return HTMXBlockTemplate(template_name="compose/step.html", block_name="documents",
                             context=_context("documents", _form_of(ws), ws, services))


# ---------------------------------------------------------------- recipients


@get("/directory/search", guards=[CLINICIAN], sync_to_thread=True, name="directory-search")
def directory_search(services: NamedDependency[Services], q: FromQuery[str] = "", dossier: FromQuery[str] = "") -> Template:
    results = services.names.search(q) if len(q.strip()) >= 2 else []
    return HTMXBlockTemplate(template_name="compose/step.html", block_name="search_results", context={
        "results": results, "q": q, "dossier_id": dossier, "channels": CHANNELS, "form_token": new_token, "target_key": target_key,
    })


def target_key(establishment_id: str, service_id: str = "", practitioner_id: str = "") -> str:
    """Names one « Ajouter » form of the directory's results (its token input's id ends with it)."""
    return "-".join(re.sub(r"[^0-9A-Za-z]", "", v)[:64] or "0" for v in (establishment_id, service_id, practitioner_id))


@post("/dossiers/{dossier_id:str}/recipients", guards=[CLINICIAN], sync_to_thread=True)
def add_recipient(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    data: Annotated[DraftForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    with refusals_traced(services, user, dossier_id, "address_recipient"):
        services.relais.address_recipient(
            dossier_id=dossier_id, actor_id=ItemForm(data.form_token, data.expected_version).acting(user),
            establishment_id=data.establishment_id,
            service_id=data.service_id or None, practitioner_id=data.practitioner_id or None, channel=data.channel or None,
            expected_version=data.expected_version,
        )
    ws = open_workspace(services, user, dossier_id)
    renew = target_key(data.establishment_id, data.service_id, data.practitioner_id)  # the form sent gets a new token
    return HTMXBlockTemplate(template_name="compose/step.html", block_name="recipients",
                             context=_context("recipients", _form_of(ws), ws, services, renew_target=renew))


@post("/dossiers/{dossier_id:str}/recipients/{send_id:str}/remove", guards=[CLINICIAN], sync_to_thread=True)
def remove_recipient(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str], send_id: FromPath[str],
    data: Annotated[ItemForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    with refusals_traced(services, user, dossier_id, "remove_recipient"):
        services.relais.remove_recipient(dossier_id=dossier_id, actor_id=data.acting(user), send_id=send_id,
                                         expected_version=data.expected_version)
    ws = open_workspace(services, user, dossier_id)
    return HTMXBlockTemplate(template_name="compose/step.html", block_name="recipients",
                             context=_context("recipients", _form_of(ws), ws, services))


HANDLERS = [
    new, new_step, create, edit_step, version_seen, save, upload, remove_document, directory_search, add_recipient, remove_recipient,
]
