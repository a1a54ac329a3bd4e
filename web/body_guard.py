"""The request body guard: no byte of a body is read before its sender is known to be signed in and
to hold a CSRF token that can be checked first, and no body goes past its route's size limit.

Litestar's CSRF middleware parses a form body (multipart included) to look for the token when the
`X-CSRFToken` header is absent, up to the route's body limit (4 GiB for the imaging import), and it
runs before the login guard: an anonymous client could make the web process read gigabytes (a
1 GiB multipart field held twice in memory, or spooled to /tmp). This middleware runs first, on
the routed request, and refuses before reading anything:

- a body on GET/HEAD/OPTIONS (no handler reads one; the CSRF middleware would parse it): 413;
- a body larger than the route's limit (`request_max_body_size`, `DEFAULT_BODY_LIMIT` for forms,
  `PUBLIC_BODY_LIMIT` for handlers open to anonymous users such as /login, `FORM_BODY_LIMIT` for a
  url-encoded body, parsed whole in memory): 413 on its Content-Length, or as soon as a chunked
  body goes past it while it is read;
- a request to a handler that needs a login without a signed-in session in the store (the session
  is looked up by its cookie, one store read): the login guard's answer (`LoginRequired`);
- a body that would have to be parsed to find the CSRF token (anything but a small url-encoded
  form) without the `X-CSRFToken` header: 403, as the CSRF middleware would.

A response sent while the request body is still unread says `Connection: close`
(`close_unread_body`, a before_send hook): the server then closes the connection instead of
reading and discarding the rest of the body to keep it alive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import RequestEncodingType, ScopeType
from litestar.exceptions import ClientException, PermissionDeniedException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from web.guards import PUBLIC, LoginRequired
from web.session import SessionUser

DEFAULT_BODY_LIMIT = 1_000_000  # bytes: the app-wide limit (forms); upload handlers set their own
FORM_BODY_LIMIT = 1_000_000  # a url-encoded body is parsed whole, in memory, wherever it is posted
PUBLIC_BODY_LIMIT = 8 * 1024  # a handler open to anonymous users (login, logout): a small form
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
SCOPE_KEY = "relais_body"  # the request's BodyState in the ASGI scope


@dataclass
class BodyState:
    """How much of a request's body has been received, against its limit."""

    limit: int
    received: int = 0
    complete: bool = False  # the last chunk has been received


def declared_body(headers: Headers) -> tuple[int | None, bool]:
    """(Content-Length, chunked) of a request; an invalid Content-Length is a 400."""
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    raw = headers.get("content-length")
    if raw is None:
        return None, chunked
    if not raw.strip().isdigit():
        raise ClientException("Content-Length invalide")
    return int(raw), chunked


def has_body(headers: Headers) -> bool:
    length, chunked = declared_body(headers)
    return chunked or bool(length)


def body_limit(handler: BaseRouteHandler, method: str, content_type: str) -> int:
    """The most bytes of body this handler may be sent."""
    if method in SAFE_METHODS:
        return 0
    resolve = getattr(handler, "resolve_request_max_body_size", None)  # HTTP handlers; ASGI ones have none
    limit = (resolve() if resolve is not None else None) or DEFAULT_BODY_LIMIT
    if handler.opt.get(PUBLIC):
        limit = min(limit, PUBLIC_BODY_LIMIT)
    if content_type == RequestEncodingType.URL_ENCODED:
        limit = min(limit, FORM_BODY_LIMIT)
    return int(limit)


class BodyGuard:
    """ASGI middleware, first of the app's: the checks above, then the request goes on with a receive
    that counts the body's bytes against the limit."""

    def __init__(self, app: ASGIApp, session: ServerSideSessionConfig, csrf: CSRFConfig) -> None:
        self.app = app
        self.session = session
        self.backend = ServerSideSessionBackend(config=session)
        self.csrf = csrf
        self.csrf_exclude = [re.compile(p) for p in ([csrf.exclude] if isinstance(csrf.exclude, str) else csrf.exclude or [])]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        headers = Headers.from_scope(scope)
        length, chunked = declared_body(headers)
        if not chunked and not length:  # nothing to read
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        handler: BaseRouteHandler = scope["route_handler"]
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        state = BodyState(limit=body_limit(handler, method, content_type))
        scope[SCOPE_KEY] = state  # type: ignore[literal-required]
        if length is not None and length > state.limit:
            raise RequestEntityTooLarge()
        if method in SAFE_METHODS:  # chunked: refused at its first byte, before anything parses it
            raise RequestEntityTooLarge()
        if not handler.opt.get(PUBLIC):
            await self._require_login(scope)
        if self._csrf_checked(scope, handler) and not headers.get(self.csrf.header_name) \
                and content_type != RequestEncodingType.URL_ENCODED:
            raise PermissionDeniedException("CSRF token verification failed")

        async def counting_receive() -> ReceiveMessage:
            message = await receive()
            if message["type"] == "http.request":
                state.received += len(message.get("body", b""))
                if state.received > state.limit:
                    raise RequestEntityTooLarge()
                if not message.get("more_body", False):
                    state.complete = True
            return message

        await self.app(scope, counting_receive, send)

    async def _require_login(self, scope: Scope) -> None:
        """Raises LoginRequired unless the session cookie names a signed-in, unexpired session of the store."""
        session_id = ASGIConnection[Any, Any, Any, Any](scope).cookies.get(self.session.key)
        if not session_id or session_id == "null":
            raise LoginRequired()
        store = self.session.get_store_from_app(scope["app"])
        raw = await self.backend.get(session_id, store=store)
        data = self.backend.deserialize_data(raw) if raw else None
        user = SessionUser.from_session(data if isinstance(data, dict) else None)
        if user is None:
            raise LoginRequired()
        if user.expired():
            raise LoginRequired(expired=True)

    def _csrf_checked(self, scope: Scope, handler: BaseRouteHandler) -> bool:
        """Whether Litestar's CSRF middleware checks this request (not excluded by path or handler)."""
        if handler.opt.get(self.csrf.exclude_from_csrf_key):
            return False
        path = scope["path"]
        return not any(p.search(path) for p in self.csrf_exclude)


def close_unread_body(message: Message, scope: Scope) -> None:
    """A before_send hook: a response that starts before the request's body has been read through
    closes the connection (the rest of the body is never read)."""
    if message["type"] != "http.response.start" or scope["type"] != ScopeType.HTTP:
        return
    state: BodyState | None = scope.get(SCOPE_KEY)  # type: ignore[assignment]
    if state is not None:
        unread = not state.complete
    else:
        try:
            unread = has_body(Headers.from_scope(scope))  # not guarded (no route): never read
        except ClientException:
            unread = True
    if unread:
        headers = MutableScopeHeaders.from_message(message)
        headers["Connection"] = "close"
