"""`relais worker` rides out a Redis restart: the same process takes jobs again once Redis is back
(it used to die on the first poll that found Redis gone, and the supervisor stopped the whole
platform when that happened three times within 10 s of a start)."""

from __future__ import annotations

import time
import uuid

from adapters.jobs import ArqJobs
from adapters.settings import Settings
from entrypoints.bootstrap import upgrade
from tests.faults.servers import wait_until
from tests.processes import RelaisProcess

OUTAGE = 3.0  # seconds Redis stays down (the fault itself, not a wait for an outcome)


def test_the_worker_process_survives_a_redis_restart(postgres, redis):
    url = postgres.create_database(f"worker_{uuid.uuid4().hex[:8]}")
    upgrade(Settings(database_url=url))
    env = {"PATH": "/usr/bin:/bin", "RELAIS_DATABASE_URL": url, "RELAIS_REDIS_URL": redis.url, "RELAIS_TABLES_READY": "1",
           "PYTHONUNBUFFERED": "1"}
    worker = RelaisProcess(["worker"], env)
    try:
        wait_until(lambda: "worker prêt" in worker.output or worker.process.poll() is not None, 60, "worker ready")
        assert worker.process.poll() is None, worker.output
        redis.stop()
        time.sleep(OUTAGE)  # the worker polls Redis (every 0.5 s) meanwhile
        redis.start()
        jobs = ArqJobs(redis.url)
        try:
            token = uuid.uuid4().hex
            job = jobs.enqueue("ping", job_id=f"ping:{token}", token=token)
            assert worker.process.poll() is None, f"the worker died with Redis:\n{worker.output[-3000:]}"
            assert jobs.result(job, timeout=30)["token"] == token
        finally:
            jobs.close()
        assert worker.process.poll() is None
    finally:
        worker.process.terminate()
        worker.process.wait(timeout=30)


DOWN_AT_START = 8.0  # seconds: longer than arq's own start-up patience (5 attempts, 1 s apart)


def test_a_worker_started_while_redis_is_down_waits_for_it(postgres, redis):
    """The whole platform restarting while Redis is still down (a host reboot): the worker waits for
    Redis instead of exiting (three exits within 10 s of a start made the supervisor stop everything)."""
    url = postgres.create_database(f"worker_{uuid.uuid4().hex[:8]}")
    upgrade(Settings(database_url=url))
    env = {"PATH": "/usr/bin:/bin", "RELAIS_DATABASE_URL": url, "RELAIS_REDIS_URL": redis.url, "RELAIS_TABLES_READY": "1",
           "PYTHONUNBUFFERED": "1"}
    redis.stop()
    worker = RelaisProcess(["worker"], env)
    try:
        time.sleep(DOWN_AT_START)  # the fault: Redis stays down while the worker starts
        assert worker.process.poll() is None, f"the worker gave up waiting for Redis:\n{worker.output[-3000:]}"
        redis.start()
        wait_until(lambda: "worker prêt" in worker.output or worker.process.poll() is not None, 60, "worker ready")
        assert worker.process.poll() is None, worker.output[-3000:]
        jobs = ArqJobs(redis.url)
        try:
            token = uuid.uuid4().hex
            job = jobs.enqueue("ping", job_id=f"ping:{token}", token=token)
            assert jobs.result(job, timeout=30)["token"] == token
        finally:
            jobs.close()
    finally:
        if redis.proc is None:
            redis.start()
        worker.process.terminate()
        worker.process.wait(timeout=30)


def test_the_worker_waits_for_redis_however_long_the_outage():
    """No bound on the wait (a bounded one ended the worker after 60 s of outage, and the supervisor then
    stopped the platform after three quick failed starts): every Redis command and the first connection
    retry for as long as Redis is away. Checked on the settings because a test cannot wait for ever."""
    from adapters.jobs import patient_redis_settings

    settings = patient_redis_settings("redis://127.0.0.1:1/0")
    assert settings.retry._retries < 0
    assert settings.conn_retries >= 10**6
