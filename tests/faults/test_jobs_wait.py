"""Jobs enqueued while Redis is down wait for it (bounded), then are queued once; past the bound, a clear error."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from adapters.jobs import ArqJobs, JobsUnavailableError


def _queued(jobs: ArqJobs) -> list[str]:
    async def ids() -> list[str]:
        return [j.job_id for j in await jobs._pool.queued_jobs()]  # noqa: SLF001 - the client's own pool
    return jobs._call(ids())  # noqa: SLF001


def test_a_job_enqueued_while_redis_is_down_waits_and_is_queued_once(redis):
    jobs = ArqJobs(redis.url)  # made while Redis is up, like the web's
    job_id = f"ping:{uuid.uuid4().hex}"
    outcome: dict[str, object] = {}

    def enqueue() -> None:
        try:
            outcome["job"] = jobs.enqueue("ping", job_id=job_id, token="t")
        except BaseException as e:  # noqa: BLE001 - asserted below
            outcome["error"] = e

    try:
        redis.stop()
        waiting = threading.Thread(target=enqueue, daemon=True)
        waiting.start()
        waiting.join(1.5)
        assert "error" not in outcome, f"failed instead of waiting for Redis: {outcome['error']!r}"
        assert waiting.is_alive()  # still waiting for Redis
        redis.start()
        waiting.join(30)
        assert not waiting.is_alive() and "job" in outcome and outcome["job"] is not None, outcome
        assert _queued(jobs).count(job_id) == 1
        # the same job id again: deduplicated by arq, not queued twice
        assert jobs.enqueue("ping", job_id=job_id, token="t") is None
        assert _queued(jobs).count(job_id) == 1
    finally:
        if redis.proc is None:
            redis.start()
        jobs.close()


def test_past_its_bound_an_enqueue_fails_with_a_clear_message(redis):
    jobs = ArqJobs(redis.url, wait=1.0)
    try:
        redis.stop()
        with pytest.raises(JobsUnavailableError) as raised:
            jobs.enqueue("ping", job_id=f"ping:{uuid.uuid4().hex}", token="t")
        assert "file des tâches injoignable" in str(raised.value)
    finally:
        redis.start()
        jobs.close()
    asyncio.get_event_loop_policy()  # nothing left running on the caller's side
