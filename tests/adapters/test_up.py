"""`relais up`: every process starts, demo logins print, one database is shared, all stop cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from adapters.demo import DEMO_PASSWORD, USERS
from tests.peers import free_port
from tests.processes import RELAIS, RelaisProcess

pytestmark = pytest.mark.slow

class Platform(RelaisProcess):
    """A `relais up` process whose output is collected in the background."""

    def __init__(self, env: dict[str, str], *args: str):
        super().__init__(["up", *args], env)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"« {text} » not printed; output:\n{self.output}")

    def tree(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)


def postmaster_pid(data_dir: Path) -> int | None:
    pidfile = data_dir / "postgres" / "postmaster.pid"
    if not pidfile.exists():
        return None
    return int(pidfile.read_text().splitlines()[0])


def echo(port: int, calling: str) -> int:
    return subprocess.run(
        ["echoscu", "-aet", calling, "-aec", "RELAIS", "-to", "5", "127.0.0.1", str(port)],
        capture_output=True, env=dict(os.environ, TCP_NODELAY="1"), timeout=30,
    ).returncode


@pytest.fixture()
def env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    env.update(
        RELAIS_DATA_DIR=str(tmp_path / "var"), RELAIS_HTTP_PORT=str(free_port()), RELAIS_DICOM_PORT=str(free_port()),
    )
    return env


def test_up_demo_runs_every_part_and_stops_cleanly(env):
    data_dir = Path(env["RELAIS_DATA_DIR"])
    platform = Platform(env, "--demo")
    try:
        platform.wait_for("Relais est prêt", timeout=180)
        platform.wait_for("Ctrl-C", timeout=10)
        out = platform.output
        assert DEMO_PASSWORD in out
        for user in USERS:
            assert user.rpps in out

        with urllib.request.urlopen(f"http://127.0.0.1:{env['RELAIS_HTTP_PORT']}/health", timeout=5) as r:
            health = json.load(r)
        assert r.status == 200 and health["status"] == "ok" and health["database"] == "ok"
        assert "directory" in {p["name"] for p in health["projections"]}

        children = platform.tree()
        commands = [" ".join(c.cmdline()) for c in children if c.is_running()]
        for part in ("entrypoints.cli.main serve", "entrypoints.cli.main scp", "entrypoints.cli.main projections run"):
            assert any(part in c for c in commands), commands
        server = postmaster_pid(data_dir)
        assert server and psutil.pid_exists(server)

        if shutil.which("echoscu"):
            deadline = time.monotonic() + 30
            while echo(int(env["RELAIS_DICOM_PORT"]), "RODEZ_GW") != 0:
                assert time.monotonic() < deadline, "demo gateway never accepted"
                time.sleep(0.5)
            assert echo(int(env["RELAIS_DICOM_PORT"]), "UNKNOWN_AE") != 0

        # Another command while `up` runs joins the same embedded server, and leaves it running.
        listing = subprocess.run([RELAIS, "directory", "list"], env=env, capture_output=True, text=True, timeout=120)
        assert listing.returncode == 0, listing.stderr
        assert "CHU de Toulouse" in listing.stdout and "RODEZ_GW" in listing.stdout
        assert postmaster_pid(data_dir) == server and psutil.pid_exists(server)
        servers = [p for p in psutil.process_iter(["cmdline"])
                   if str(data_dir / "postgres") in " ".join(p.info["cmdline"] or []) and "-D" in (p.info["cmdline"] or [])]
        assert len(servers) <= 1

        platform.process.send_signal(signal.SIGINT)
        assert platform.process.wait(timeout=60) == 0
    finally:
        if platform.process.poll() is None:
            platform.process.kill()
    time.sleep(0.5)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [c.cmdline() for c in alive]
    assert not psutil.pid_exists(server) or psutil.Process(server).status() == psutil.STATUS_ZOMBIE
    assert "Relais arrêté." in platform.output
    # The embedded server was stopped cleanly, not killed (run as root it runs as its own user, which
    # must still reach its cluster folder through the private data folder: 0710, its group only).
    assert "Failed to stop server" not in platform.output, platform.output[-3000:]
    assert stat.S_IMODE(data_dir.stat().st_mode) & 0o077 in (0, stat.S_IXGRP)

    # Second start on the existing data folder, with Redis: the arq worker joins the tree;
    # no demo reload needed; SIGTERM stops it too.
    redis_env = dict(env, RELAIS_REDIS_URL=os.environ.get("RELAIS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    again = Platform(redis_env)
    try:
        again.wait_for("Relais est prêt", timeout=120)
        assert DEMO_PASSWORD not in again.output
        assert "arq sur Redis" in again.output
        children = again.tree()
        deadline = time.monotonic() + 30
        while not any("entrypoints.cli.main worker" in " ".join(c.cmdline()) for c in again.tree() if c.is_running()):
            assert time.monotonic() < deadline, "no worker process"
            time.sleep(0.2)
        children = again.tree()
        again.process.send_signal(signal.SIGTERM)
        assert again.process.wait(timeout=60) == 0
    finally:
        if again.process.poll() is None:
            again.process.kill()
    time.sleep(0.5)
    assert [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
    assert postmaster_pid(data_dir) is None or not psutil.pid_exists(postmaster_pid(data_dir))


def test_up_with_a_busy_http_port_fails_clearly(env):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(env["RELAIS_HTTP_PORT"])))
        blocker.listen()
        platform = Platform(env)
        try:
            code = platform.process.wait(timeout=240)
        finally:
            if platform.process.poll() is None:
                platform.process.kill()
    assert code != 0
    assert f"port HTTP 127.0.0.1:{env['RELAIS_HTTP_PORT']} est déjà utilisé" in platform.output, platform.output
    assert "prêt" not in platform.output
