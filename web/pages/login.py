"""Login and logout pages, and the ping that keeps a session alive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template

from web.client_address import client_address
from web.guards import DEACTIVATED, PUBLIC, current_user
from web.redirects import safe_next
from web.services import Services
from web.session import default_context, end_session, start_session


@dataclass
class LoginForm:
    login: str = ""
    password: str = ""
    next: str = ""


EXPIRED = "Votre session a expiré : reconnectez-vous, votre saisie a été conservée."


@get("/login", opt={PUBLIC: True}, name="login")
async def login_page(
    request: Request[Any, Any, Any],
    next: FromQuery[str | None] = None,
    expiree: FromQuery[str | None] = None,
    sortie: FromQuery[str | None] = None,
    motif: FromQuery[str | None] = None,
) -> Template | Redirect:
    if current_user(request):
        return Redirect(safe_next(next) or "/", status_code=303)
    notice = ""
    if motif == DEACTIVATED:
        notice = "Votre compte a été désactivé : vous avez été déconnecté. Contactez l'administrateur de votre établissement."
    elif expiree:
        notice = EXPIRED
    elif sortie:
        notice = "Vous êtes déconnecté."
    return Template("login/login.html", context={
        "next": safe_next(next), "notice": notice, "login": "", "expired": bool(expiree), "signed_out": bool(sortie),
    })


@post("/login", opt={PUBLIC: True}, sync_to_thread=True)
def login(
    request: Request[Any, Any, Any],
    services: NamedDependency[Services],
    data: Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template | Redirect:
    client = client_address(request, services.settings.trusted_proxies)
    result = services.authenticator.authenticate(data.login, data.password, client)
    if not result.ok or result.identity is None:
        context = {
            "error": result.message, "warning": result.warning, "login": data.login.strip()[:11],
            "next": safe_next(data.next),
        }
        if result.retry_after is not None:
            return Template(
                "login/login.html", status_code=429, context=context, headers={"Retry-After": str(result.retry_after)},
            )
        return Template("login/login.html", status_code=401, context=context)
    establishment_id, role = default_context(result.identity.memberships)
    establishment = services.relais.establishment(establishment_id=establishment_id)
    start_session(request, result.identity, establishment_id, establishment.name, role)
    return Redirect(safe_next(data.next) or "/", status_code=303)


@post("/logout", opt={PUBLIC: True}, status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    end_session(request)
    return Redirect("/login?sortie=1", status_code=303)


@get("/session/ping", name="session-ping", status_code=204)
async def ping() -> None:
    """Keeps the session alive (« Rester connecté »): any request renews it; a gone one answers 401."""


HANDLERS = [login_page, login, logout, ping]
