"""Jobs run in-process without Redis, and through arq on the real Redis with a worker."""

from __future__ import annotations

import os
import uuid

import pytest
import redis.exceptions

from adapters.jobs import ArqJobs, InlineJobs, worker_settings
from entrypoints.bootstrap import JOBS
from tests.faults.servers import PrivateRedis

REDIS_URL = os.environ.get("RELAIS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def test_inline_jobs_run_and_deduplicate_running_ids():
    jobs = InlineJobs(JOBS)
    try:
        first = jobs.enqueue("ping", job_id="ping:1", token="abc")
        assert first.result(timeout=5)["token"] == "abc"
        assert first.result()["worker"] == "inline"
    finally:
        jobs.close()


def test_arq_worker_takes_jobs_from_redis(tmp_path):
    """On a redis-server of its own: the burst worker runs until the queue is empty, and the shared test
    database may hold other tests' jobs deferred for hours (deadlines), which kept it waiting 300 s."""
    private = PrivateRedis(tmp_path / "redis").start()
    try:
        _take_a_job(private.url)
    finally:
        private.stop()


def _take_a_job(redis_url: str) -> None:
    from arq.worker import Worker

    jobs = ArqJobs(redis_url)
    token = uuid.uuid4().hex
    try:
        job = jobs.enqueue("ping", job_id=f"ping:{token}", token=token)
        assert job is not None
        duplicate = jobs.enqueue("ping", job_id=f"ping:{token}", token=token)
        assert duplicate is None  # same job id: arq refuses to enqueue it twice
        ws = worker_settings(redis_url, JOBS)
        worker = Worker(
            functions=ws.functions, redis_settings=ws.redis_settings, burst=True, on_startup=ws.on_startup,
            handle_signals=False, poll_delay=0.05,
        )
        worker.run()  # burst: processes what is queued, then returns
        result = jobs.result(job, timeout=10)
        assert result["token"] == token and result["worker"] == "arq"
    finally:
        jobs.close()


def test_worker_settings_name_every_job():
    ws = worker_settings(REDIS_URL, JOBS)
    assert {f.name for f in ws.functions} == {"ping", "retrieve_study", "export_study", "fire_deadlines", "deliver_mail", "issue_report"}


@pytest.mark.parametrize("bad", ["redis://127.0.0.1:1/0"])
def test_unreachable_redis_is_an_error(bad):
    with pytest.raises(redis.exceptions.ConnectionError):
        ArqJobs(bad)
