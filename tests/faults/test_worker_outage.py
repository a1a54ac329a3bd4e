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
