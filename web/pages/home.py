"""Home page after login, and the switch of establishment and role acted for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from application import Relais
from application.errors import ForbiddenError, NotFoundError
from web.labels import role_label
from web.services import Services
from web.session import SessionUser, switch_context

NOT_HELD = "Vous ne détenez pas ce rôle dans cet établissement."


@dataclass(frozen=True)
class ContextChoice:
    establishment_id: str
    establishment_name: str
    role: str

    @property
    def value(self) -> str:
        return f"{self.establishment_id}|{self.role}"

    @property
    def label(self) -> str:
        return f"{self.establishment_name} — {role_label(self.role)}"


def context_choices(relais: Relais, practitioner_id: str) -> list[ContextChoice]:
    """Every (establishment, role) the practitioner holds now, read from the directory."""
    practitioner = relais.practitioner(practitioner_id=practitioner_id)
    if not practitioner.active:
        return []
    out = []
    for establishment_id, membership in practitioner.memberships.items():
        try:
            name = relais.establishment(establishment_id=establishment_id).name
        except NotFoundError:
            continue
        out.extend(ContextChoice(establishment_id, name, role) for role in sorted(membership.get("roles", [])))
    return out


@dataclass
class ContextForm:
    context: str = ""


@get("/", name="home", sync_to_thread=True)
def home(request: Request, services: NamedDependency[Services], user: NamedDependency[SessionUser]) -> Template | Redirect:
    """Clinicians land on their inbox, auditors on the audit search; other roles on this page."""
    if user.role == "clinician":
        from projections.inbox_queries import Filters
        from web.pages.inbox import inbox_response

        return inbox_response(request, services, user, "received", Filters(), None, full_page=True)
    if user.role == "auditor":
        return Redirect("/audit", status_code=303)
    choices = context_choices(services.relais, user.practitioner_id)
    current = f"{user.establishment_id}|{user.role}"
    return Template("home/index.html", context={"user": user, "choices": choices, "current": current})


@post("/context", sync_to_thread=True, status_code=303)
def switch(
    request: Request,
    services: NamedDependency[Services],
    user: NamedDependency[SessionUser],
    data: Annotated[ContextForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Redirect:
    """Acts for another establishment or role, only if the practitioner holds it now."""
    establishment_id, _, role = data.context.partition("|")
    held = {c.value: c for c in context_choices(services.relais, user.practitioner_id)}
    choice = held.get(f"{establishment_id}|{role}")
    if choice is None:
        raise ForbiddenError(NOT_HELD)
    switch_context(request, choice.establishment_id, choice.establishment_name, choice.role)
    return Redirect("/", status_code=303)


HANDLERS = [home, switch]
