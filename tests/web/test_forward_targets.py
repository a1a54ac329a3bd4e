"""The forward form's directory search is scoped like every other dossier URL."""

from __future__ import annotations

import re
import uuid

from litestar.testing import TestClient

from tests.conftest import rpps
from tests.web.conftest import csrf_from, login

HX = {"HX-Request": "true"}


def targets(client: TestClient, did: str, send_id: str = ""):
    return client.get(f"/dossiers/{did}/forward-targets", params={"q": "CHU", "send_id": send_id}, headers=HX)


def accept(client: TestClient, did: str, sid: str) -> None:
    page = client.get(f"/dossiers/{did}")
    version = re.search(r'id="dossier-version" value="(\d+)"', page.text).group(1)
    answer = client.post(f"/dossiers/{did}/actions/accept", headers=HX,
                         data={"expected_version": version, "send_id": sid, "_csrf_token": csrf_from(page.text)})
    assert answer.status_code == 200


def test_forward_targets_answer_only_who_may_forward_a_send_of_that_dossier(client, passwords, relais, sent_dossier, settle):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    settle()
    client.app.state.services.names.refresh(force=True)
    login(client, rpps(2))  # the recipient
    assert targets(client, str(uuid.uuid4()), sid).status_code == 404  # no such dossier
    assert targets(client, "not-a-uuid", sid).status_code == 404
    accept(client, did, sid)
    found = targets(client, did, sid)
    assert found.status_code == 200 and "CHU de Toulouse" in found.text
    assert targets(client, did).status_code == 200  # a send they may forward, none named
    assert targets(client, did, "another-send").status_code == 403
    client.post("/logout", data={"_csrf_token": csrf_from(client.get("/").text)})
    login(client, rpps(3))  # a clinician of Montpellier outside the neuroradiology service: a foreign dossier
    assert targets(client, did, sid).status_code == 403
    client.post("/logout", data={"_csrf_token": csrf_from(client.get("/").text)})
    login(client, rpps(1))  # the requester reads the dossier but forwards nothing
    assert targets(client, did, sid).status_code == 403
    settle()
    denied = [(a.practitioner_id, a.kind, a.target) for a in client.app.state.services.access_log.for_dossier(did)
              if a.outcome == "denied"]
    assert (passwords["outsider"], "command", "forward-targets") in denied
    assert (passwords["requester"], "command", "forward-targets") in denied
