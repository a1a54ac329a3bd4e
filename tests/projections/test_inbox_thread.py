"""Inbox rows after sending: a message of a send's thread is news for the other side, a complement answered
with a document, an imaging transfer's receipt answering its send and closing the dossier; a rebuild agrees."""

from __future__ import annotations

import pytest

from adapters.settings import Settings
from application import Relais
from projections.inbox_queries import Filters, Scope
from projections.runner import catch_up, open_view, rebuild
from tests.conftest import PATIENT


@pytest.fixture()
def env(settings: Settings) -> dict:
    return settings.eventsourcing_env()


@pytest.fixture()
def inbox(env: dict):
    view = open_view("inbox", env)
    yield view
    view.datastore.close()


def settle(relais: Relais, env: dict) -> None:
    for name in ("directory", "inbox", "access"):
        catch_up(name, env, relais)


def scope(world: dict, who: str) -> Scope:
    if who == "recipient":
        return Scope(practitioner_id=world[who], establishment_id=world["montpellier"], service_ids=(world["neuro"],))
    return Scope(practitioner_id=world[who], establishment_id=world["toulouse"])


def received(inbox, world: dict, tab: str = "received"):
    (row,) = inbox.page(scope(world, "recipient"), tab, Filters()).rows
    return row


def sent_row(inbox, world: dict, tab: str = "sent"):
    (row,) = inbox.page(scope(world, "requester"), tab, Filters()).rows
    return row


def test_a_message_is_news_for_the_other_side_only(relais, world, sent_dossier, env, inbox):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.open_dossier(dossier_id=did, actor_id=world["recipient"])
    relais.open_dossier(dossier_id=did, actor_id=world["requester"])
    settle(relais, env)
    assert not received(inbox, world).unread and not sent_row(inbox, world).unread
    relais.post_message(dossier_id=did, actor_id=world["requester"], send_id=sid, message="Le patient s'aggrave")
    settle(relais, env)
    assert received(inbox, world).unread and received(inbox, world).state == "requested"
    assert not sent_row(inbox, world).unread  # my own message
    relais.open_dossier(dossier_id=did, actor_id=world["recipient"])
    relais.post_message(dossier_id=did, actor_id=world["recipient"], send_id=sid, message="Je regarde")
    settle(relais, env)
    assert not received(inbox, world).unread and sent_row(inbox, world).unread


def test_a_complement_answered_with_a_document_puts_the_send_back_in_progress(relais, world, sent_dossier, env, inbox):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=sid)
    relais.request_complement(dossier_id=did, actor_id=world["recipient"], send_id=sid, message="Le scanner ?")
    settle(relais, env)
    assert received(inbox, world).state == "on_hold" and received(inbox, world).documents == 0
    doc = relais.attach_document(dossier_id=did, actor_id=world["requester"], filename="scanner.pdf",
                                 media_type="application/pdf", size=10, sha256="a" * 64)
    relais.answer_complement(dossier_id=did, actor_id=world["requester"], send_id=sid, document_ids=[doc])
    settle(relais, env)
    row = received(inbox, world)
    assert row.state == "in_progress" and row.documents == 1 and row.unread


def test_an_imaging_transfer_receipt_answers_the_send_and_closes_the_rows(relais, world, env, inbox):
    did = relais.create_dossier(actor_id=world["requester"], workflow="imaging_transfer", question="Pour suite de soins",
                                consent="given", imaging_source="none", **PATIENT)
    sid = relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"],
                                   service_id=world["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=world["requester"])
    settle(relais, env)
    assert received(inbox, world).state == "requested"
    relais.acknowledge_receipt(dossier_id=did, actor_id=world["recipient"], send_id=sid, note="Importé au PACS")
    settle(relais, env)
    assert inbox.page(scope(world, "recipient"), "received", Filters()).rows == []
    assert received(inbox, world, "closed").state == "closed"
    requester = sent_row(inbox, world, "closed")
    assert requester.state == "closed" and requester.unread  # the receipt is news for the requester
    (send,) = inbox.query("SELECT state, answered_on FROM inbox_sends WHERE send_id = %s", (sid,))
    assert send["state"] == "answered" and send["answered_on"] is not None
    # the same rows from zero
    rebuild("inbox", env, relais)
    assert received(inbox, world, "closed").state == "closed" and sent_row(inbox, world, "closed").state == "closed"
    assert inbox.query("SELECT state FROM inbox_sends WHERE send_id = %s", (sid,))[0]["state"] == "answered"
