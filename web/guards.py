"""Route guards: a login is required unless a handler is marked public; roles checked server-side."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from application.errors import ForbiddenError
from projections.directory import Standing
from web.labels import role_label
from web.services import Services
from web.session import SessionUser, end_session, session_data

PUBLIC = "public"  # handler opt key: reachable without login
ANY_CONTEXT = "any_context"  # handler opt key: reachable with a role no longer held (the context chooser)

DEACTIVATED = "desactive"  # LoginRequired.reason: the account was deactivated in the directory
ROLE_WITHDRAWN = (
    "Le rôle « {role} » ne vous est plus attribué dans l'établissement « {establishment} ». "
    "Choisissez un autre contexte de travail depuis la page d'accueil."
)


class LoginRequired(Exception):
    """No valid session: the user is sent to the login page (`reason` says why when it is not an expiry)."""

    def __init__(self, expired: bool = False, reason: str = ""):
        super().__init__("connexion requise")
        self.expired = expired
        self.reason = reason


def current_user(connection: ASGIConnection[Any, Any, Any, Any]) -> SessionUser | None:
    """The signed-in user of this request, or None (an expired session counts as none)."""
    user = SessionUser.from_session(session_data(connection))
    if user is None or user.expired():
        return None
    return user


def requires_login(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Raises LoginRequired unless there is a valid session or the handler is public."""
    if handler.opt.get(PUBLIC):
        return
    user = SessionUser.from_session(session_data(connection))
    if user is None:
        raise LoginRequired()
    if user.expired():
        end_session(connection)
        raise LoginRequired(expired=True)
    check_standing(connection, handler, user)


def _standing(connection: ASGIConnection[Any, Any, Any, Any], user: SessionUser) -> Standing | None:
    services: Services | None = getattr(connection.app.state, "services", None)
    if services is None:  # pragma: no cover - the app factory always sets it
        return None
    return services.imaging.directory.standing(user.practitioner_id)


WITHDRAWN = "role"  # standing_verdict: the session's role or membership was withdrawn


def standing_verdict(standing: Standing | None, user: SessionUser) -> str | None:
    """The one rule of a session against the directory's read model: DEACTIVATED (the account),
    WITHDRAWN (the role in that establishment), or None when it holds. A practitioner the read model
    does not know yet (just added, projection behind) holds: commands still resolve the actor on the
    event store itself."""
    if standing is None:
        return None
    if not standing.active:
        return DEACTIVATED
    if not standing.holds(user.establishment_id, user.role):
        return WITHDRAWN
    return None


def context_withdrawn(connection: ASGIConnection[Any, Any, Any, Any], user: SessionUser) -> bool:
    """Whether the directory no longer gives the session's role in the session's establishment."""
    return standing_verdict(_standing(connection, user), user) == WITHDRAWN


def check_standing(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler, user: SessionUser) -> None:
    """The session's (practitioner, establishment, role) against the directory's read model, on every
    request (cached 5 s by the view): a deactivated account's session ends (to the login page, saying
    so); a role or membership withdrawn answers 403 everywhere but the context chooser."""
    verdict = standing_verdict(_standing(connection, user), user)
    if verdict == DEACTIVATED:
        end_session(connection)
        raise LoginRequired(reason=DEACTIVATED)
    if verdict == WITHDRAWN and not handler.opt.get(ANY_CONTEXT):
        error = ForbiddenError(ROLE_WITHDRAWN.format(role=role_label(user.role), establishment=user.establishment_name))
        if connection.path_params.get("dossier_id"):
            trace_denied(connection, user, str(error))
        raise error


def trace_denied(connection: ASGIConnection[Any, Any, Any, Any], user: SessionUser, reason: str) -> None:
    """A dossier's page refused for want of the role: the attempt is traced like any denied access."""
    services: Services | None = getattr(connection.app.state, "services", None)
    if services is None:  # pragma: no cover - the app factory always sets it
        return
    path = connection.url.path
    read = isinstance(connection, Request) and connection.method == "GET"  # guards of HTTP handlers get the Request
    kind = "audit" if path.startswith("/audit/") else ("dossier" if read else "command")
    services.relais.trace_denied(
        dossier_id=str(connection.path_params["dossier_id"]), kind=kind, target=path[:200], reason=reason,
        actor={"practitioner_id": user.practitioner_id, "role": user.role, "establishment_id": user.establishment_id,
               "name": user.display_name},
    )


def requires_role(*roles: str) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]:
    """A guard letting through only users currently acting with one of these roles."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        requires_login(connection, handler)
        user = current_user(connection)
        if user is None or user.role not in roles:
            wanted = ", ".join(role_label(r) for r in roles)
            error = ForbiddenError(f"Cette page est réservée au rôle : {wanted}.")
            if user is not None and connection.path_params.get("dossier_id"):
                trace_denied(connection, user, str(error))
            raise error

    guard.__name__ = f"requires_role({', '.join(roles)})"
    return guard
