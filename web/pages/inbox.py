"""The clinician's inbox: tabs with counters, filters, search, infinite scroll, live updates (SSE)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import date
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template

from adapters.live import Message, Signal, Subscription
from application.errors import ForbiddenError, NotFoundError
from domain.values import URGENCY_LABELS, WORKFLOW_LABELS, Role
from projections.inbox_queries import COUNT_CAP, TABS, Filters, Scope
from projections.notification_centre import URGENT
from web.contexts import context_choices
from web.errors import is_htmx
from web.guards import requires_role, standing_verdict
from web.present import DOSSIER_STATES, NOTIFICATION_KINDS, SEND_STATES, notification_title
from web.present import TABS as TAB_NAMES
from web.services import Services
from web.session import COOKIE_NAME, SessionUser

log = logging.getLogger("relais.web.inbox")

STREAM_LIFETIME = 600.0  # seconds; the browser reconnects (and the session is checked again)
HEARTBEAT = 4.0  # seconds between pings: the browser calls a stream silent for 9 s lost (relais.js)
POSITION_TIMEOUT = 3.0
CLINICIAN = requires_role(Role.CLINICIAN)
T = TypeVar("T")


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
        standing = await _shared(("standing", user.practitioner_id),
                                 lambda: asyncio.to_thread(services.imaging.directory.standing, user.practitioner_id))
    except Exception as e:  # noqa: BLE001 - see above
        log.info("flux en direct : session non vérifiable (%s)", type(e).__name__)
        return None
    return standing_verdict(standing, user)  # the login guard's own rule: desactive, role, or None


@get(["/live", "/inbox/stream"], name="live-stream", guards=[CLINICIAN])
async def stream(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    last: FromQuery[str | None] = None, last_event_id: Annotated[str | None, HeaderParameter(name="last-event-id")] = None,
    dossier: FromQuery[str | None] = None,
) -> ServerSentEvent:
    """The one live stream of a signed-in clinician's page (browsers allow ~6 connections per host:
    a page holds this one only), fed by the process's two live feeds (adapters/live.py): the inbox
    projection's changes (NOTIFY relais_inbox) and new notifications (NOTIFY relais_notifications).

    Events: `ready` (the feeds listen; `id:` the inbox projection's position; data: the bell's state,
    {"unread", "sound", "desktop"}), `inbox` (a committed change of a dossier concerning my
    establishment), `dossier` (a change of the dossier the page shows, `dossier=<id>`: only for
    someone who may read it, checked at the start and at every heartbeat — `forbidden` then ends
    the stream when that no longer holds), `notify` (new notifications for me: {"unread", "kind",
    "urgency", "urgent", "dossier", "title", "url"}), `resync` (a feed listens again, or the page is
    behind: changes may have been missed, the page reloads what it shows from the read models),
    `down` (a feed lost the database: nothing arrives until `resync`), `ping` every HEARTBEAT
    seconds (the browser's watchdog), `end` when the stream's lifetime is over, `signedout` (data:
    why — expiree, desactive, role) when the session stops holding: the browser leaves the page.
    A page says which position it shows (`last`, or `Last-Event-ID` from a browser's own
    reconnection); a stream that starts further on begins with a `resync`."""
    establishment = str(user.establishment_id)
    feed, bell = services.live, services.notification_feed
    shown = last if last is not None else last_event_id
    watched = dossier or None
    if watched is not None and not await _may_read(services, user, watched):
        raise ForbiddenError("ce télédossier ne vous est pas accessible")

    async def events() -> AsyncGenerator[ServerSentEventMessage, None]:
        merged = Merged()
        # leaving them never touches the database
        with feed.subscribe(merged.tagged()) as inbox_sub, bell.subscribe(merged.tagged()) as bell_sub:
            # feeds that lost the database: one `down` when the first goes, one `resync` when the last is back
            lost = {sub for sub, f in ((inbox_sub, feed), (bell_sub, bell)) if not f.connected}
            if lost:  # out of reach: say so; `resync` follows when back
                yield ServerSentEventMessage(event="down", data="1")
            else:
                position = await _position(services)
                ident = str(position) if position is not None else None
                yield ServerSentEventMessage(event="ready", data=json.dumps(await _bell(services, user)), id=ident)
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
                    if watched is not None and not await _may_read(services, user, watched):
                        yield ServerSentEventMessage(event="forbidden", data=watched)
                        return
                    yield ServerSentEventMessage(event="ping", data="1")
                    ping_at = loop.time() + HEARTBEAT
                source, message = await merged.get(timeout=max(0.0, ping_at - loop.time()))
                sent: list[ServerSentEventMessage] = []
                if message is Signal.DOWN and source is not None:
                    if not lost:
                        sent.append(ServerSentEventMessage(event="down", data="1"))
                    lost.add(source)
                elif message is Signal.RESYNC and source is not None:
                    lost.discard(source)
                    if lost:  # the other feed is still away: `down` holds
                        continue
                    position = await _position(services)
                    sent.append(ServerSentEventMessage(event="resync", data=json.dumps(await _bell(services, user)),
                                                       id=str(position) if position is not None else None))
                elif isinstance(message, str) and source is bell_sub:
                    told = await _told(services, user, message)
                    if told is not None:
                        sent.append(ServerSentEventMessage(event="notify", data=json.dumps(told)))
                elif isinstance(message, str):
                    change = _change(message, establishment)
                    if change is not None:
                        sent.append(ServerSentEventMessage(event="inbox", data=json.dumps(change)))
                    if watched is not None and _concerns(message, watched, establishment):
                        sent.append(ServerSentEventMessage(event="dossier", data=watched))
                for event in sent:
                    yield event
                if sent:
                    ping_at = loop.time() + HEARTBEAT
            yield ServerSentEventMessage(event="end", data="1")  # the browser reconnects at once

    return ServerSentEvent(events(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


class Merged:
    """One queue for a stream's feeds: each feed puts into its `Tagged` subscription, which queues
    (feed's subscription, message); `get` waits on that one queue (no task per wait: 1,000 open pages
    each woken by every notification). A reader too slow to keep up loses its backlog for a RESYNC of
    each feed."""

    def __init__(self, size: int = 256):
        self.queue: asyncio.Queue[tuple[Subscription, Message]] = asyncio.Queue(maxsize=size)

    def tagged(self) -> Tagged:
        return Tagged(self)

    def put(self, source: Subscription, message: Message) -> None:
        try:
            self.queue.put_nowait((source, message))
        except asyncio.QueueFull:
            sources = set()
            while not self.queue.empty():
                sources.add(self.queue.get_nowait()[0])
            for each in sources | {source}:
                self.queue.put_nowait((each, Signal.RESYNC))

    async def get(self, timeout: float) -> tuple[Subscription | None, Message | None]:
        """The next message of any feed with the subscription it came through, (None, None) after `timeout` s."""
        if not self.queue.empty():
            return self.queue.get_nowait()
        try:
            async with asyncio.timeout(timeout):
                return await self.queue.get()
        except TimeoutError:
            return None, None


class Tagged(Subscription):
    """A feed's subscription that puts into a stream's `Merged` queue."""

    def __init__(self, merged: Merged):
        super().__init__(1)
        self.merged = merged

    def put(self, message: Message) -> None:
        self.merged.put(self, message)


SHARED_FOR = 1.0  # seconds a heartbeat's check is shared by the pages of one user (1,000 pages: 250 checks/s)
_checks: dict[tuple[str, ...], tuple[float, asyncio.Future[Any]]] = {}


async def _shared(key: tuple[str, ...], check: Callable[[], Awaitable[T]]) -> T:
    """`check()`, or the result of the same check started less than SHARED_FOR seconds ago by another
    page of this process (every open page of a user checks at each heartbeat: once is enough)."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    kept = _checks.get(key)
    if kept is None or kept[0] <= now or (kept[1].done() and kept[1].exception() is not None):
        if len(_checks) > 10_000:
            _checks.clear()
        kept = (now + SHARED_FOR, asyncio.ensure_future(check()))
        _checks[key] = kept
    result: T = await asyncio.shield(kept[1])
    return result


async def _may_read(services: Services, user: SessionUser, dossier_id: str) -> bool:
    """Whether this user may (still) read the dossier the page shows (no access recorded)."""
    try:
        return await _shared(("read", user.practitioner_id, user.establishment_id, user.role, dossier_id), lambda: asyncio.to_thread(
            services.relais.may_read_now, dossier_id=dossier_id[:64], actor_id=user.practitioner_id,
            establishment_id=user.establishment_id, role=user.role,
        ))
    except (NotFoundError, ForbiddenError, ValueError):
        return False


PREFERENCES_FOR = 10.0  # seconds a practitioner's sound/desktop preferences are kept by this process
_preferences: dict[str, tuple[float, dict[str, bool]]] = {}
_told_now: dict[tuple[str, str], asyncio.Task[dict[str, Any] | None]] = {}


async def _wishes(services: Services, practitioner_id: str) -> dict[str, bool]:
    """Whether the user wants a sound / desktop notification (their preferences, kept a few seconds:
    1,000 open pages would otherwise read them at each notification)."""
    now = asyncio.get_running_loop().time()
    kept = _preferences.get(practitioner_id)
    if kept is not None and kept[0] > now:
        return kept[1]
    prefs = await asyncio.to_thread(services.preferences.get, practitioner_id)
    wishes = {"sound": prefs.sound, "desktop": prefs.desktop}
    if len(_preferences) > 10_000:
        _preferences.clear()
    _preferences[practitioner_id] = (now + PREFERENCES_FOR, wishes)
    return wishes


async def _bell(services: Services, user: SessionUser) -> dict[str, Any]:
    """The bell's state: unread count, and whether the user wants a sound / desktop notification."""
    try:
        unread = await asyncio.to_thread(services.notifications.unread, user.practitioner_id)
        return {"unread": unread} | await _wishes(services, user.practitioner_id)
    except Exception as e:  # noqa: BLE001 - the database may be gone: the stream says so itself
        log.warning("flux en direct : cloche illisible (%s)", type(e).__name__)
        return {"unread": None, "sound": False, "desktop": False}


async def _told(services: Services, user: SessionUser, payload: str) -> dict[str, Any] | None:
    """What a relais_notifications notification tells this user's pages, None when it is not for them.
    Worked out once per practitioner and notification, whatever the number of their open pages."""
    try:
        note = json.loads(payload)
        if user.practitioner_id not in note.get("practitioners", ()):
            return None
    except (ValueError, TypeError, AttributeError):
        log.warning("flux en direct : notification illisible ignorée")
        return None
    key = (payload, user.practitioner_id)
    task = _told_now.get(key)
    if task is None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(_tell(services, user.practitioner_id, note))
        _told_now[key] = task
        loop.call_later(5.0, _told_now.pop, key, None)
    return await asyncio.shield(task)  # a page that goes away does not cancel it for the others


async def _tell(services: Services, practitioner_id: str, note: dict[str, Any]) -> dict[str, Any] | None:
    dossier_id = str(note.get("dossier", ""))
    kind, urgency = str(note.get("kind", "")), str(note.get("urgency", ""))
    try:
        unread, latest = await asyncio.to_thread(services.notifications.bell, practitioner_id, dossier_id)
        wishes = await _wishes(services, practitioner_id)
    except Exception as e:  # noqa: BLE001 - the database may be gone: the feed says so itself
        log.warning("flux en direct : cloche illisible (%s)", type(e).__name__)
        return None
    title = notification_title(latest) if latest else NOTIFICATION_KINDS.get(kind, "Nouvelle notification")
    return {"unread": unread, **wishes, "kind": kind, "urgency": urgency, "urgent": urgency in URGENT,
            "dossier": dossier_id, "title": title,
            "url": f"/notifications/{latest.id}/open" if latest else "/notifications"}


def _concerns(payload: str, dossier_id: str, establishment: str) -> bool:
    """Whether an inbox notification may change the dossier a page shows (its own, or a bulk batch of
    dossiers of my establishment: a rebuild, a history import)."""
    try:
        note = json.loads(payload)
        return note.get("dossier") == dossier_id or (note.get("dossier") == "" and establishment in note.get("establishments", ()))
    except (ValueError, TypeError, AttributeError):
        return False


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
