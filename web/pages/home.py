"""Home page after login, and the switch of establishment and role acted for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from application.errors import ForbiddenError
from web.contexts import context_choices
from web.guards import ANY_CONTEXT, ROLE_WITHDRAWN, context_withdrawn
from web.labels import role_label
from web.services import Services
from web.session import SessionUser, switch_context

NOT_HELD = "Vous ne détenez pas ce rôle dans cet établissement."


@dataclass
class ContextForm:
    context: str = ""


@get("/", name="home", sync_to_thread=True, opt={ANY_CONTEXT: True})
def home(request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser]) -> Template | Redirect:
    """Clinicians land on their inbox, auditors on the audit search, analysts on the statistics;
    administrators on this page, and anyone whose role was withdrawn meanwhile (to choose another context)."""
    notice = ""
    if context_withdrawn(request, user):
        notice = ROLE_WITHDRAWN.format(role=role_label(user.role), establishment=user.establishment_name)
    elif user.role == "clinician":
        from projections.inbox_queries import Filters
        from web.pages.inbox import inbox_response

        return inbox_response(request, services, user, "received", Filters(), None, full_page=True)
    elif user.role == "auditor":
        return Redirect("/audit", status_code=303)
    elif user.role == "analyst":
        return Redirect("/stats", status_code=303)
    choices = context_choices(services.relais, user.practitioner_id)
    current = f"{user.establishment_id}|{user.role}"
    return Template("home/index.html", context={"user": user, "choices": choices, "current": current, "notice": notice})


@post("/context", sync_to_thread=True, status_code=303, opt={ANY_CONTEXT: True})
def switch(
    request: Request[Any, Any, Any],
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
