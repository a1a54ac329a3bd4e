"""Creating a dossier in steps, shaped by its workflow. Urgent work (acute stroke, emergency opinion) takes three
screens: the patient, the workflow's form with consent and imaging, review and send with the recipient preset.
The other workflows: workflow → patient → form and consent → documents → imaging → recipients → review. The
draft is recorded when the form is sent, and saved at every step after."""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, fields
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
from adapters.communes import shipped
from adapters.dicom.recording import attach_already_received
from application.access import Workspace
from application.actors import Acting
from application.errors import ConflictError, NotFoundError
from domain.errors import DirectoryError, InvalidFieldError, RelaisError
from domain.forms import FormDefinition, FormInvalid, definition, form_for, has_form, validate
from domain.values import PARIS, URGENCY_LABELS, WORKFLOW_LABELS, Json, Role
from web.errors import FormRejected, StaleView, is_htmx
from web.forms import ItemForm, form_version, new_token
from web.guards import requires_role
from web.pages.compose_rules import (
    FAST,
    FULL_STEPS,
    Birthplace,
    birthplace,
    birthplace_label,
    default_urgency,
    imaging_choices,
    imaging_error,
    imaging_shown,
    next_step,
    patient_errors,
    question_text,
    send_blocked,
    steps_for,
)
from web.pages.dossier import open_workspace, refusals_traced
from web.present import CHANNELS, IMAGING_SOURCES, paris
from web.services import Services
from web.session import SessionUser
from web.uploads import BrokenUpload, form_boundary, receive

log = logging.getLogger("relais.web.compose")
STEPS = FULL_STEPS
ORDER = list(STEPS)
CLINICIAN = requires_role(Role.CLINICIAN)
FIELD_LABELS = {
    "birth_name": "nom de naissance", "first_names": "prénoms", "birth_date": "date de naissance", "sex": "sexe",
    "birth_place_code": "lieu de naissance", "birth_place": "lieu de naissance", "ins": "matricule INS",
    "used_name": "nom d'usage", "question": "question", "workflow": "parcours", "urgency": "urgence",
    "consent": "consentement", "consent_note": "précisions", "imaging_source": "imagerie",
    "accession_number": "n° d'examen", "patient_id": "IPP",
}
CREATABLE = {k: v for k, v in WORKFLOW_LABELS.items() if k != "legacy"}
PATIENT_FIELDS = ("birth_name", "first_names", "used_name", "birth_date", "sex", "birth_place", "birth_place_code", "ins")


@dataclass
class DraftForm:
    expected_version: int | None = None
    form_token: str = ""
    workflow: str = ""
    urgency: str = ""
    birth_name: str = ""
    first_names: str = ""
    used_name: str = ""
    birth_date: str = ""
    sex: str = ""
    birth_place: str = ""  # what was typed: a commune or country name, « Toulouse (31) », or a code
    birth_place_code: str = ""  # the code chosen in the list, or resolved
    ins: str = ""
    question: str = ""
    consent: str = ""
    consent_note: str = ""
    imaging_source: str = ""
    accession_number: str = ""
    patient_id: str = ""  # or the patient's ID at the gateway: the exam awaited by either
    form_version: str = ""  # the workflow form's version the page showed (its answers are the other fields)
    establishment_id: str = ""
    service_id: str = ""
    practitioner_id: str = ""
    channel: str = ""


OWN_FIELDS = {f.name for f in fields(DraftForm)} | {"_csrf_token", "form_id"}


def draft_of(data: dict[str, Any]) -> DraftForm:
    """The wizard's own fields of a form sent (a field sent twice: its first value)."""
    values: dict[str, Any] = {}
    for f in fields(DraftForm):
        if f.name in data:
            v = data[f.name]
            v = v[0] if isinstance(v, list) and v else v
            values[f.name] = form_version(str(v)) if f.name == "expected_version" else str(v or "")
    return DraftForm(**values)


def form_raw(data: dict[str, Any]) -> dict[str, Any]:
    """The workflow form's answers as sent: every field but the wizard's own (its « question » is the form's)."""
    return {k: v for k, v in data.items() if k not in OWN_FIELDS or k == "question"}


def _patient(f: DraftForm) -> Json:
    return {"birth_name": f.birth_name, "first_names": f.first_names, "birth_date": f.birth_date, "sex": f.sex,
            "birth_place_code": f.birth_place_code, "ins": f.ins or None, "used_name": f.used_name or None}


def _definition(workflow: str, recorded: Json | None) -> FormDefinition | None:
    """The form a draft shows: the version it was first answered with, else its workflow's current one."""
    if recorded:
        return definition(recorded["id"], recorded["version"])
    return form_for(workflow) if workflow and has_form(workflow) else None


def _context(
    step: str, form: dict[str, Any], ws: Workspace | None = None, services: Services | None = None, **extra: Any,
) -> dict[str, Any]:
    d = ws.dossier if ws else None
    workflow = form.get("workflow") or (d.workflow if d else "")
    recorded = d.form if d else None
    errors = extra.pop("errors", None) or {}
    return {
        "step": step, "steps": steps_for(workflow) if workflow else STEPS, "fast": workflow in FAST,
        "step_title": (steps_for(workflow) if workflow else STEPS).get(step) or STEPS.get(step, ""),
        "form": form, "ws": ws, "d": d, "workflows": CREATABLE, "urgencies": URGENCY_LABELS, "sources": IMAGING_SOURCES,
        "source_choices": imaging_choices(workflow), "source_shown": imaging_shown(workflow, form.get("imaging_source", "")),
        "channels": CHANNELS, "names": services.names if services else None, "field_labels": FIELD_LABELS,
        "max_mb": MAX_DOCUMENT_BYTES // (1024 * 1024), "form_token": new_token, "target_key": target_key,
        "definition": _definition(workflow, recorded), "answers": extra.pop("answers", None) or (recorded or {}).get("answers", {}),
        "errors": errors, "first_error": next(iter(errors), ""), "candidates": extra.pop("candidates", []),
        "default_urgency": default_urgency(workflow),
        "send_blocked": send_blocked(d.workflow, d.imaging_source, bool(d.imaging)) if d else "", **extra,
    }


def _form_of(ws: Workspace) -> dict[str, Any]:
    d = ws.dossier
    p = d.patient
    return asdict(DraftForm(
        expected_version=d.version, workflow=d.workflow, urgency=d.urgency, birth_name=p["birth_name"],
        first_names=p["first_names"], used_name=p.get("used_name") or "", birth_date=p["birth_date"], sex=p["sex"],
        birth_place=birthplace_label(shipped(), p["birth_place_code"]), birth_place_code=p["birth_place_code"],
        ins=p.get("ins") or "", question=d.question, consent=(d.consent or {}).get("status", ""),
        consent_note=(d.consent or {}).get("note", ""), imaging_source=d.imaging_source,
    ))


def _rejected(step: str, form: dict[str, Any], errors: dict[str, str], ws: Workspace | None = None,
              services: Services | None = None, **extra: Any) -> FormRejected:
    """The step shown again with an error at each field refused, what was typed kept."""
    first = next(iter(errors))
    return FormRejected(InvalidFieldError(first, errors[first]), "compose/step.html",
                        _context(step, form, ws, services, errors=errors, **extra))


def _check_patient(data: DraftForm, form: dict[str, Any], ws: Workspace | None = None, services: Services | None = None) -> None:
    """Resolves the birthplace into `data` and checks every field of the identity; raises with all errors."""
    errors: dict[str, str] = {}
    candidates: list[tuple[str, str]] = []
    try:
        data.birth_place_code = birthplace(shipped(), data.birth_place, data.birth_place_code)
    except Birthplace as e:
        errors["birth_place"], candidates = e.message, e.candidates
        data.birth_place_code = ""
    for k, v in patient_errors(_patient(data), datetime.now(PARIS).date()).items():
        errors.setdefault("birth_place" if k == "birth_place_code" else k, v)
    form.update(birth_place_code=data.birth_place_code)
    if errors:
        order = [k for k in PATIENT_FIELDS if k in errors] + [k for k in errors if k not in PATIENT_FIELDS]
        raise _rejected("patient", form, {k: errors[k] for k in order}, ws, services, candidates=candidates)


def _check_question(data: DraftForm, raw: dict[str, Any], form: dict[str, Any], ws: Workspace | None = None,
                    services: Services | None = None) -> dict[str, Any] | None:
    """The form's answers validated (None when the page sent no form: a draft made without one), the consent
    and, on the short path, the imaging; raises with every error at its field, what was typed kept."""
    errors: dict[str, str] = {}
    answers = None
    workflow = data.workflow or (ws.dossier.workflow if ws else "")
    recorded = ws.dossier.form if ws else None
    definition_ = _definition(workflow, recorded) if data.form_version else None
    if definition_ is not None:
        try:
            answers = validate(definition_, raw)
        except FormInvalid as e:
            errors |= e.errors
    elif not data.question.strip():
        errors["question"] = "posez votre question"
    if data.consent not in ("given", "refused"):
        errors["consent"] = "dites si le patient a consenti à la télé-expertise"
    if workflow in FAST and data.form_version and (problem := imaging_error(workflow, data.imaging_source)):
        errors["imaging_source"] = problem
    if data.accession_number.strip() and len(data.accession_number.strip()) > 16:
        errors["accession_number"] = "numéro d'examen (accession number) de 1 à 16 caractères"
    if len(data.patient_id.strip()) > 64 or "\\" in data.patient_id:
        errors["patient_id"] = "identifiant patient (IPP) de 64 caractères au plus, sans « \\ »"
    if errors:
        raise _rejected("question", form, errors, ws, services, answers=raw)
    return answers


# ---------------------------------------------------------------- before the draft exists


@get("/dossiers/new", guards=[CLINICIAN], name="compose-new")
async def new(workflow: FromQuery[str] = "") -> Template:
    """A blank request; « Nouvelle demande AVC » (?workflow=stroke_opinion) opens straight on the patient."""
    form = asdict(DraftForm(workflow=workflow, urgency=default_urgency(workflow) if workflow in CREATABLE else ""))
    return Template("compose/step.html", context=_context("patient" if workflow in FAST else "workflow", form))


def _new_draft(data: dict[str, Any]) -> DraftForm:
    """The draft a page before creation carries: a workflow that can be created (else back to its choice),
    the workflow's urgency unless one was chosen."""
    draft = draft_of(data)
    if draft.workflow not in CREATABLE:
        raise FormRejected(InvalidFieldError("workflow", "choisissez un parcours"), "compose/step.html",
                           _context("workflow", asdict(draft)))
    draft.urgency = draft.urgency or default_urgency(draft.workflow)
    return draft


@post("/dossiers/new/{step:str}", guards=[CLINICIAN], sync_to_thread=True, name="compose-new-step")
def new_step(
    services: NamedDependency[Services], step: FromPath[str],
    data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    """The steps before the form are carried in the page; each is checked before the next is shown."""
    draft = _new_draft(data)
    form = asdict(draft)
    if step == "question":
        _check_patient(draft, form)
        form = asdict(draft)
    elif step != "patient":
        step = "workflow"
    return Template("compose/step.html", context=_context(step, form))


@post("/dossiers/new", guards=[CLINICIAN], sync_to_thread=True, status_code=303, name="compose-create")
def create(
    services: NamedDependency[Services], user: NamedDependency[SessionUser],
    data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Redirect:
    """Records the draft with its form, consent and imaging, the awaited exam and the preset recipient."""
    draft = _new_draft(data)
    form = asdict(draft)
    _check_patient(draft, form)
    form = asdict(draft)
    raw = form_raw(data)
    answers = _check_question(draft, raw, form)
    try:
        did = _create(services, user, draft, raw, answers)
    except InvalidFieldError as e:
        raise FormRejected(e, "compose/step.html", _context("question", form, answers=raw)) from None
    return Redirect(f"/dossiers/{did}/edit/{'review' if draft.workflow in FAST else 'documents'}", status_code=303)


def _create(services: Services, user: SessionUser, data: DraftForm, raw: dict[str, Any], answers: dict[str, Any] | None) -> str:
    """The draft, then its further commands, each once per form sent (a token of its own)."""
    r, token = services.relais, data.form_token
    definition_ = form_for(data.workflow) if answers is not None else None
    question = question_text(definition_, answers) if definition_ is not None and answers is not None else data.question
    source = data.imaging_source or ("none" if data.workflow not in FAST else "dicom_store")
    did = r.create_dossier(
        actor_id=user.acting(token), workflow=data.workflow,
        urgency=data.urgency, patient_birth_name=data.birth_name, patient_first_names=data.first_names,
        patient_birth_date=data.birth_date, patient_sex=data.sex, patient_birth_place_code=data.birth_place_code,
        patient_ins=data.ins or None, patient_used_name=data.used_name or None, question=question,
        consent=data.consent or None, consent_note=data.consent_note, imaging_source=source,
    )

    if answers is not None:
        r.answer_form(dossier_id=did, actor_id=user.acting(part_token(token, "form")), raw=raw)
    if (data.accession_number.strip() or data.patient_id.strip()) and source == "dicom_store":
        r.await_imaging(dossier_id=did, actor_id=user.acting(part_token(token, "await")), accession_number=data.accession_number.strip(),
                        patient_id=data.patient_id.strip())
        _attach_already_received(services, user, did, data.accession_number, data.patient_id)
    preset = r.default_recipient(user.establishment_id, data.workflow)
    if preset is not None:  # the user may change it on the review
        try:
            r.address_recipient(dossier_id=did, actor_id=user.acting(part_token(token, "recipient")),
                                establishment_id=preset["establishment_id"], service_id=preset.get("service_id") or None,
                                practitioner_id=preset.get("practitioner_id") or None)
        except (InvalidFieldError, NotFoundError, DirectoryError) as e:  # a setting gone stale: the review asks for one
            log.warning("default recipient of %s for %s not addressed: %s", user.establishment_id, data.workflow, e)
    return did


def part_token(token: str, part: str) -> str:
    """The token of one command of a form that runs several (« <token>-consent »): each runs once."""
    return f"{token}-{part}" if token else ""


def _attach_already_received(services: Services, user: SessionUser, dossier_id: str, accession: str, patient_id: str) -> None:
    """The exam just awaited may be here already (the stroke CT pushed by the gateway before the request was
    written): it attaches itself now, as the platform, without holding the next step (a system attachment is
    not a change the next form conflicts with)."""
    try:
        attach_already_received(services.relais, services.imaging.studies, dossier_id=dossier_id,
                                establishment_id=user.establishment_id, accession_number=accession, patient_id=patient_id)
    except RelaisError as e:  # the await is recorded: the exam still attaches itself on its next instance
        log.warning("exam already received not attached to %s: %s", dossier_id, e)


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
    expected_version: FromQuery[int], of: FromQuery[str] = "step",
) -> Template:
    """The step form's version once the user's own changes from the same page are counted (the imaging
    step asks after a study was attached or imported there, the review after a recipient was changed):
    their own change never makes the next step look stale, anyone else's still does."""
    version = services.relais.version_seen(dossier_id=dossier_id, actor_id=user.acting(), seen=expected_version)
    return HTMXBlockTemplate(template_name="compose/step.html", block_name="send_version" if of == "send" else "step_version",
                             context={"d": {"id": dossier_id}, "form": {"expected_version": version}})


class DraftActor(TypedDict):
    """Which draft, and who edits it: what every command of a step is given."""

    dossier_id: str
    actor_id: Acting


def _save(
    services: Services, user: SessionUser, dossier_id: str, step: str, f: DraftForm, ws: Workspace, token: str,
    raw: dict[str, Any], answers: dict[str, Any] | None,
) -> None:
    """The step's commands, on the version the form showed (required), once per form sent (`token`); a step
    running several commands runs each on the version the previous one made."""
    r = services.relais
    who = DraftActor(dossier_id=dossier_id, actor_id=user.acting(token, version_required=True))
    d = ws.dossier
    version = f.expected_version

    def then(recorded: int | None, part: str) -> DraftActor:
        nonlocal version
        version = version + 1 if recorded and version is not None else version
        return DraftActor(dossier_id=dossier_id, actor_id=user.acting(f"{token}-{part}" if token else "", version_required=True))

    if step == "workflow":
        r.edit_draft(**who, expected_version=version, workflow=f.workflow, urgency=f.urgency or default_urgency(f.workflow))
    elif step == "patient":
        changes: dict[str, Any] = {"patient": _patient(f)}
        if f.urgency and f.urgency != d.urgency:
            changes["urgency"] = f.urgency
        r.edit_draft(**who, expected_version=version, **changes)
    elif step == "question":
        definition_ = _definition(d.workflow, d.form) if answers is not None else None
        question = question_text(definition_, answers) if definition_ is not None and answers is not None else f.question
        recorded = None
        if answers is not None and answers != (d.form or {}).get("answers"):
            recorded = r.answer_form(**who, raw=raw, expected_version=version)
            who = then(recorded, "question")
        if question.strip() != d.question:
            recorded = r.edit_draft(**who, expected_version=version, question=question)
            who = then(recorded, "consent")
        if f.consent and (f.consent, f.consent_note) != ((d.consent or {}).get("status"), (d.consent or {}).get("note", "")):
            recorded = r.record_consent(**who, expected_version=version, status=f.consent, note=f.consent_note)
            who = then(recorded, "imaging")
        if d.workflow in FAST and f.imaging_source and f.imaging_source != d.imaging_source:
            recorded = r.edit_draft(**who, expected_version=version, imaging_source=f.imaging_source)
            who = then(recorded, "await")
        if d.workflow in FAST and (f.accession_number.strip() or f.patient_id.strip()):
            r.await_imaging(**who, expected_version=version, accession_number=f.accession_number.strip(),
                            patient_id=f.patient_id.strip())
            _attach_already_received(services, user, dossier_id, f.accession_number, f.patient_id)
    elif step == "imaging":
        if problem := imaging_error(d.workflow, f.imaging_source):
            raise InvalidFieldError("imaging_source", problem)
        if f.imaging_source and f.imaging_source != d.imaging_source:
            r.edit_draft(**who, expected_version=version, imaging_source=f.imaging_source)
    elif step == "review":
        if problem := send_blocked(d.workflow, d.imaging_source, bool(d.imaging)):
            raise InvalidFieldError("imaging_source", problem)
        r.send_dossier(**who, expected_version=version)


@post("/dossiers/{dossier_id:str}/edit/{step:str}", guards=[CLINICIAN], sync_to_thread=True, name="compose-save")
def save(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], step: FromPath[str],
    data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)],
    autosave: FromQuery[bool] = False,
) -> Template | Redirect:
    """Saves the step and shows the next one (the review step sends the dossier)."""
    ws = _draft(services, user, dossier_id)
    if ws is None:
        return Redirect(f"/dossiers/{dossier_id}", status_code=303)
    step = step if step in STEPS else "review"
    f = draft_of(data)
    form = asdict(f)
    raw = form_raw(data)
    answers = None
    try:
        # an autosave is not a submission (it runs as the user types, and the form is sent later)
        with refusals_traced(services, user, dossier_id, f"edit:{step}"):
            if step == "patient":
                _check_patient(f, form, ws, services)
            elif step == "question" and not autosave:
                answers = _check_question(f, raw, form | {"workflow": ws.dossier.workflow}, ws, services)
            _save(services, user, dossier_id, step, f, ws, "" if autosave else f.form_token, raw, answers)
    except FormRejected:
        if autosave:
            raise InvalidFieldError("question", "brouillon non enregistré") from None
        raise
    except FormInvalid as e:
        raise _rejected(step, form, e.errors, ws, services, answers=raw) from None
    except InvalidFieldError as e:
        if autosave:
            raise
        raise _rejected(step, form, {e.field: e.message}, ws, services, answers=raw) from None
    except ConflictError as e:
        fresh = open_workspace(services, user, dossier_id)
        form = form | {"expected_version": fresh.dossier.version}
        raise StaleView(
            "Ce brouillon a été modifié ailleurs : voici son nouvel état. Votre saisie est conservée ; vérifiez-la "
            "puis enregistrez à nouveau.", "compose/step.html", "wizard", _context(step, form, fresh, services, answers=raw),
        ) from e
    if step == "review":
        return Redirect(f"/dossiers/{dossier_id}", status_code=303)
    if autosave and is_htmx(request):
        fresh = open_workspace(services, user, dossier_id)
        return HTMXBlockTemplate(
            template_name="compose/step.html", block_name="autosave",
            context={"saved_at": paris(datetime.now(UTC), "%H:%M:%S"), "version": fresh.dossier.version, "oob": True},
        )
    return Redirect(f"/dossiers/{dossier_id}/edit/{next_step(ws.dossier.workflow, step)}", status_code=303)


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


def _recipients_changed(request: Request[Any, Any, Any], ws: Workspace, services: Services, **extra: Any) -> Template:
    """The recipients list again; on the review (urgent work), the send button too, and the send form's
    version asked again (recipients-changed): the user's own change never makes « Envoyer » look stale."""
    on_review = request.headers.get("hx-current-url", "").split("?")[0].endswith("/edit/review")
    t = HTMXBlockTemplate(template_name="compose/step.html", block_names=["recipients", "send_button"] if on_review else ["recipients"],
                          context=_context("recipients", _form_of(ws), ws, services, oob_send=on_review, **extra))
    t.headers["HX-Trigger"] = "recipients-changed"
    return t


@post("/dossiers/{dossier_id:str}/recipients", guards=[CLINICIAN], sync_to_thread=True)
def add_recipient(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], data: Annotated[DraftForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
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
    return _recipients_changed(request, ws, services, renew_target=renew)


@post("/dossiers/{dossier_id:str}/recipients/{send_id:str}/remove", guards=[CLINICIAN], sync_to_thread=True)
def remove_recipient(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], send_id: FromPath[str], data: Annotated[ItemForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    with refusals_traced(services, user, dossier_id, "remove_recipient"):
        services.relais.remove_recipient(dossier_id=dossier_id, actor_id=data.acting(user), send_id=send_id,
                                         expected_version=data.expected_version)
    return _recipients_changed(request, open_workspace(services, user, dossier_id), services)


HANDLERS = [
    new, new_step, create, edit_step, version_seen, save, upload, remove_document, directory_search, add_recipient, remove_recipient,
]
