"""Inbox and access projections: rows per tab, filters, unread markers, notify, exactly once, rebuild."""

from __future__ import annotations

import json
from datetime import date

import psycopg
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
def views(env: dict):
    inbox, access = open_view("inbox", env), open_view("access", env)
    yield inbox, access
    inbox.datastore.close()
    access.datastore.close()


def settle(relais: Relais, env: dict, *names: str) -> None:
    for name in names or ("directory", "inbox", "access"):
        catch_up(name, env, relais)


def scope(world: dict, who: str) -> Scope:
    services = (world["neuro"],) if who == "recipient" else ()
    est = world["toulouse"] if who in ("requester", "auditor") else world["montpellier"]
    return Scope(practitioner_id=world[who], establishment_id=est, service_ids=services)


def test_sent_dossier_is_in_the_recipient_received_tab_and_the_requester_sent_tab(relais, world, sent_dossier, env, views):
    settle(relais, env)
    inbox, _ = views
    received = inbox.page(scope(world, "recipient"), "received", Filters())
    (row,) = received.rows
    assert row.dossier_id == sent_dossier["dossier_id"] and row.send_id == sent_dossier["send_id"]
    assert row.state == "requested" and row.urgency == "stat" and row.workflow == "stroke_opinion"
    assert row.birth_name == "DUPONT" and row.birth_date == date(1950, 3, 2) and row.sex == "F"
    assert row.counterpart == "CHU de Toulouse" and row.counterpart_detail == "Claire MARTIN"
    assert row.unread
    (sent,) = inbox.page(scope(world, "requester"), "sent", Filters()).rows
    assert sent.counterpart == "CHU de Montpellier" and sent.counterpart_detail == "Neuroradiologie"
    assert not sent.unread  # the requester made the last change
    # the outsider (same establishment, not in the service) sees nothing
    assert inbox.page(scope(world, "outsider"), "received", Filters()).rows == []
    counts = inbox.counts(scope(world, "recipient"))
    assert counts == {"received": 1, "sent": 0, "drafts": 0, "closed": 0, "unread": 1}


def test_reading_clears_unread_and_actions_move_rows_between_tabs(relais, world, sent_dossier, env, views):
    inbox, access = views
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.open_dossier(dossier_id=did, actor_id=world["recipient"])
    settle(relais, env)
    assert not inbox.page(scope(world, "recipient"), "received", Filters()).rows[0].unread
    relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=sid)
    relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=sid, report="Oui.", conclusion="Thrombectomie")
    settle(relais, env)
    (row,) = inbox.page(scope(world, "recipient"), "received", Filters(state="answered")).rows
    assert row.state == "answered"
    (sent,) = inbox.page(scope(world, "requester"), "sent", Filters()).rows
    assert sent.state == "answered" and sent.unread  # the answer is news for the requester
    relais.close_dossier(dossier_id=did, actor_id=world["requester"])
    settle(relais, env)
    assert inbox.page(scope(world, "recipient"), "received", Filters()).rows == []
    assert [r.state for r in inbox.page(scope(world, "recipient"), "closed", Filters()).rows] == ["closed"]
    assert [r.state for r in inbox.page(scope(world, "requester"), "closed", Filters()).rows] == ["closed"]
    log = access.for_dossier(did)
    assert [(a.kind, a.outcome, a.practitioner_id) for a in log] == [("dossier", "granted", world["recipient"])]


def test_filters_search_and_keyset_pages(relais, world, env, views):
    inbox, _ = views
    ids = []
    for i, name in enumerate(["Dupont", "Durand", "Éloïse", "Martin", "Müller"]):
        did = relais.create_dossier(
            actor_id=world["requester"], workflow="generic_opinion" if i % 2 else "stroke_opinion", question="?",
            urgency="urgent" if i == 1 else "routine", consent="given",
            **dict(PATIENT, patient_birth_name=name),
        )
        ids.append(did)
    settle(relais, env)
    me = scope(world, "requester")
    assert len(inbox.page(me, "drafts", Filters()).rows) == 5
    assert [r.birth_name for r in inbox.page(me, "drafts", Filters(q="eloise")).rows] == ["ÉLOÏSE"]
    assert [r.birth_name for r in inbox.page(me, "drafts", Filters(q="mull")).rows] == ["MÜLLER"]
    assert len(inbox.page(me, "drafts", Filters(workflow="stroke_opinion")).rows) == 3
    assert [r.birth_name for r in inbox.page(me, "drafts", Filters(urgency="urgent")).rows] == ["DURAND"]
    from domain.dossier import dossier_number

    number = dossier_number(__import__("uuid").UUID(ids[3]))
    assert [r.dossier_id for r in inbox.page(me, "drafts", Filters(q=number.lower())).rows] == [ids[3]]
    first = inbox.page(me, "drafts", Filters(), limit=2)
    second = inbox.page(me, "drafts", Filters(), cursor=first.next_cursor, limit=2)
    third = inbox.page(me, "drafts", Filters(), cursor=second.next_cursor, limit=2)
    seen = [r.dossier_id for r in first.rows + second.rows + third.rows]
    assert sorted(seen) == sorted(ids) and third.next_cursor is None
    assert inbox.page(scope(world, "outsider"), "drafts", Filters()).rows == []


def test_each_change_is_notified_after_commit_with_the_establishments_concerned(relais, world, settings, env):
    with psycopg.connect(settings.database_url, autocommit=True) as listener:
        listener.execute("LISTEN relais_inbox")
        did = relais.create_dossier(actor_id=world["requester"], workflow="stroke_opinion", question="?", consent="given", **PATIENT)
        relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"])
        relais.send_dossier(dossier_id=did, actor_id=world["requester"])
        settle(relais, env, "inbox")
        payloads = [json.loads(n.payload) for n in listener.notifies(timeout=1.0, stop_after=3)]
    assert [p["t"] for p in payloads] == ["Created", "RecipientAddressed", "Sent"]
    assert world["montpellier"] in payloads[-1]["e"] and world["toulouse"] in payloads[-1]["e"]
    assert world["montpellier"] not in payloads[0]["e"]


def test_rebuild_gives_the_same_rows_and_events_are_applied_once(relais, world, sent_dossier, env, views):
    inbox, _ = views
    settle(relais, env)
    before = inbox.query("SELECT * FROM inbox_dossiers ORDER BY id")
    settle(relais, env)  # nothing new: nothing applied twice
    assert inbox.query("SELECT * FROM inbox_dossiers ORDER BY id") == before
    rebuild("inbox", env, relais)
    assert inbox.query("SELECT * FROM inbox_dossiers ORDER BY id") == before
    assert inbox.query("SELECT count(*) AS n FROM inbox_sends")[0]["n"] == 1
