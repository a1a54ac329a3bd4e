"""The login session: its keys, the signed-in user, and a server-side backend that rotates ids."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.types import Empty, Message, ScopeSession
from litestar.utils.dataclass import extract_dataclass_items

from application.actors import Acting
from domain.values import Json
from web.authentication import Identity

COOKIE_NAME = "relais_session"
MAX_AGE = 8 * 3600  # absolute: a session never outlives a working day, active or not
IDLE_TIMEOUT = 3600  # a session unused for this long is forgotten by the store

# Session keys
PRACTITIONER_ID = "practitioner_id"
DISPLAY_NAME = "display_name"
ESTABLISHMENT_ID = "establishment_id"
ESTABLISHMENT_NAME = "establishment_name"
ROLE = "role"
AUTH_METHOD = "auth_method"
AUTH_AT = "auth_at"  # epoch seconds of the login
ROTATE = "_rotate"  # internal: give the session a new id when it is next stored


@dataclass(frozen=True)
class SessionUser:
    """The signed-in practitioner and the establishment and role they act for."""

    practitioner_id: str
    display_name: str
    establishment_id: str
    establishment_name: str
    role: str
    auth_method: str
    auth_at: int

    @classmethod
    def from_session(cls, session: dict[str, Any] | None) -> SessionUser | None:
        if not session or not session.get(PRACTITIONER_ID):
            return None
        try:
            return cls(
                practitioner_id=session[PRACTITIONER_ID], display_name=session[DISPLAY_NAME],
                establishment_id=session[ESTABLISHMENT_ID], establishment_name=session[ESTABLISHMENT_NAME],
                role=session[ROLE], auth_method=session[AUTH_METHOD], auth_at=int(session[AUTH_AT]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def acting(self, token: str = "", version_required: bool = False) -> Acting:
        """Who a command from this session acts as: this practitioner, exactly in the session's
        establishment and role (what every command from the web passes to the application), from the
        form `token`; `version_required` for a form that shows the dossier and may overwrite it."""
        return Acting(self.practitioner_id, self.establishment_id, self.role, token, version_required)

    def expired(self, now: float | None = None) -> bool:
        return (now or time.time()) - self.auth_at > MAX_AGE


def session_data(connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any] | None:
    """The session in this connection's scope, or None: no session middleware, an empty session, or one
    just ended (litestar then leaves its Empty marker in the scope)."""
    session = connection.scope.get("session")
    return session if isinstance(session, dict) and session else None


def default_context(memberships: dict[str, Json]) -> tuple[str, str]:
    """(establishment_id, role) chosen at login: the first membership, clinician when held."""
    establishment_id, membership = next(iter(memberships.items()))
    roles = sorted(membership["roles"])
    return establishment_id, ("clinician" if "clinician" in roles else roles[0])


def start_session(
    connection: ASGIConnection[Any, Any, Any, Any], identity: Identity, establishment_id: str, establishment_name: str, role: str,
) -> None:
    """Replaces whatever session there was by a new one (new id) for this identity."""
    connection.set_session({
        PRACTITIONER_ID: identity.practitioner_id, DISPLAY_NAME: identity.display_name,
        ESTABLISHMENT_ID: establishment_id, ESTABLISHMENT_NAME: establishment_name, ROLE: role,
        AUTH_METHOD: identity.method, AUTH_AT: int(time.time()), ROTATE: True,
    })


def switch_context(connection: ASGIConnection[Any, Any, Any, Any], establishment_id: str, establishment_name: str, role: str) -> None:
    """Changes the establishment and role acted for (the caller has checked they are held)."""
    session = dict(connection.session)
    session.update({ESTABLISHMENT_ID: establishment_id, ESTABLISHMENT_NAME: establishment_name, ROLE: role})
    connection.set_session(session)


def end_session(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    connection.clear_session()


class RotatingSessionBackend(ServerSideSessionBackend):
    """Stores only non-empty sessions, and gives a session a fresh id at login (no fixation)."""

    async def store_in_message(self, scope_session: ScopeSession, message: Message, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        store = self.config.get_store_from_app(connection.scope["app"])
        headers = MutableScopeHeaders.from_message(message)
        params = dict(extract_dataclass_items(self.config, exclude_none=True, include=Cookie.__dict__.keys()))
        old_id = connection.cookies.get(self.config.key)
        old_id = None if old_id in (None, "", "null") else old_id
        if scope_session is Empty or not scope_session:
            if old_id:
                await self.delete(old_id, store=store)
                headers.add("Set-Cookie", Cookie(value="null", key=self.config.key, expires=0, **params).to_header(header=""))
            return
        assert isinstance(scope_session, dict), "Relais sessions are dicts (start_session, switch_context)"
        data = dict(scope_session)
        session_id = old_id
        if data.pop(ROTATE, False) or not session_id:
            if old_id:
                await self.delete(old_id, store=store)
            session_id = self.generate_session_id()
        await self.set(session_id=session_id, data=self.serialize_data(data, connection.scope), store=store)
        headers.add("Set-Cookie", Cookie(value=session_id, key=self.config.key, **params).to_header(header=""))


@dataclass
class RelaisSessionConfig(ServerSideSessionConfig):
    _backend_class = RotatingSessionBackend


def session_config(secure: bool) -> RelaisSessionConfig:
    """HttpOnly, SameSite=Lax cookie; the store forgets idle sessions; static files and health skip it."""
    return RelaisSessionConfig(
        key=COOKIE_NAME, max_age=IDLE_TIMEOUT, renew_on_access=True, httponly=True, samesite="lax",
        secure=secure, store="sessions", exclude=["^/static/", "^/health"],
    )
