"""A recipient's timeline never shows a send that was never sent: who else the requester addressed
and did not send to (or removed) is the requester's business, like the send itself (`was_sent`)."""

from __future__ import annotations

from application import Relais
from domain.values import Role
from tests.conftest import rpps


def _send_ids_named(history) -> set[str]:
    named = set()
    for entry in history:
        data = entry.data
        for sid in [data.get("send_id"), (data.get("recipient") or {}).get("send_id"), *(data.get("send_ids") or [])]:
            if sid:
                named.add(str(sid))
    return named


def test_a_recipient_does_not_see_sends_never_sent(relais: Relais, world: dict, sent_dossier: dict):
    did = sent_dossier["dossier_id"]
    nimes = relais.add_establishment(finess="300780038", name="CHU de Nîmes", department="30")
    relais.add_practitioner(rpps=rpps(9), family_name="Roux", given_name="Léa", establishment_id=nimes, roles=["clinician"])
    unsent = relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=nimes)
    removed = relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["toulouse"])
    relais.remove_recipient(dossier_id=did, actor_id=world["requester"], send_id=removed)

    seen = relais.open_dossier(dossier_id=did, actor_id=world["recipient"], establishment_id=world["montpellier"],
                               role=Role.CLINICIAN)
    named = _send_ids_named(seen.history)
    assert sent_dossier["send_id"] in named
    assert unsent not in named and removed not in named

    mine = relais.open_dossier(dossier_id=did, actor_id=world["requester"], establishment_id=world["toulouse"], role=Role.CLINICIAN)
    assert {unsent, removed} <= _send_ids_named(mine.history)  # the requester sees all of it
    audit = relais.open_dossier(dossier_id=did, actor_id=world["auditor"], establishment_id=world["toulouse"], role=Role.AUDITOR)
    assert {unsent, removed} <= _send_ids_named(audit.history)  # and so does the auditor
