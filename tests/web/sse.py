"""Test helpers for the inbox's live stream: a served app, signed-in async clients, SSE readers."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import uvicorn
from litestar import Litestar

from tests.peers import free_port, wait_port
from tests.web.conftest import PASSWORD

CSRF_INPUT = re.compile(r'name="_csrf_token" value="([^"]+)"')


@contextlib.contextmanager
def serve(app: Litestar, port: int | None = None) -> Iterator[str]:
    """The app under uvicorn in a thread (its own event loop, its lifespan run), stopped at the end."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))  # open streams cancelled, then shutdown
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_port(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "the server did not stop"


async def signed_in(base: str, login: str) -> httpx.AsyncClient:
    """An async client signed in as `login` (the form filled as a browser would)."""
    client = httpx.AsyncClient(base_url=base, timeout=30)
    page = await client.get("/login")
    match = CSRF_INPUT.search(page.text)
    assert match, "no CSRF input in the login page"
    r = await client.post("/login", data={"login": login, "password": PASSWORD, "_csrf_token": match.group(1)})
    assert r.status_code == 303, r.text
    return client


@dataclass(frozen=True)
class Event:
    name: str
    data: str
    id: str | None
    at: float  # time.monotonic() when read


class Stream:
    """One open `/inbox/stream` read in the background; its events queue up in `events`."""

    def __init__(self, client: httpx.AsyncClient, last: str | None = None, last_event_id: str | None = None):
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.status: int | None = None
        self.ended = asyncio.Event()
        params = {"last": last} if last is not None else {}
        headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        self._task = asyncio.create_task(self._read(client, params, headers))

    async def _read(self, client: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str]) -> None:
        try:
            async with client.stream("GET", "/inbox/stream", params=params, headers=headers) as response:
                self.status = response.status_code
                name, data, ident = "message", [], None
                async for line in response.aiter_lines():
                    if line == "":
                        if data:
                            await self.events.put(Event(name, "\n".join(data), ident, time.monotonic()))
                        name, data = "message", []
                    elif line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif line.startswith("id:"):
                        ident = line[3:].strip()
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    async def next(self, *names: str, timeout: float = 15.0, skip: tuple[str, ...] = ("ping",)) -> Event:
        """The next event named one of `names` (events named in `skip` are passed over; any other is an error)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {names} event within {timeout} s")
            try:
                event = await asyncio.wait_for(self.events.get(), remaining)
            except TimeoutError:
                raise AssertionError(f"no {names} event within {timeout} s") from None
            if event.name in names:
                return event
            assert event.name in skip, f"unexpected event {event} while waiting for {names}"

    async def close(self) -> None:
        """Closes the stream as a closing tab does (the connection dropped)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
