"""The clinician's inbox: tabs with counters, filters, search, infinite scroll, live updates (SSE)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template

from adapters.live import Signal
from application.errors import NotFoundError
from domain.values import URGENCY_LABELS, WORKFLOW_LABELS, Role
from projections.inbox_queries import COUNT_CAP, TABS, Filters, Scope
from web.contexts import context_choices
from web.errors import is_htmx
from web.guards import requires_role, standing_verdict
from web.present import DOSSIER_STATES, SEND_STATES
from web.present import TABS as TAB_NAMES
from web.services import Services
from web.session import COOKIE_NAME, SessionUser

log = logging.getLogger("relais.web.inbox")

STREAM_LIFETIME = 600.0  # seconds; the browser reconnects (and the session is checked again)
HEARTBEAT = 4.0  # seconds between pings: the browser calls a stream silent for 9 s lost (relais.js)
POSITION_TIMEOUT = 3.0
CLINICIAN = requires_role(Role.CLINICIAN)


def scope_of(services: Services, user: SessionUser) -> Scope:
    actor = services.relais.actor_for(
        practitioner_id=user.practitioner_id, establishment_id=user.establishment_id, role=Role.CLINICIAN
    )
    return Scope(practitioner_id=actor.practitioner_id, establishment_id=actor.establishment_id, service_ids=actor.service_ids)


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def inbox_response(
    request: Request[Any, Any, Any], services: Services, user: SessionUser, tab: str, filters: Filters, cursor: str | None,
    full_page: bool = False,
) -> Template:
    if tab not in TABS:
        raise NotFoundError(f"onglet inconnu : {tab}")
    scope = scope_of(services, user)
    position = services.inbox.position() if full_page or not is_htmx(request) else None  # read before the rows
    page = services.inbox.page(scope, tab, filters, cursor)
    query = {k: v for k, v in (
        ("q", filters.q), ("workflow", filters.workflow), ("state", filters.state), ("urgency", filters.urgency),
        ("service", filters.service), ("since", filters.since.isoformat() if filters.since else ""),
        ("until", filters.until.isoformat() if filters.until else ""),
    ) if v}
    next_url = f"/inbox/{tab}?" + urlencode(query | {"cursor": page.next_cursor}) if page.next_cursor else None
    context: dict[str, Any] = {
        "tab": tab, "tab_names": TAB_NAMES, "rows": page.rows, "next_url": next_url, "filters": filters, "query": query,
        "names": services.names, "user": user, "my_services": [(sid, services.names.service(sid)) for sid in scope.service_ids],
        "workflows": WORKFLOW_LABELS, "urgencies": URGENCY_LABELS,
        "states": SEND_STATES if tab == "received" else DOSSIER_STATES,
        "base_url": f"/inbox/{tab}", "query_string": urlencode(query),
    }
    if cursor and is_htmx(request):
        return HTMXBlockTemplate(template_name="inbox/index.html", block_name="more", context=context)
    context["counts"] = services.inbox.counts(scope)
    context["count_cap"] = COUNT_CAP
    if is_htmx(request) and not full_page:
        context["oob"] = True
        return HTMXBlockTemplate(template_name="inbox/index.html", block_names=["results", "counters"], context=context)
    context["position"] = position  # the page shows the inbox at this position at least (its stream's `last`)
    context["choices"] = context_choices(services.relais, user.practitioner_id)
    context["current"] = f"{user.establishment_id}|{user.role}"
    return Template("inbox/index.html", context=context)


@get("/inbox/{tab:str}", name="inbox", guards=[CLINICIAN], sync_to_thread=True)
def inbox(
    request: Request[Any, Any, Any],
    services: NamedDependency[Services],
    user: NamedDependency[SessionUser],
    tab: FromPath[str],
    q: FromQuery[str] = "",
    workflow: FromQuery[str] = "",
    state_filter: Annotated[str, Parameter(query="state")] = "",
    urgency: FromQuery[str] = "",
    service: FromQuery[str] = "",
    since: FromQuery[str] = "",
    until: FromQuery[str] = "",
    cursor: FromQuery[str | None] = None,
    done: FromQuery[str] = "",
) -> Template:
    filters = Filters(
        workflow=workflow if workflow in WORKFLOW_LABELS else "", state=state_filter, urgency=urgency if urgency in URGENCY_LABELS else "",
        service=service, since=_date(since), until=_date(until), q=q[:100],
    )
    response = inbox_response(request, services, user, tab, filters, cursor)
    if done in DONE and isinstance(response.context, dict):
        response.context["notice"] = DONE[done]
    return response


DONE = {"forwarded": "Télédossier transféré : il a quitté votre boîte de réception."}


SIGNED_OUT_EXPIRED = "expiree"  # the session ended (idle, absolute limit, sign-out elsewhere)


async def signed_out(request: Request[Any, Any, Any], services: Services, user: SessionUser) -> str | None:
    """Why a stream's session no longer holds, None while it does: checked at every heartbeat, so a
    page open for hours is cut (and sent to the login page) as any request would be refused. The
    session is looked up without renewing it; the directory standing is judged by the guard's rule
    (`standing_verdict`, cached 5 s).
    A store or database out of reach is not a sign-out: the feed reports that as `down` itself."""
    if user.expired():
        return SIGNED_OUT_EXPIRED
    try:
        session_id = request.cookies.get(COOKIE_NAME)
        if not session_id or not await services.session_store.exists(session_id):
            return SIGNED_OUT_EXPIRED
        standing = await asyncio.to_thread(services.imaging.directory.standing, user.practitioner_id)
    except Exception as e:  # noqa: BLE001 - see above
        log.info("flux en direct : session non vérifiable (%s)", type(e).__name__)
        return None
    return standing_verdict(standing, user)  # the login guard's own rule: desactive, role, or None


@get("/inbox/stream", name="inbox-stream", guards=[CLINICIAN])
async def stream(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    last: FromQuery[str | None] = None, last_event_id: Annotated[str | None, HeaderParameter(name="last-event-id")] = None,
) -> ServerSentEvent:
    """The live inbox of one page, fed by the process's live feed (adapters/live.py).

    Events: `ready` (the feed listens; `id:` the inbox projection's position), `inbox` (a committed
    change of a dossier concerning my establishment), `resync` (the feed listens again, or the page
    is behind: changes may have been missed, the page reloads its rows and counters from the
    projection), `down` (the feed lost the database: nothing arrives until `resync`), `ping` every
    HEARTBEAT seconds (the browser's watchdog), `end` when the stream's lifetime is over, `signedout`
    (data: why — expiree, desactive, role) when the session stops holding: the browser leaves the page.
    A page says which position it shows (`last`, or `Last-Event-ID` from a browser's own
    reconnection); a stream that starts further on begins with a `resync`."""
    establishment = str(user.establishment_id)
    feed = services.live
    shown = last if last is not None else last_event_id

    async def events() -> AsyncGenerator[ServerSentEventMessage, None]:
        with feed.subscribe() as subscription:  # leaving it never touches the database
            if not feed.connected:  # the database is out of reach: say so; `resync` follows when it is back
                yield ServerSentEventMessage(event="down", data="1")
            else:
                position = await _position(services)
                ident = str(position) if position is not None else None
                yield ServerSentEventMessage(event="ready", data="1", id=ident)
                if shown is not None and shown != ident:
                    yield ServerSentEventMessage(event="resync", data="1", id=ident)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + STREAM_LIFETIME
            ping_at = loop.time() + HEARTBEAT  # due whatever else arrives: others' changes are not sent here
            while loop.time() < deadline:
                if loop.time() >= ping_at:
                    why = await signed_out(request, services, user)
                    if why is not None:
                        yield ServerSentEventMessage(event="signedout", data=why)
                        return
                    yield ServerSentEventMessage(event="ping", data="1")
                    ping_at = loop.time() + HEARTBEAT
                message = await subscription.get(timeout=max(0.0, ping_at - loop.time()))
                sent: ServerSentEventMessage | None = None
                if message is Signal.DOWN:
                    sent = ServerSentEventMessage(event="down", data="1")
                elif message is Signal.RESYNC:
                    position = await _position(services)
                    sent = ServerSentEventMessage(event="resync", data="1", id=str(position) if position is not None else None)
                elif isinstance(message, str):
                    change = _change(message, establishment)
                    if change is not None:
                        sent = ServerSentEventMessage(event="inbox", data=json.dumps(change))
                if sent is not None:
                    yield sent
                    ping_at = loop.time() + HEARTBEAT
            yield ServerSentEventMessage(event="end", data="1")  # the browser reconnects at once

    return ServerSentEvent(events(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _position(services: Services) -> int | None:
    """The inbox projection's position (what a page reloaded now shows at least), None if unreadable."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(services.inbox.position), POSITION_TIMEOUT)
    except Exception as e:  # noqa: BLE001 - the database may be gone: the stream says so instead
        log.warning("flux en direct : position de la boîte illisible (%s)", type(e).__name__)
        return None


def _change(payload: str, establishment: str) -> dict[str, Any] | None:
    """What a notification tells a page of `establishment`, None when it does not concern it."""
    try:
        note = json.loads(payload)
        if establishment in note.get("establishments", ()):
            return {"dossier": note["dossier"], "event": note["event"]}
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("flux en direct : notification illisible ignorée")
    return None


HANDLERS = [stream, inbox]
