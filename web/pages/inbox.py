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
from litestar.channels import ChannelsPlugin
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template

from application.errors import NotFoundError
from domain.values import URGENCY_LABELS, WORKFLOW_LABELS, Role
from projections.inbox import CHANNEL
from projections.inbox_queries import COUNT_CAP, TABS, Filters, Scope
from web.contexts import context_choices
from web.errors import is_htmx
from web.guards import requires_role
from web.present import DOSSIER_STATES, SEND_STATES
from web.present import TABS as TAB_NAMES
from web.services import Services
from web.session import SessionUser

log = logging.getLogger("relais.web.inbox")

STREAM_LIFETIME = 600.0  # seconds; the browser reconnects (and the session is checked again)
KEEPALIVE = 20.0
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


@get("/inbox/stream", name="inbox-stream", guards=[CLINICIAN])
async def stream(channels: ChannelsPlugin, user: NamedDependency[SessionUser]) -> ServerSentEvent:
    """One event « inbox » per committed change of a dossier concerning my establishment."""
    establishment = user.establishment_id

    async def events() -> AsyncGenerator[ServerSentEventMessage, None]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        async with channels.start_subscription([CHANNEL]) as subscriber:

            async def pump() -> None:
                async for raw in subscriber.iter_events():
                    queue.put_nowait(raw)

            task = asyncio.create_task(pump())
            try:
                yield ServerSentEventMessage(event="ready", data="1", retry=2000)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + STREAM_LIFETIME
                while loop.time() < deadline:
                    try:
                        raw = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE)
                    except TimeoutError:
                        yield ServerSentEventMessage(comment="keep-alive")
                        continue
                    try:
                        payload = json.loads(raw)
                    except ValueError:
                        continue
                    if establishment in payload.get("establishments", ()):
                        change = {"dossier": payload["dossier"], "event": payload["event"]}
                        yield ServerSentEventMessage(event="inbox", data=json.dumps(change))
            finally:
                task.cancel()

    return ServerSentEvent(events(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


HANDLERS = [stream, inbox]
