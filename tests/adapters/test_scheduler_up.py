"""`relais up` runs the scheduler (deadlines and notification mails) as one of its parts."""

from __future__ import annotations

import signal
import time

import pytest

from tests.adapters.test_up import Platform, env  # noqa: F401 - env: the fixture (free ports, private data folder)

pytestmark = pytest.mark.slow


def test_up_starts_the_scheduler_and_stops_it(env):  # noqa: F811
    platform = Platform(env)
    try:
        platform.wait_for("Relais est prêt", timeout=180)
        deadline = time.monotonic() + 30
        while True:
            running = [c for c in platform.tree() if c.is_running()]
            schedulers = [c for c in running if "entrypoints.cli.main scheduler" in " ".join(c.cmdline())]
            if schedulers:
                break
            assert time.monotonic() < deadline, [" ".join(c.cmdline()) for c in running]
            time.sleep(0.2)
        platform.process.send_signal(signal.SIGINT)
        assert platform.process.wait(timeout=60) == 0
        schedulers[0].wait(timeout=10)  # stopped with the platform
    finally:
        if platform.process.poll() is None:
            platform.process.kill()
