"""Background jobs: on arq/Redis when configured, else in-process with the same functions."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Protocol

log = logging.getLogger("relais.jobs")

JobContext = dict[str, Any]  # what every job receives first: arq's own keys and the worker's objects by name
JobFunction = Callable[..., Coroutine[Any, Any, Any]]  # an async function: (ctx, **kwargs)
JobTable = Mapping[str, JobFunction]  # name → async function (its body idempotent: it may run twice)


class Jobs(Protocol):
    """Where use cases hand slow work: `InlineJobs` in this process, or `ArqJobs` on Redis."""

    def enqueue(self, name: str, *, job_id: str, **kwargs: Any) -> Any: ...

    def close(self) -> None: ...


async def ping(ctx: JobContext, token: str) -> dict[str, str]:
    """Answers with the token and the worker's clock: proves a worker takes jobs."""
    return {"token": token, "at": datetime.now(UTC).isoformat(), "worker": ctx.get("worker_name", "inline")}


class InlineJobs:
    """Runs jobs in this process on a private event loop thread (no Redis configured)."""

    def __init__(self, functions: JobTable, ctx: JobContext | None = None):
        self.functions = dict(functions)
        self.ctx = dict(ctx or {}, worker_name="inline")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relais-jobs", daemon=True)
        self._thread.start()
        self._running: dict[str, Future[Any]] = {}

    def enqueue(self, name: str, *, job_id: str, **kwargs: Any) -> Future[Any]:
        """Schedules a job; a job id already running is not started twice."""
        current = self._running.get(job_id)
        if current is not None and not current.done():
            return current
        fut = asyncio.run_coroutine_threadsafe(self.functions[name](self.ctx, **kwargs), self._loop)
        self._running[job_id] = fut

        def report(f: Future[Any]) -> None:
            error = f.exception()
            if error:
                log.error("job %s en échec : %s", job_id, error)

        fut.add_done_callback(report)
        return fut

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


class JobsUnavailableError(RuntimeError):
    """Redis stayed unreachable longer than an enqueue waits for it; the message says so (French)."""


ENQUEUE_WAIT_SECONDS = 30.0  # how long an enqueue waits for Redis to come back (a restart takes a few seconds)


class ArqJobs:
    """Enqueues jobs on Redis for `relais worker` processes (job ids deduplicate).

    Redis restarting (or briefly unreachable) does not lose a job a user starts meanwhile: the
    enqueue waits for it, retrying up to `wait` seconds, and the job id keeps a retried enqueue
    from queuing the job twice. Past `wait`, JobsUnavailableError.
    """

    def __init__(self, redis_url: str, wait: float = ENQUEUE_WAIT_SECONDS):
        from arq.connections import RedisSettings

        self.redis_settings = RedisSettings.from_dsn(redis_url)
        self.wait = wait
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relais-arq", daemon=True)
        self._thread.start()
        self._pool = self._call(self._connect())

    async def _connect(self) -> Any:
        from arq import create_pool

        return await create_pool(self.redis_settings)

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout)

    def enqueue(self, name: str, *, job_id: str, **kwargs: Any) -> Any:
        """The arq job, or None when a job of this id is already queued, running or kept as a result."""
        return self._call(self._enqueue(name, job_id, kwargs), timeout=self.wait + 30.0)

    async def _enqueue(self, name: str, job_id: str, kwargs: dict[str, Any]) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        delay = 0.1
        while True:
            try:
                return await self._pool.enqueue_job(name, _job_id=job_id, **kwargs)
            except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                if loop.time() + delay > deadline:
                    raise JobsUnavailableError(
                        f"file des tâches injoignable (Redis) depuis {self.wait:.0f} s : tâche {job_id} non lancée, réessayez"
                    ) from e
                log.warning("Redis injoignable (%s) : tâche %s en attente", e, job_id)
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)

    def result(self, job: Any, timeout: float) -> Any:
        return self._call(job.result(timeout=timeout))

    def close(self) -> None:
        self._call(self._pool.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def patient_redis_settings(redis_url: str) -> Any:
    """arq RedisSettings that ride out a Redis outage of any length: commands retry on a lost connection
    (backoff up to 1 s) for as long as it lasts, and the first connection at start waits for Redis.
    The worker polls Redis twice a second: without this, the first poll during a Redis restart raised
    out of arq and ended the process, and a worker started while Redis was down gave up after 5 s;
    three such ends within 10 s of a start made the supervisor stop the whole platform. A worker
    waiting for Redis has nothing else it could do; arq logs each failed connection attempt."""
    from arq.connections import RedisSettings
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    settings = RedisSettings.from_dsn(redis_url)
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, OSError]
    settings.retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=-1)  # negative: for ever
    settings.conn_retries = 10**9  # at start, once a second (arq's own retry loop, logged)
    settings.conn_retry_delay = 1
    return settings


def worker_settings(
    redis_url: str, functions: JobTable,
    on_startup: Callable[[JobContext], Awaitable[None]] | None = None,
    on_shutdown: Callable[[JobContext], Awaitable[None]] | None = None,
    every_minute: JobTable | None = None,
) -> type:
    """arq WorkerSettings for `relais worker`: the job table, hooks filling and emptying its context, and
    jobs run every minute (arq cron, also once at start: e.g. the deadlines' safety net)."""
    from arq import cron
    from arq.worker import func

    async def startup(c: JobContext) -> None:
        c["worker_name"] = "arq"
        if on_startup is not None:
            await on_startup(c)
        log.info("worker prêt (%d fonctions)", len(functions))

    async def shutdown(c: JobContext) -> None:
        if on_shutdown is not None:
            await on_shutdown(c)

    class WorkerSettings:
        redis_settings = patient_redis_settings(redis_url)
        keep_result = 3600
        health_check_interval = 60  # the compose health check reads this key
        max_tries = 5
        job_timeout = 3600
        handle_signals = True

    settings: Any = WorkerSettings
    settings.functions = [func(f, name=n) for n, f in functions.items()]
    settings.cron_jobs = [cron(f, name=f"cron:{n}", second=0, run_at_startup=True) for n, f in (every_minute or {}).items()]
    settings.on_startup = staticmethod(startup)
    settings.on_shutdown = staticmethod(shutdown)
    return WorkerSettings
