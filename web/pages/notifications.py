"""The notification centre: the bell's panel and the list (newest first, unread marked), opening one
(marked read, on to its dossier), marking one or all read, and the favicon with the unread count.
Only one's own notifications, server-side; the live count comes with the page's stream (web/pages/inbox.py)."""

from __future__ import annotations

from typing import Any

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from application.errors import NotFoundError
from domain.values import Role
from web.errors import is_htmx
from web.guards import PUBLIC, current_user, requires_role
from web.services import Services
from web.session import SessionUser

CLINICIAN = requires_role(Role.CLINICIAN)
PANEL_SIZE = 8


def unread_of(request: Request[Any, Any, Any]) -> int:
    """The signed-in clinician's unread count for the header's bell (0 for anyone else or on failure:
    the page must still render; the live stream corrects it)."""
    user = current_user(request)
    if user is None or user.role != Role.CLINICIAN:
        return 0
    try:
        services: Services = request.app.state.services
        return services.notifications.unread(user.practitioner_id)
    except Exception:  # noqa: BLE001 - a header counter never breaks a page
        return 0


def _context(services: Services, user: SessionUser, limit: int) -> dict[str, Any]:
    rows = services.notifications.latest(user.practitioner_id, limit=limit)
    return {"rows": rows, "unread": services.notifications.unread(user.practitioner_id), "user": user,
            "names": services.names}


@get("/notifications", name="notifications", guards=[CLINICIAN], sync_to_thread=True)
def notifications(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    panel: FromQuery[bool] = False,
) -> Template:
    """The list (the page), or the bell's panel (`panel=1`, an htmx fragment)."""
    if panel:
        return HTMXBlockTemplate(template_name="notifications/index.html", block_name="panel",
                                 context=_context(services, user, PANEL_SIZE) | {"in_panel": True})
    context = _context(services, user, 200)
    if is_htmx(request):
        return HTMXBlockTemplate(template_name="notifications/index.html", block_name="list", context=context)
    return Template("notifications/index.html", context=context)


@get("/notifications/{notification_id:str}/open", name="notification-open", guards=[CLINICIAN], sync_to_thread=True)
def open_notification(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], notification_id: FromPath[str],
) -> Redirect:
    """Opens a notification of mine: marked read, on to its dossier (the dossier page checks access)."""
    found = services.notifications.get(user.practitioner_id, notification_id[:64])
    if found is None:
        raise NotFoundError("notification introuvable")
    services.notifications.mark_read(user.practitioner_id, found.id)
    return Redirect(f"/dossiers/{found.dossier_id}", status_code=303)


def _after(request: Request[Any, Any, Any], services: Services, user: SessionUser) -> Template | Redirect:
    if not is_htmx(request):
        return Redirect("/notifications", status_code=303)
    in_panel = request.headers.get("hx-target") == "bell-panel"
    block = "panel" if in_panel else "list"
    response = HTMXBlockTemplate(template_name="notifications/index.html", block_name=block,
                                 context=_context(services, user, PANEL_SIZE if in_panel else 200) | {"in_panel": in_panel})
    response.status_code = 200
    return response


@post("/notifications/{notification_id:str}/read", name="notification-read", guards=[CLINICIAN], sync_to_thread=True)
def mark_read(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    notification_id: FromPath[str],
) -> Template | Redirect:
    """Marks one of my notifications read (another's: 404, nothing changes)."""
    if not services.notifications.mark_read(user.practitioner_id, notification_id[:64]):
        raise NotFoundError("notification introuvable")
    return _after(request, services, user)


@post("/notifications/read-all", name="notifications-read-all", guards=[CLINICIAN], sync_to_thread=True)
def mark_all_read(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
) -> Template | Redirect:
    """« Tout marquer comme lu »: my unread notifications."""
    services.notifications.mark_all_read(user.practitioner_id)
    return _after(request, services, user)


FAVICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">
<rect x="2" y="2" width="60" height="60" rx="14" fill="#1d4ed8"/>
<text x="32" y="45" font-family="Arial, Helvetica, sans-serif" font-size="38" font-weight="700" fill="#fff"
 text-anchor="middle">R</text>{badge}</svg>"""
BADGE = """<circle cx="46" cy="18" r="18" fill="#dc2626" stroke="#fff" stroke-width="3"/>
<text x="46" y="{y}" font-family="Arial, Helvetica, sans-serif" font-size="{size}" font-weight="700" fill="#fff"
 text-anchor="middle">{text}</text>"""


@get("/notifications/favicon.svg", name="favicon", opt={PUBLIC: True}, sync_to_thread=False)
def favicon(n: FromQuery[int] = 0) -> Response[bytes]:
    """The tab's icon with a red badge saying how many notifications are unread (a number the page
    gives: nothing is read here)."""
    badge = ""
    if n > 0:
        text = str(n) if n < 100 else "99+"
        size = 24 if len(text) == 1 else 18 if len(text) == 2 else 13
        badge = BADGE.format(text=text, size=size, y=18 + size * 0.36)
    return Response(FAVICON.format(badge=badge).encode(), media_type="image/svg+xml",
                    headers={"Cache-Control": "public, max-age=86400"})


HANDLERS = [notifications, open_notification, mark_read, mark_all_read, favicon]
