"""The live feed (adapters/live.py) on a real PostgreSQL: fan-out, a slow subscriber, a listening task
that died, leaving subscriptions without touching the connection."""

from __future__ import annotations

import asyncio
import time

import psycopg

from adapters.live import LiveFeed, Signal, Subscription
from adapters.settings import Settings, conninfo


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def expect(subscription: Subscription, wanted: str | Signal, timeout: float = 10.0) -> None:
    """Waits for `wanted`, passing over RESYNC signals (a (re)connection) met on the way."""
    deadline = time.monotonic() + timeout
    while True:
        message = await subscription.get(max(0.01, deadline - time.monotonic()))
        assert message is not None, f"no {wanted!r} within {timeout} s"
        if message == wanted:
            return
        assert message is Signal.RESYNC, message


def test_a_subscriber_too_slow_loses_its_backlog_for_one_resync():
    async def scenario() -> None:
        subscription = Subscription(size=3)
        for i in range(5):
            subscription.put(f"n{i}")
        # n3 found the queue full: n0-n2 dropped for a RESYNC (the page reloads), n4 comes after it
        assert await subscription.get(0.1) is Signal.RESYNC
        assert await subscription.get(0.1) == "n4"
        assert await subscription.get(0.05) is None

    asyncio.run(scenario())


def test_fan_out_and_a_listening_task_that_died_is_restarted_by_the_next_subscription(settings: Settings):
    url = settings.database_url or ""

    def notify(payload: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('relais_test_live', %s)", (payload,))

    async def scenario() -> None:
        feed = LiveFeed(conninfo(url), "relais_test_live")
        await feed.start()
        try:
            await until(lambda: feed.connected)
            with feed.subscribe() as a, feed.subscribe() as b:
                await asyncio.to_thread(notify, "one")
                await expect(a, "one")
                await expect(b, "one")
            assert feed.subscribers == 0

            pid = feed.backend_pid
            task = feed._task  # noqa: SLF001 - the task dies as a bug would kill it
            assert task is not None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert not feed.connected  # a dead task is never taken for a listening one
            with feed.subscribe() as c:
                await until(lambda: feed.connected and feed.backend_pid != pid)
                await asyncio.to_thread(notify, "two")
                await expect(c, "two")
        finally:
            await feed.close()
        assert feed._task is None and not feed.connected  # noqa: SLF001

    asyncio.run(scenario())
