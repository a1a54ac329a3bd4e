"""The live feed: one supervised PostgreSQL LISTEN connection per process, fanned out to in-process subscribers.

One task owns one psycopg AsyncConnection that LISTENs on a channel. Each notification is handed
to every subscriber's queue (plain asyncio, nothing else: subscribing and unsubscribing never
touch the database, so a stream that ends — a tab closed, its response cancelled — cannot harm
the connection). The connection is checked (`SELECT 1`) whenever it has been quiet for
`ping_every` seconds; when it is lost (backend terminated, server restarted, network gone) every
subscriber is told DOWN, the task reconnects with backoff, LISTENs again and tells every
subscriber RESYNC: notifications sent while nobody listened are lost, so what they announced
must be read again from the read model, which is the source of truth.

A task that ends for any other reason (a bug) is restarted by the next `subscribe()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger("relais.live")

APPLICATION_NAME = "relais-live"  # how the listening backend shows in pg_stat_activity


class Signal(enum.Enum):
    DOWN = "down"  # the feed lost its connection: nothing arrives until RESYNC
    RESYNC = "resync"  # the feed listens again; notifications may have been missed: read the state again


Message = str | Signal  # a notification's payload, or a signal


class Subscription:
    """One subscriber's queue. A subscriber too slow to keep up loses its backlog for one RESYNC."""

    def __init__(self, size: int):
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=size)

    def put(self, message: Message) -> None:
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(Signal.RESYNC)

    async def get(self, timeout: float) -> Message | None:
        """The next message, or None after `timeout` seconds without one."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None


class LiveFeed:
    """LISTEN on `channel` over a connection of its own (`conninfo`), supervised, fanned out."""

    def __init__(
        self, conninfo: str, channel: str, *, application_name: str = APPLICATION_NAME,
        retry_min: float = 0.2, retry_max: float = 2.0, ping_every: float = 10.0, ping_timeout: float = 5.0,
        queue_size: int = 256,
    ):
        self.conninfo = conninfo
        self.channel = channel
        self.application_name = application_name
        self.retry_min, self.retry_max = retry_min, retry_max
        self.ping_every, self.ping_timeout = ping_every, ping_timeout
        self.queue_size = queue_size
        self.connected = False
        self.backend_pid: int | None = None
        self.connections = 0  # successful connections so far (1 + reconnections)
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Starts the listening task on the running loop (the app's startup); idempotent."""
        self._closed = False
        self._ensure_running()

    async def close(self) -> None:
        """Stops listening and closes the connection (the app's shutdown)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.connected = False

    def _ensure_running(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        task = self._task
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            log.error("flux en direct : tâche d'écoute arrêtée, relancée", exc_info=task.exception())
        self._task = loop.create_task(self._run(), name=f"live-feed-{self.channel}")

    # ---------------------------------------------------------------- subscribers

    @contextlib.contextmanager
    def subscribe(self, subscription: Subscription | None = None) -> Iterator[Subscription]:
        """A subscription for the duration of the block; leaving it is purely in memory. A subscriber of
        several feeds may pass its own (a Subscription whose `put` merges them into one queue)."""
        self._ensure_running()
        subscription = subscription if subscription is not None else Subscription(self.queue_size)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def _broadcast(self, message: Message) -> None:
        for subscription in list(self._subscribers):
            subscription.put(message)

    # ---------------------------------------------------------------- the listening task

    async def _run(self) -> None:
        delay = self.retry_min
        while True:
            before = self.connections
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure of the connection: reconnect
                if self.connections > before:  # it was listening: lost
                    log.warning("flux en direct : connexion perdue (%s: %s), reconnexion", type(e).__name__, e)
                    delay = self.retry_min
                else:
                    log.debug("flux en direct : connexion impossible (%s: %s)", type(e).__name__, e)
            await asyncio.sleep(delay)
            delay = min(self.retry_max, delay * 2)

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, application_name=self.application_name,
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
        )
        async with conn:
            try:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                self.connected = True
                self.backend_pid = conn.info.backend_pid
                self.connections += 1
                if self.connections > 1:
                    log.info("flux en direct : écoute rétablie (connexion %s)", self.connections)
                self._broadcast(Signal.RESYNC)  # whatever was sent before this LISTEN was not heard
                await self._pump(conn)
            finally:  # however it ends (lost, cancelled, a bug): nobody may believe it still listens
                if self.connected:
                    self.connected = False
                    self.backend_pid = None
                    self._broadcast(Signal.DOWN)

    async def _pump(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            async for notify in conn.notifies(timeout=self.ping_every):
                self._broadcast(notify.payload)
            # a connection whose server vanished without a word is only found out by using it
            await asyncio.wait_for(conn.execute("SELECT 1"), self.ping_timeout)


async def wait_any(seconds: float, *events: asyncio.Event, subscription: Subscription | None = None) -> None:
    """Returns when one of `events` is set, when `subscription` has a message (taken: it only wakes the
    caller, who reads the state again), or after `seconds` — a loop's sleep that a stop or a
    notification cuts short. Nothing it started is left running."""
    waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(e.wait()) for e in events]
    if subscription is not None:
        waits.append(asyncio.ensure_future(subscription.get(timeout=seconds)))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await w


def follow_in_thread(feed: LiveFeed, on_message: Callable[[Message], None], stop: threading.Event) -> None:
    """Runs `feed` on an event loop of its own until `stop` is set, calling `on_message` (from this
    thread) with every notification's payload and with RESYNC when it listens again after a loss
    (what was notified meanwhile was missed). For threaded processes (the DICOM node); blocks."""

    async def follow() -> None:
        await feed.start()
        try:
            with feed.subscribe() as subscription:
                while not stop.is_set():
                    message = await subscription.get(timeout=0.5)
                    if message is not None and message is not Signal.DOWN:
                        try:
                            on_message(message)
                        except Exception:  # noqa: BLE001 - a subscriber's failure must not end the feed
                            log.exception("flux %s : traitement d'une notification en erreur", feed.channel)
        finally:
            await feed.close()

    asyncio.run(follow())
