"""The conversation on the dossier page: a send's thread (message with files, documents, studies), the
answer to a complement request with documents or images, and documents added after sending."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from adapters.blobs import MAX_DOCUMENT_BYTES, DocumentRejectedError, StoredBlob
from application.conversation import MESSAGE_MAX
from application.errors import ConflictError, ForbiddenError
from domain.errors import InvalidFieldError
from domain.values import Role
from web.errors import StaleView, is_htmx
from web.forms import ItemForm
from web.guards import requires_role
from web.pages.dossier import open_workspace, page_context, refusals_traced
from web.services import Services
from web.session import SessionUser
from web.uploads import BrokenUpload, form_boundary, receive

CLINICIAN = requires_role(Role.CLINICIAN)
MAX_FILES = 5
TEXT_BYTES = 4 * MESSAGE_MAX + 1000  # a text field is kept up to this: a message of 10,000 characters in any script
MAX_SEGMENTS = 300  # files, a few fields, and a checkbox per document or study of the dossier
BODY_LIMIT = MAX_DOCUMENT_BYTES + 1_000_000  # the files of one form together, as for the draft's upload
SEND = "/dossiers/{dossier_id:str}/sends/{send_id:str}"


class NoFile:
    """The empty part a browser sends for a file input left empty: nothing is stored."""

    def write(self, data: bytes) -> None:
        if data:
            raise DocumentRejectedError("fichier sans nom")

    def finish(self) -> None:
        return None

    def abort(self) -> None:
        return None


@dataclass
class Posted:
    """A multipart form of the thread: its files (stored), its text fields, its token and version."""

    files: list[tuple[str, StoredBlob]]
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def item(self) -> ItemForm:
        return ItemForm(self.fields.get("form_token", ""), _version(self.fields.get("expected_version", "")))

    def chosen(self, prefix: str) -> list[str]:
        """Checkboxes named `prefix<value>` that were ticked (one name each: the parser keeps one value per name)."""
        return [k[len(prefix):][:128] for k in self.fields if k.startswith(prefix) and len(k) > len(prefix)]


def _version(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() else None


async def read_form(request: Request[Any, Any, Any], services: Services) -> Posted:
    """The body streamed: each file to the blob store (SHA-256, type told by the first bytes), the rest kept."""
    boundary = form_boundary(request)
    if boundary is None:
        raise InvalidFieldError("file", "formulaire de fichier attendu")

    def sink(filename: str) -> Any:
        return services.blobs.writer() if filename else NoFile()

    try:
        form = await receive(request, boundary, "file", sink, max_segments=MAX_SEGMENTS, field_limit=TEXT_BYTES)
    except DocumentRejectedError as e:
        raise InvalidFieldError("file", str(e)) from None
    except BrokenUpload:
        raise InvalidFieldError("file", "envoi de fichier incomplet ou invalide") from None
    files = [(name.replace("\\", "/").rsplit("/", 1)[-1] or "document", blob) for name, blob in form.files if blob]
    if len(files) > MAX_FILES:
        raise InvalidFieldError("file", f"{MAX_FILES} fichiers au plus par envoi")
    return Posted(files, {k: v.decode("utf-8", "replace") for k, v in form.fields.items()})


def may_act(services: Services, user: SessionUser, dossier_id: str, what: str) -> None:
    """Before reading a body: who may not read the dossier is refused (and traced), no file of theirs stored."""
    if not services.relais.may_read_now(dossier_id=dossier_id, actor_id=user.practitioner_id,
                                        establishment_id=user.establishment_id, role=user.role):
        with refusals_traced(services, user, dossier_id, what):
            raise ForbiddenError("ce télédossier ne vous concerne pas")


def attach_files(
    services: Services, user: SessionUser, dossier_id: str, posted: Posted, description: str = "",
) -> tuple[list[str], int | None]:
    """Each file as a DocumentAttached (the first on the version shown, each next on the version the previous
    made); (their ids, the version after them). Sent twice, the same form attaches nothing twice."""
    item, ids = posted.item, []
    for (name, blob), (i, version) in zip(posted.files, item.versions(len(posted.files)), strict=True):
        ids.append(services.relais.attach_document(
            dossier_id=dossier_id, actor_id=item.acting(user, i), filename=name[:255], media_type=blob.media_type,
            size=blob.size, sha256=blob.sha256, description=description[:500], expected_version=version,
        ))
    after = None if item.expected_version is None else item.expected_version + len(posted.files)
    return ids, after


async def run_form(
    request: Request[Any, Any, Any], services: Services, user: SessionUser, dossier_id: str, what: str,
    command: Callable[[Posted], None], notice: str, kept: Callable[[Posted], dict[str, str]],
) -> Template:
    """Reads the form, runs the command, answers the page's workspace in its new state (a stale view:
    nothing recorded, the new state with the text kept)."""
    await anyio.to_thread.run_sync(may_act, services, user, dossier_id, what)
    posted = await read_form(request, services)

    def run() -> dict[str, Any]:
        try:
            with refusals_traced(services, user, dossier_id, what):
                command(posted)
        except ConflictError as e:
            ws = open_workspace(services, user, dossier_id)
            raise StaleView(
                "Ce dossier a changé pendant que vous écriviez : voici son nouvel état. Rien n'a été enregistré ; "
                "votre texte est conservé ci-dessous (joignez à nouveau les fichiers).", "dossier/page.html", "workspace",
                page_context(services, user, ws, form=kept(posted), failed_action=what),
            ) from e
        return page_context(services, user, open_workspace(services, user, dossier_id), notice=notice)

    context = await anyio.to_thread.run_sync(run)
    if is_htmx(request):
        return HTMXBlockTemplate(template_name="dossier/page.html", block_name="workspace", context=context)
    return Template("dossier/page.html", context=context)


@post(SEND + "/messages", guards=[CLINICIAN], request_max_body_size=BODY_LIMIT, name="thread-message")
async def post_message(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], send_id: FromPath[str],
) -> Template:
    """A message in the thread of a send: text, files uploaded with it (requester side), documents and studies
    of the dossier ticked; the files are attached first, then the message points to them."""

    def command(p: Posted) -> None:
        ids, version = attach_files(services, user, dossier_id, p)
        services.relais.post_message(
            dossier_id=dossier_id, actor_id=p.item.acting(user, "message"), send_id=send_id[:64],
            message=p.fields.get("text", ""), document_ids=ids + p.chosen("document:"), study_uids=p.chosen("study:"),
            expected_version=version,
        )

    return await run_form(request, services, user, dossier_id, "post_message", command, "Message envoyé.",
                          lambda p: {"send_id": send_id, "text": p.fields.get("text", "")})


@post(SEND + "/complement", guards=[CLINICIAN], request_max_body_size=BODY_LIMIT, name="thread-complement")
async def answer_complement(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], send_id: FromPath[str],
) -> Template:
    """The requester's answer to a complement request: text, documents uploaded with it, studies ticked."""

    def command(p: Posted) -> None:
        ids, version = attach_files(services, user, dossier_id, p, description="Réponse à une demande de complément")
        services.relais.answer_complement(
            dossier_id=dossier_id, actor_id=p.item.acting(user, "answer"), send_id=send_id[:64],
            message=p.fields.get("message", ""), document_ids=ids + p.chosen("document:"), study_uids=p.chosen("study:"),
            expected_version=version,
        )

    return await run_form(request, services, user, dossier_id, "provide_complement", command,
                          "Complément envoyé au destinataire.",
                          lambda p: {"send_id": send_id, "message": p.fields.get("message", "")})


@post("/dossiers/{dossier_id:str}/attachments", guards=[CLINICIAN], request_max_body_size=BODY_LIMIT,
      name="dossier-attachments")
async def add_documents(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str],
) -> Template:
    """Documents added by the requester side to a dossier already sent (a result arriving later)."""

    def command(p: Posted) -> None:
        if not p.files:
            raise InvalidFieldError("file", "choisissez un fichier PDF, PNG ou JPEG")
        attach_files(services, user, dossier_id, p, description=p.fields.get("description", ""))

    return await run_form(request, services, user, dossier_id, "attach_document", command,
                          "Document ajouté : les destinataires le voient dans le télédossier.",
                          lambda p: {"description": p.fields.get("description", "")})


HANDLERS = [post_message, answer_complement, add_documents]
