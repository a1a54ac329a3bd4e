"""Security headers added to every HTTP response (pages, fragments, errors, static files)."""

from __future__ import annotations

from collections.abc import Callable

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

CSP = (
    "default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def security_headers(https: bool) -> Callable[[Message, Scope], None]:
    """A before_send hook: security headers everywhere (HSTS behind HTTPS); only static files may be cached."""
    headers_to_add = dict(HEADERS)
    if https:
        headers_to_add["Strict-Transport-Security"] = "max-age=31536000"

    def add_security_headers(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = MutableScopeHeaders.from_message(message)
        for name, value in headers_to_add.items():
            if name not in headers:
                headers[name] = value
        if not scope.get("path", "").startswith("/static/") and "Cache-Control" not in headers:
            headers["Cache-Control"] = "no-store"

    return add_security_headers
