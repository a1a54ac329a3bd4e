"""Route guards: a login is required unless a handler is marked public; roles checked server-side."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from application.errors import ForbiddenError
from web.labels import role_label
from web.services import Services
from web.session import SessionUser, end_session, session_data

PUBLIC = "public"  # handler opt key: reachable without login


class LoginRequired(Exception):
    """No valid session: the user is sent to the login page."""

    def __init__(self, expired: bool = False):
        super().__init__("connexion requise")
        self.expired = expired


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
