"""The node's associations run on `WakingDUL`: pynetdicom's loop, woken by events instead of sleeping."""

from __future__ import annotations

import inspect
import logging
import os
import re
import socket
import textwrap
import threading
import time

import pynetdicom
import pytest
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider

from adapters.dicom.reactor import WakingAssociation, WakingDUL
from adapters.dicom.scp import DicomNodeServer
from tests.adapters.test_scp import echo
from tests.peers import free_port

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/echoscu"), reason="dcmtk not installed")


def _body(function) -> list[str]:
    """The statements of a function: no signature, docstring, comments or blank lines."""
    source = textwrap.dedent(inspect.getsource(function))
    source = re.sub(r'"""(.|\n)*?"""', "", source)
    lines = [line.split("#", 1)[0].rstrip() for line in source.splitlines()[1:]]
    return [line for line in lines if line.strip()]


def test_the_copied_loop_is_the_installed_pynetdicom_loop_but_for_the_idle_wait():
    theirs = [line.replace("time.sleep(self._run_loop_delay)", "self._idle_wait()")
              for line in _body(DULServiceProvider.run_reactor)]
    assert _body(WakingDUL._run_reactor) == theirs, (
        f"pynetdicom {pynetdicom.__version__}'s DULServiceProvider.run_reactor changed: "
        "bring adapters/dicom/reactor.py up to date"
    )


def test_the_copied_association_loop_is_the_installed_one_but_for_the_wait():
    theirs = [line.replace("time.sleep(0.001)", "self._await_message()") for line in _body(Association._run_reactor)]
    look = ["context_id, msg = self.dimse.get_msg(block=False)", "if msg:", "self._serve_request(msg, cast(int, context_id))"]
    at = [line.strip() for line in theirs].index(look[0])
    assert [line.strip() for line in theirs[at:at + 3]] == look
    theirs[at:at + 3] = [theirs[at].replace(look[0], "self._serve_waiting()")]
    ours = [line.replace("ASSOC_LOGGER", "LOGGER") for line in _body(WakingAssociation._run_reactor)]
    assert ours == theirs, (
        f"pynetdicom {pynetdicom.__version__}'s Association._run_reactor changed: bring adapters/dicom/reactor.py up to date"
    )


@pytest.fixture()
def node():
    port = free_port()
    n = DicomNodeServer(aet="RELAIS", host="127.0.0.1", port=port, known_aets=lambda: {"RODEZ_GW"})
    n.ae.acse_timeout = 1
    stop = threading.Event()
    t = threading.Thread(target=n.serve, args=(stop,), daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while n.server is None and time.monotonic() < deadline:
        time.sleep(0.05)
    yield n, port
    stop.set()
    t.join(timeout=10)


def test_a_peer_that_connects_and_says_nothing_is_dropped_after_the_acse_timeout(node):
    _, port = node
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        t0 = time.monotonic()
        assert s.recv(1) == b""  # closed by the node (ARTIM timer of the association)
        assert time.monotonic() - t0 < 9


def test_associations_run_on_the_waking_dul_and_leave_no_descriptor_behind(node):
    n, port = node
    duls: list = []
    n.ae.acse_timeout = 30

    def count() -> int:
        return len(os.listdir("/proc/self/fd"))

    assert echo(port, "RODEZ_GW").returncode == 0  # threads and pools warmed up
    before = count()
    original = WakingDUL.__init__

    def spy(self, assoc):
        original(self, assoc)
        duls.append(self)

    WakingDUL.__init__ = spy
    try:
        for _ in range(15):
            assert echo(port, "RODEZ_GW").returncode == 0
    finally:
        WakingDUL.__init__ = original
    assert len(duls) == 15
    assert all(isinstance(d.assoc, WakingAssociation) for d in duls)
    deadline = time.monotonic() + 10
    while any(d.is_alive() for d in duls) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(d.is_alive() for d in duls)
    assert count() <= before + 2  # each association's wake-up pair is closed with it


def test_pynetdicom_reports_every_message_only_when_debugging(monkeypatch):
    from pynetdicom import _config

    from adapters.dicom.reactor import quiet_pynetdicom

    root = logging.getLogger()
    level = root.level
    monkeypatch.setattr(_config, "LOG_HANDLER_LEVEL", "standard")
    try:
        root.setLevel(logging.DEBUG)
        quiet_pynetdicom()
        assert _config.LOG_HANDLER_LEVEL == "standard"
        root.setLevel(logging.INFO)
        DicomNodeServer(aet="RELAIS", host="127.0.0.1", port=free_port(), known_aets=lambda: set())
        assert _config.LOG_HANDLER_LEVEL == "none"
    finally:
        root.setLevel(level)
