"""Real DICOM peers for tests and benchmarks: Orthanc (the PACS) and dcmtk storescp, on loopback ports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ORTHANC = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
PEER_ENV = dict(os.environ, TCP_NODELAY="1")  # Debian's dcmtk (tools and Orthanc) keeps Nagle on otherwise


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    """Ends a process we started: SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # pragma: no cover - a peer that ignores SIGTERM
        proc.kill()
        proc.wait()


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class Orthanc:
    """An Orthanc server (Debian package) in a temp folder: its JSON config names our node as a modality."""

    def __init__(self, folder: Path, *, aet: str = "ORTHANC", modalities: dict[str, tuple[str, int]] | None = None,
                 md5: bool = True):
        self.folder = Path(folder)
        self.aet = aet
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.modalities = modalities or {}
        self.md5 = md5
        self.proc: subprocess.Popen | None = None

    def config(self) -> dict:
        return {
            "Name": "relais-test", "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"), "HttpPort": self.http_port, "DicomPort": self.dicom_port,
            "DicomAet": self.aet, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "HttpServerEnabled": True, "DicomServerEnabled": True, "StorageCompression": False,
            "StoreMD5ForAttachments": self.md5, "DicomCheckCalledAet": False, "DicomCheckModalityHost": False,
            "UnknownSopClassAccepted": True, "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True, "DicomAlwaysAllowMove": True, "DicomAlwaysAllowGet": True,
            "DicomModalities": {
                name.lower(): {"AET": a, "Host": h, "Port": p, "AllowGet": True, "AllowMove": True,
                               "AllowFind": True, "AllowStore": True, "AllowEcho": True}
                for name, (a, h, p) in ((k, (k, *v)) for k, v in self.modalities.items())
            },
            "DicomScpTimeout": 30, "Plugins": [], "SaveJobs": False, "LimitFindResults": 0,
            "LimitFindInstances": 0, "ConcurrentJobs": 2, "HttpVerbose": False,
        }

    def start(self) -> Orthanc:
        self.folder.mkdir(parents=True, exist_ok=True)
        cfg = self.folder / "orthanc.json"
        cfg.write_text(json.dumps(self.config()))
        log = (self.folder / "orthanc.log").open("wb")
        self.proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=PEER_ENV)
        wait_port(self.http_port, 60, self.proc)
        wait_port(self.dicom_port, 60, self.proc)
        return self

    def stop(self) -> None:
        stop(self.proc)

    def rest(self, path: str, data: bytes | None = None, method: str | None = None) -> object:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
        return json.loads(body) if body else None

    def upload(self, paths: list[Path]) -> None:
        for p in paths:
            self.rest("/instances", p.read_bytes(), "POST")

    def instance_count(self) -> int:
        return int(self.rest("/statistics")["CountInstances"])  # type: ignore[index]

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StoreSCP:
    """dcmtk storescp writing every instance to a folder."""

    def __init__(self, folder: Path, aet: str = "STORESCP"):
        self.folder = Path(folder)
        self.aet = aet
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> StoreSCP:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["storescp", "-aet", self.aet, "-od", str(self.folder), "+xa", "-pm", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=PEER_ENV,
        )
        wait_port(self.port, 20, self.proc)
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc, timeout=10)
