"""`relais up` as a user starts it, on the fault suite's private servers, with what a fault needs:
the PIDs of its parts, a kill -9 of one part or of the whole tree, a start again."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil

from tests.faults.servers import wait_until
from tests.peers import free_port
from tests.processes import RelaisProcess

PARTS = {  # part → what its command line holds
    "web": "entrypoints.cli.main serve",
    "projections": "entrypoints.cli.main projections run",
    "worker": "entrypoints.cli.main worker",
    "dicom": "entrypoints.cli.main scp",
}
SECRET = "fault-suite-secret-key-0123456789abcdef"  # fixed: sessions (in Redis) outlive a web restart


class Platform:
    def __init__(self, database_url: str, redis_url: str, data_dir: Path):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
        self.env.update(
            RELAIS_DATABASE_URL=database_url, RELAIS_REDIS_URL=redis_url, RELAIS_DATA_DIR=str(data_dir),
            RELAIS_HTTP_PORT=str(free_port()), RELAIS_DICOM_PORT=str(free_port()), RELAIS_DICOM_WORKERS="1",
            RELAIS_SECRET_KEY=SECRET, RELAIS_LOG_LEVEL="INFO",
        )
        self.data_dir = data_dir
        self.base = f"http://127.0.0.1:{self.env['RELAIS_HTTP_PORT']}"
        self.dicom_port = int(self.env["RELAIS_DICOM_PORT"])
        self.process: RelaisProcess | None = None
        self.previous_output = ""

    def start(self, timeout: float = 120) -> float:
        """Starts `relais up --demo` and waits until it says it is ready; returns the seconds it took."""
        started = time.monotonic()
        process = self.process = RelaisProcess(["up", "--demo"], self.env)
        wait_until(lambda: "Relais est prêt" in process.output or process.process.poll() is not None,
                   timeout, "relais up ready", every=0.2)
        assert "Relais est prêt" in process.output, process.output[-5000:]
        return time.monotonic() - started

    @property
    def output(self) -> str:
        return self.previous_output + (self.process.output if self.process else "")

    def tree(self) -> list[psutil.Process]:
        assert self.process is not None
        root = psutil.Process(self.process.process.pid)
        return [root, *root.children(recursive=True)]

    def pid(self, part: str) -> int:
        """The PID of a running part (waits for it: the supervisor may be restarting it)."""
        def find() -> int | None:
            for p in self.tree()[1:]:
                try:
                    if PARTS[part] in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                        return p.pid
                except psutil.NoSuchProcess:
                    continue
            return None
        return wait_until(find, 60, f"a running {part} process")

    def kill_part(self, part: str) -> int:
        pid = self.pid(part)
        os.kill(pid, signal.SIGKILL)
        return pid

    def kill_tree(self) -> None:
        """kill -9 of `relais up` and every process under it, at once (no clean stop of anything)."""
        procs = self.tree()
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=30)
        assert self.process is not None
        self.process.process.wait(timeout=30)
        self.previous_output += self.process.output + "\n--- kill -9 of the whole tree ---\n"
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        procs = self.tree()
        self.process.process.send_signal(signal.SIGTERM)
        try:
            self.process.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pass
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)

    def ping_job(self, timeout: float) -> dict:
        """A `ping` job enqueued on the platform's Redis and run by its worker: its answer."""
        import uuid

        return _ping(self.env["RELAIS_REDIS_URL"], uuid.uuid4().hex, timeout)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/health", timeout=2) as r:  # noqa: S310 - loopback
                return r.status == 200
        except OSError:
            return False


def _ping(redis_url: str, token: str, timeout: float) -> dict:
    from adapters.jobs import ArqJobs

    jobs = ArqJobs(redis_url)
    try:
        job = jobs.enqueue("ping", job_id=f"ping:{token}", token=token)
        return jobs.result(job, timeout=timeout)
    finally:
        jobs.close()

