"""`relais up` does not lie about its ports: a busy HTTP or DICOM port stops it at once with a message
naming the port, and « Relais est prêt » is printed only when the /health that answers is its own
web process's."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adapters import supervisor as sup
from tests.peers import free_port
from tests.processes import RelaisProcess


class Impostor(BaseHTTPRequestHandler):
    """Someone else's server: answers /health 200 as a healthy Relais would, with a pid of its own."""

    pid = 1

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"status": "ok", "database": "ok", "pid": self.pid}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def impostor(port: int, pid: int = 1) -> Iterator[str]:
    handler = type("Handler", (Impostor,), {"pid": pid})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    env.update(RELAIS_DATA_DIR=str(tmp_path / "var"), RELAIS_HTTP_PORT=str(free_port()), RELAIS_DICOM_PORT=str(free_port()))
    return env


def test_up_refuses_an_http_port_where_another_server_answers_health(env):
    port = int(env["RELAIS_HTTP_PORT"])
    with impostor(port):
        up = RelaisProcess(["up"], env)
        try:
            code = up.process.wait(timeout=120)
        finally:
            if up.process.poll() is None:
                up.process.kill()
                up.process.wait()
    assert code != 0, up.output
    assert "prêt" not in up.output
    assert f"port HTTP 127.0.0.1:{port} est déjà utilisé" in up.output, up.output


def test_up_refuses_a_busy_dicom_port(env):
    port = int(env["RELAIS_DICOM_PORT"])
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        up = RelaisProcess(["up"], env)
        try:
            code = up.process.wait(timeout=120)
        finally:
            if up.process.poll() is None:
                up.process.kill()
                up.process.wait()
    assert code != 0, up.output
    assert "prêt" not in up.output
    assert f"port DICOM 127.0.0.1:{port} est déjà utilisé" in up.output, up.output


def test_a_health_that_answers_is_ours_only_with_our_web_process_pid():
    """The port taken after the check (a race): a foreign /health answering 200 is not our web process."""
    port = free_port()
    stop = threading.Event()
    with impostor(port, pid=4242) as url:
        assert not sup.wait_healthy(url + "/health", timeout=1.5, stop=stop, pid=lambda: 1234)
        assert sup.wait_healthy(url + "/health", timeout=5, stop=stop, pid=lambda: 4242)


def test_free_ports_pass_the_check_and_busy_ones_are_named():
    free = free_port()
    sup.check_ports([("HTTP", "127.0.0.1", free, "RELAIS_HTTP_PORT")])  # nothing raised
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        with pytest.raises(sup.PortUnavailableError) as e:
            sup.check_ports([("HTTP", "127.0.0.1", free, "RELAIS_HTTP_PORT"), ("DICOM", "127.0.0.1", busy, "RELAIS_DICOM_PORT")])
    assert str(e.value) == (f"le port DICOM 127.0.0.1:{busy} est déjà utilisé par un autre programme : "
                            "arrêtez-le ou choisissez un autre port (RELAIS_DICOM_PORT)")
