"""Commands from the web act exactly as the session's practitioner, establishment and role."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from uuid import UUID

from litestar.testing import TestClient

from application import Relais
from tests.conftest import rpps
from tests.web.conftest import csrf_from, login

HX = {"HX-Request": "true"}
ROOT = Path(__file__).resolve().parents[2]


def switch(client: TestClient, establishment_id: str, role: str) -> None:
    answer = client.post("/context", data={"context": f"{establishment_id}|{role}", "_csrf_token": csrf_from(client.get("/").text)},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text


def post_action(client: TestClient, relais: Relais, did: str, action: str, reader: str, **data):
    version = relais.get_dossier(dossier_id=did, actor_id=reader, role="auditor").version
    form = {"expected_version": str(version), "_csrf_token": csrf_from(client.get("/").text)} | data
    return client.post(f"/dossiers/{did}/actions/{action}", data=form, headers=HX)


def test_a_command_in_the_auditor_context_is_refused_and_traced(client, passwords, relais, sent_dossier, settle):
    """A practitioner holding clinician and auditor roles, switched to auditor, cannot accept or decline."""
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.set_membership(practitioner_id=passwords["recipient"], establishment_id=passwords["montpellier"],
                          roles=["clinician", "auditor"], service_ids=[passwords["neuro"]])
    login(client, rpps(2))
    switch(client, passwords["montpellier"], "auditor")
    before = relais.get_dossier(dossier_id=did, actor_id=passwords["auditor"], role="auditor").version
    for action, extra in (("accept", {}), ("decline", {"reason_code": "other", "reason": "Pas pour nous"})):
        refused = post_action(client, relais, did, action, passwords["auditor"], send_id=sid, **extra)
        assert refused.status_code == 403, refused.text
        assert "auditeur" in refused.text and "ne permet pas" in refused.text
    assert relais.get_dossier(dossier_id=did, actor_id=passwords["auditor"], role="auditor").version == before
    settle()
    denied = [(a.kind, a.target, a.role) for a in client.app.state.services.access_log.for_dossier(did) if a.outcome == "denied"]
    assert ("command", "accept", "auditor") in denied and ("command", "decline", "auditor") in denied
    # back in the clinician context, the same command is recorded, as clinician of Montpellier
    switch(client, passwords["montpellier"], "clinician")
    assert post_action(client, relais, did, "accept", passwords["auditor"], send_id=sid).status_code == 200
    last = list(relais.core.events_of(UUID(did)))[-1]
    assert (last.actor["role"], last.actor["establishment_id"]) == ("clinician", passwords["montpellier"])


def test_a_command_acts_for_the_sessions_establishment_not_a_guessed_one(client, passwords, relais, sent_dossier):
    """A clinician of Montpellier (the recipient) who also practises at Toulouse (the requester), acting for
    Montpellier, may not cancel the dossier as if they acted for Toulouse."""
    did = sent_dossier["dossier_id"]
    relais.set_membership(practitioner_id=passwords["recipient"], establishment_id=passwords["toulouse"], roles=["clinician"])
    login(client, rpps(2))
    switch(client, passwords["montpellier"], "clinician")
    before = relais.get_dossier(dossier_id=did, actor_id=passwords["auditor"], role="auditor").version
    refused = post_action(client, relais, did, "cancel", passwords["auditor"], reason="Erreur de patient")
    assert refused.status_code == 403, refused.text
    assert relais.get_dossier(dossier_id=did, actor_id=passwords["auditor"], role="auditor").version == before
    switch(client, passwords["toulouse"], "clinician")  # acting for Toulouse, they may
    assert post_action(client, relais, did, "cancel", passwords["auditor"], reason="Erreur de patient").status_code == 200
    assert list(relais.core.events_of(UUID(did)))[-1].actor["establishment_id"] == passwords["toulouse"]


def _is_acting(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "acting"


def _commands() -> set[str]:
    """The facade's methods that change a dossier for a user (they take actor_id and the version read),
    and those that check a user may act on a dossier before a command (imaging pickers, PACS)."""
    names = {"create_dossier", "requester_actor", "pacs_for"}
    for name, member in inspect.getmembers(Relais, inspect.isfunction):
        params = inspect.signature(member).parameters
        if "actor_id" in params and "expected_version" in params:
            names.add(name)
    return names


def test_every_command_from_the_web_passes_the_sessions_acting():
    """Read from the source: a command called from web/ is given `actor_id=<user>.acting(...)`, never a bare
    practitioner id (which would act as a clinician of a guessed establishment)."""
    commands = _commands()
    assert {"accept", "decline", "attach_document", "attach_received_study", "send_dossier"} <= commands
    seen, wrong = 0, []
    for path in sorted((ROOT / "web").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in commands):
                continue
            seen += 1
            values = {k.arg: k.value for k in node.keywords}
            spread = [k.value for k in node.keywords if k.arg is None]  # **common: checked where it is built
            actor = values.get("actor_id")
            if not (_is_acting(actor) or (actor is None and spread)):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.attr}")
        for node in ast.walk(tree):  # the dicts spread into commands (CommandArgs, DraftActor) hold acting() too
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "actor_id":
                        seen += 1
                        if not _is_acting(value):
                            wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} actor_id in a dict")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("DraftActor", "CommandArgs"):
                for k in node.keywords:
                    if k.arg == "actor_id":
                        seen += 1
                        if not _is_acting(k.value):
                            wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.id}")
    assert seen > 10
    assert wrong == []
