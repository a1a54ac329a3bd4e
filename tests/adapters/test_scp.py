"""The DICOM node answers C-ECHO to the directory's AE titles only (peer: dcmtk echoscu)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest

from adapters.dicom.scp import DicomNodeServer
from tests.peers import free_port

pytestmark = pytest.mark.skipif(shutil.which("echoscu") is None, reason="dcmtk not installed (scripts/system-packages.sh)")


@pytest.fixture()
def node():
    known = {"RODEZ_GW"}
    port = free_port()
    n = DicomNodeServer(aet="RELAIS", host="127.0.0.1", port=port, known_aets=lambda: set(known))
    stop = threading.Event()
    t = threading.Thread(target=n.serve, args=(stop,), daemon=True)
    t.start()
    yield n, port, known
    stop.set()
    t.join(timeout=10)


def echo(port: int, calling: str, called: str = "RELAIS") -> subprocess.CompletedProcess:
    env = dict(os.environ, TCP_NODELAY="1")
    return subprocess.run(
        ["echoscu", "-aet", calling, "-aec", called, "-to", "5", "127.0.0.1", str(port)],
        capture_output=True, text=True, env=env, timeout=30,
    )


def test_known_node_gets_an_echo(node):
    _, port, _ = node
    r = echo(port, "RODEZ_GW")
    assert r.returncode == 0, r.stderr


def test_unknown_ae_title_is_rejected(node):
    _, port, _ = node
    r = echo(port, "INTRUDER")
    assert r.returncode != 0
    assert "Rejected" in (r.stdout + r.stderr)


def test_nodes_added_later_are_accepted_after_refresh(node):
    n, port, known = node
    assert echo(port, "NEW_GW").returncode != 0
    known.add("NEW_GW")
    n._refresh()
    assert echo(port, "NEW_GW").returncode == 0


def test_empty_directory_rejects_everyone():
    port = free_port()
    n = DicomNodeServer(aet="RELAIS", host="127.0.0.1", port=port, known_aets=set)
    stop = threading.Event()
    t = threading.Thread(target=n.serve, args=(stop,), daemon=True)
    t.start()
    try:
        assert echo(port, "ANYONE").returncode != 0
    finally:
        stop.set()
        t.join(timeout=10)
