"""Fault suite fixtures: private PostgreSQL and Redis, a data folder on a small tmpfs, one `relais up` for the module."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.platform import Platform
from tests.faults.servers import PrivatePostgres, PrivateRedis

DATA_FS_BYTES = 256 * 1024 * 1024


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.slow)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: the fault suite (kills, restarts, disk full under load; real processes)")


@pytest.fixture(scope="package")
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres().init()
    yield server
    server.destroy()


@pytest.fixture(scope="package")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


class DataFolder:
    """The platform's data folder: a small tmpfs of its own when this process may mount one (a real
    ENOSPC can then be had by filling it), else a plain folder (`full` is None)."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="relais-faults-data-"))
        self.mounted = False
        if os.getuid() == 0 and shutil.which("mount"):
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DATA_FS_BYTES},mode=0755", "tmpfs", str(self.path)],
                                  capture_output=True, timeout=30)
            self.mounted = done.returncode == 0
            self.why_not = done.stderr.decode(errors="replace").strip()
        else:
            self.why_not = "not root: cannot mount a tmpfs"
        self.filler = self.path / "filler.bin"

    def fill(self, leave: int) -> None:
        """Fills the file system until only about `leave` bytes are free."""
        st = os.statvfs(self.path)
        free = st.f_bavail * st.f_frsize
        with self.filler.open("ab") as f:
            remaining = max(0, free - leave)
            block = b"\0" * (1024 * 1024)
            while remaining > 0:
                n = min(len(block), remaining)
                try:
                    f.write(block[:n])
                    f.flush()
                except OSError:
                    break
                remaining -= n

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def release(self) -> None:
        self.filler.unlink(missing_ok=True)

    def remove(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30)
        shutil.rmtree(self.path, ignore_errors=True)


@pytest.fixture(scope="package")
def data_folder() -> Iterator[DataFolder]:
    folder = DataFolder()
    yield folder
    folder.remove()


@pytest.fixture(scope="package")
def platform(postgres: PrivatePostgres, redis: PrivateRedis, data_folder: DataFolder) -> Iterator[Platform]:
    url = postgres.create_database("relais")
    running = Platform(url, redis.url, data_folder.path)
    took = running.start()
    print(f"\n[faults] relais up --demo ready in {took:.1f} s")
    yield running
    running.stop()
    log = Path(tempfile.gettempdir()) / "relais-faults-platform.log"
    log.write_text(running.output)
    print(f"\n[faults] the platform's output: {log}")
