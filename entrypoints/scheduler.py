"""The scheduler process (`relais scheduler`): fires answer deadlines (reminders, escalations) and
runs the notification mails' delivery loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from datetime import datetime
from typing import Any

from adapters.jobs import ArqJobs
from adapters.live import LiveFeed
from adapters.scheduler import DeadlineFirer, Enqueue, Scheduler
from adapters.settings import Settings, conninfo
from entrypoints import bootstrap
from projections.notifications import DUE_CHANNEL

log = logging.getLogger("relais.scheduler")


def run(settings: Settings, stop: threading.Event) -> None:
    """Until `stop` is set: the deadline loop (in this process, or handing due rows to `relais worker`
    as deferred arq jobs when Redis is configured) and the mail delivery loop."""
    assert settings.database_url
    app = bootstrap.build_app(settings)
    pool = bootstrap.build_pool(settings, max_size=4)
    jobs = ArqJobs(settings.redis_url) if settings.redis_url else None
    enqueue: Enqueue | None = None
    if jobs is not None:
        arq = jobs

        def enqueue(key: str, due_at: datetime) -> Any:
            return arq.enqueue("fire_deadlines", job_id=key, _defer_until=due_at)

    feed = LiveFeed(conninfo(settings.database_url), DUE_CHANNEL, application_name="relais-scheduler")
    scheduler = Scheduler(DeadlineFirer(pool, app), feed, enqueue=enqueue)
    delivery = bootstrap.build_mail_delivery(settings)  # the notification mails' delivery loop (adapters/mail/)
    log.info("échéances : %s", "tâches arq différées sur Redis (relais worker)" if jobs else "dans ce processus")

    async def main() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(target=lambda: (stop.wait(), loop.call_soon_threadsafe(done.set)), daemon=True).start()
        parts: list[Coroutine[Any, Any, None]] = [scheduler.run(done), delivery.run(done)]
        try:
            await asyncio.gather(*parts)
        finally:
            await feed.close()

    try:
        asyncio.run(main())
    finally:
        delivery.close()
        if jobs is not None:
            jobs.close()
        pool.close()
        app.close()
