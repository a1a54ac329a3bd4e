"""The inbox's live stream: a committed change reaches the establishments concerned, named by real keys.

A real server (uvicorn in a thread): the test client buffers whole responses, an endless stream included.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from litestar import Litestar

from adapters.settings import Settings
from application import Relais
from projections.runner import catch_up
from tests.conftest import rpps
from tests.peers import free_port, wait_port
from tests.web.conftest import login


@pytest.fixture()
def served(app: Litestar) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_port(port)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    server.force_exit = True  # the open stream would keep it up to its lifetime
    thread.join(timeout=10)


def _dossier(relais: Relais, world: dict, name: str) -> str:
    return relais.create_dossier(
        actor_id=world["requester"], workflow="stroke_opinion", question="?", consent="given",
        patient_birth_name=name, patient_first_names="Anne", patient_birth_date="1960-01-01", patient_sex="F",
        patient_birth_place_code="31555",
    )


def test_a_sent_dossier_reaches_the_recipient_stream(served: str, passwords: dict, relais: Relais, settings: Settings):
    world, env = passwords, settings.eventsourcing_env()
    lines: queue.Queue[str] = queue.Queue()
    with httpx.Client(base_url=served, timeout=30) as client:
        assert login(client, rpps(2)).status_code == 303  # the recipient, at Montpellier
        with client.stream("GET", "/inbox/stream") as response:
            assert response.headers["content-type"].startswith("text/event-stream")

            def read() -> None:
                try:
                    for line in response.iter_lines():
                        lines.put(line)
                except httpx.HTTPError:
                    pass  # closed at the end of the test

            threading.Thread(target=read, daemon=True).start()

            def event() -> tuple[str, str]:
                name = ""
                while True:
                    line = lines.get(timeout=15)
                    if line.startswith("event: "):
                        name = line.removeprefix("event: ")
                    elif line.startswith("data: ") and name == "ping":  # the heartbeat, every few seconds
                        name = ""
                    elif line.startswith("data: ") and name:
                        return name, line.removeprefix("data: ")

            assert event()[0] == "ready"
            _dossier(relais, world, "Autre")
            catch_up("inbox", env, relais)  # a draft of Toulouse: not news for Montpellier
            did = _dossier(relais, world, "Dupont")
            relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"])
            relais.send_dossier(dossier_id=did, actor_id=world["requester"])
            catch_up("inbox", env, relais)
            name, data = event()
    assert name == "inbox" and json.loads(data) == {"dossier": did, "event": "Sent"}
