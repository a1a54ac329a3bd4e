"""A steady C-STORE load with dcmtk `storescu` and what must hold after a fault of the DICOM node:
every instance storescu was answered Success for is on disk byte-identical (its data set as sent)
and recorded exactly once. Shared by the fault suite and tests/adapters/test_dicom_workers.py."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread

from domain.imaging import received_study_id

STATUS = re.compile(r"Received Store Response \(([^)]*)\)")


def without_trailing_padding(files: list[Path]) -> None:
    """Rewrites test files without their Data Set Trailing Padding (FFFC,FFFC), which dcmtk drops
    when it sends: what is sent is then the file's data set byte for byte."""
    for f in files:
        ds = dcmread(f)
        if 0xFFFCFFFC in ds:
            del ds[0xFFFCFFFC]
            ds.save_as(f, enforce_file_format=True)


def data_set_bytes(path: Path) -> bytes:
    """A Part 10 file's data set as encoded (what follows the File Meta Information group): what the
    node stores as received, behind a file meta group of its own."""
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM" and raw[132:136] == b"\x02\x00\x00\x00", path
    return raw[144 + int.from_bytes(raw[140:144], "little"):]


def recorded_times(app, establishment_id: str, study_uid: str) -> Counter[str]:  # type: ignore[no-untyped-def]
    """How many times each SOP Instance UID is in the study's events (exactly once expected)."""
    sid = received_study_id(establishment_id, study_uid)
    seen: Counter[str] = Counter()
    if sid in app.repository:
        for e in app.repository.event_store.get(sid):
            for i in getattr(e, "instances", None) or []:
                seen[i["sop"]] += 1
    return seen


class Sender:
    """dcmtk `storescu -v` sending files over one association; `acked` are the files the node
    answered Success for and `statuses` every status it answered, read from storescu's output as it comes."""

    def __init__(self, port: int, files: list[Path], calling: str, env: dict[str, str] | None = None,
                 on_status: Callable[[Path | None, str], None] | None = None):
        self.on_status = on_status
        self.proc = subprocess.Popen(
            ["storescu", "-v", "-aet", calling, "-aec", "RELAIS", "-to", "20", "-ta", "20", "-td", "20",
             "127.0.0.1", str(port), *map(str, files)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env if env is not None else dict(os.environ, TCP_NODELAY="1"),
        )
        self.acked: list[Path] = []
        self.statuses: list[str] = []
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        current: Path | None = None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "Sending file: " in line:
                current = Path(line.split("Sending file: ", 1)[1].strip())
            elif (status := STATUS.search(line)) is not None:
                self.statuses.append(status.group(1))
                if status.group(1) == "Success" and current is not None:
                    self.acked.append(current)
                if self.on_status is not None:
                    self.on_status(current, status.group(1))
                current = None

    def wait_acked(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline and self._reader.is_alive():
            time.sleep(0.005)
        assert len(self.acked) >= count, "".join(self.lines[-30:])

    def end(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(30)
        return code


class StoreLoad:
    """storescu in a loop, `per_association` files an association, until `stop()` or every file is
    acknowledged: a file not answered Success is sent again in a later association, as a gateway
    does. `acked` maps each acknowledged file to when its Success came (time.monotonic())."""

    def __init__(self, port: int, files: list[Path], calling: str, *, per_association: int = 5, pause: float = 0.05):
        self.port, self.files, self.calling = port, list(files), calling
        self.per_association, self.pause = per_association, pause
        self.acked: dict[Path, float] = {}
        self.statuses: Counter[str] = Counter()
        self.failures: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True, name="storescu-load")

    def start(self) -> StoreLoad:
        self.thread.start()
        return self

    def _run(self) -> None:
        pending = list(self.files)
        while pending and not self._stop.is_set():
            batch, pending = pending[:self.per_association], pending[self.per_association:]
            sender = Sender(self.port, batch, self.calling, on_status=self._answered)
            try:
                code = sender.end(timeout=90)
            except subprocess.TimeoutExpired:
                sender.proc.kill()
                code = sender.end()
            if code != 0 or len(sender.acked) < len(batch):
                with self._lock:
                    self.failures.append((time.monotonic(), "".join(sender.lines[-5:])))
            pending += [f for f in batch if f not in sender.acked]  # sent again later
            self._stop.wait(self.pause if code == 0 else 0.25)

    def _answered(self, path: Path | None, status: str) -> None:
        with self._lock:
            self.statuses[status] += 1
            if status == "Success" and path is not None:
                self.acked.setdefault(path, time.monotonic())

    def count(self, after: float = 0.0) -> int:
        with self._lock:
            return sum(1 for t in self.acked.values() if t >= after)

    def wait_acked(self, count: int, after: float = 0.0, timeout: float = 120) -> float:
        """Waits until `count` files were acknowledged after `after`; returns when the last of them was."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.thread.is_alive():
            with self._lock:
                times = sorted(t for t in self.acked.values() if t >= after)
            if len(times) >= count:
                return times[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"{count} acknowledgements after the fault not seen in {timeout:.0f} s; "
                             f"statuses {dict(self.statuses)}, last failures: {self.failures[-3:]}")

    def stop(self, timeout: float = 150) -> dict[Path, float]:
        self._stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the storescu load is still running"
        return dict(self.acked)
