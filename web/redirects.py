"""Where a user may be sent back to after signing in: a same-origin relative path, never another site."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar import Request


def safe_next(value: str | None) -> str:
    """A local path to go back to after login, or "" (never another site: no scheme, no host, no
    `//host` or `/\\host` that browsers read as one, no control characters)."""
    value = (value or "").strip()
    if not value.startswith("/") or value.startswith("//") or "\\" in value or any(c < " " or c == "\x7f" for c in value):
        return ""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return ""
    return value


def answers_get(request: Request[Any, Any, Any], path: str) -> bool:
    """Whether this application has a page at `path` (a GET handler)."""
    try:
        request.app.asgi_router.handle_routing(path=path, method="GET")
    except Exception:  # NotFoundException, MethodNotAllowedException: no page there
        return False
    return True


def page_to_return_to(request: Request[Any, Any, Any], url: str) -> str:
    """The page of `url` (same origin, path and query) to come back to after signing in: itself when
    it can be asked for again (GET), else its nearest parent that can (a page shown in answer to a
    form, such as a new dossier's question step, comes back to the start of its form: the drafts
    kept in the browser fill it again); "" for the home page, another site or nothing usable."""
    parts = urlsplit(url)
    if parts.netloc and parts.netloc != request.headers.get("host", ""):
        return ""
    path = parts.path
    candidate = safe_next(path + (f"?{parts.query}" if parts.query else ""))
    if not candidate or path in ("", "/", "/login"):
        return ""
    if answers_get(request, path):
        return candidate
    while "/" in path.rstrip("/")[1:]:
        path = path.rstrip("/").rsplit("/", 1)[0]
        if answers_get(request, path):
            return safe_next(path)
    return ""
