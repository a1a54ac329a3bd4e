"""The jobs process (`relais worker`): an arq worker on Redis running the job table."""

from __future__ import annotations

from arq.worker import run_worker

from adapters.jobs import JobContext, worker_settings
from adapters.scheduler import DeadlineFirer, fire_deadlines
from adapters.settings import Settings
from entrypoints.bootstrap import JOBS, build_app, build_mail_delivery, build_pool, job_context


def run(settings: Settings) -> None:
    """Takes jobs from RELAIS_REDIS_URL until stopped; the application is built when the worker starts."""
    assert settings.redis_url

    async def startup(ctx: JobContext) -> None:
        app = build_app(settings)
        ctx["app"] = app
        ctx.update(job_context(settings, app))
        ctx["deadlines_pool"] = pool = build_pool(settings, max_size=2)
        ctx["deadlines"] = DeadlineFirer(pool, app)  # fire_deadlines: deferred per due row, and every minute
        ctx["mail"] = build_mail_delivery(settings, enqueue=False)  # deliver_mail: one attempt per job

    async def shutdown(ctx: JobContext) -> None:
        if "mail" in ctx:
            ctx["mail"].close()
        if "deadlines_pool" in ctx:
            ctx["deadlines_pool"].close()
        if "app" in ctx:
            ctx["app"].close()

    run_worker(worker_settings(
        settings.redis_url, JOBS, on_startup=startup, on_shutdown=shutdown,
        every_minute={"fire_deadlines": fire_deadlines},
    ))
