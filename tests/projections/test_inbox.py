"""Inbox and access projections: rows per tab, filters, unread markers, notify, exactly once, rebuild."""

from __future__ import annotations

import json
from datetime import date

import psycopg
import pytest

from adapters.settings import Settings
from application import Relais
from application.errors import ForbiddenError
from projections.inbox import InboxProjection
from projections.inbox_queries import Filters, Scope
from projections.runner import Follower, catch_up, log_head, open_view, rebuild
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
        settle(relais, env, "inbox")  # one batch per command: one notification each
        relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"])
        settle(relais, env, "inbox")
        relais.send_dossier(dossier_id=did, actor_id=world["requester"])
        settle(relais, env, "inbox")
        payloads = [json.loads(n.payload) for n in listener.notifies(timeout=1.0, stop_after=3)]
        assert [p["event"] for p in payloads] == ["Created", "RecipientAddressed", "Sent"]
        assert world["montpellier"] in payloads[-1]["establishments"] and world["toulouse"] in payloads[-1]["establishments"]
        assert world["montpellier"] not in payloads[0]["establishments"]
        # several events of a dossier in one batch: one notification, its last event, every establishment
        relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=_send_of(relais, world, did))
        relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=_send_of(relais, world, did), report="Oui.")
        settle(relais, env, "inbox")
        (last,) = [json.loads(n.payload) for n in listener.notifies(timeout=1.0, stop_after=1)]
        assert last["event"] == "OpinionGiven" and last["dossier"] == did and last["version"] == 5
        assert sorted(last["establishments"]) == sorted([world["toulouse"], world["montpellier"]])


def test_a_bulk_batch_tells_establishments_by_groups(relais, world, settings, env, monkeypatch):
    from projections import inbox_batch

    monkeypatch.setattr(inbox_batch, "NOTIFY_EACH", 1)  # two dossiers in a batch: a bulk batch
    monkeypatch.setattr(inbox_batch, "PAYLOAD_ESTABLISHMENTS", 1)  # one establishment per notification
    with psycopg.connect(settings.database_url, autocommit=True) as listener:
        listener.execute("LISTEN relais_inbox")
        for _ in range(2):
            did = relais.create_dossier(actor_id=world["requester"], workflow="stroke_opinion", question="?", consent="given",
                                        **PATIENT)
            relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"])
            relais.send_dossier(dossier_id=did, actor_id=world["requester"])
        settle(relais, env, "inbox")
        payloads = [json.loads(n.payload) for n in listener.notifies(timeout=1.0, stop_after=2)]
    assert payloads == [
        {"dossier": "", "version": 0, "event": "batch", "establishments": [establishment]}
        for establishment in sorted([world["toulouse"], world["montpellier"]])
    ]


def _send_of(relais: Relais, world: dict, did: str) -> str:
    (send,) = relais.get_dossier(dossier_id=did, actor_id=world["requester"]).sends
    return send["send_id"]


def test_rebuild_gives_the_same_rows_and_events_are_applied_once(relais, world, sent_dossier, env, views):
    inbox, _ = views
    settle(relais, env)
    before = inbox.query("SELECT * FROM inbox_dossiers ORDER BY id")
    settle(relais, env)  # nothing new: nothing applied twice
    assert inbox.query("SELECT * FROM inbox_dossiers ORDER BY id") == before
    rebuild("inbox", env, relais)
    assert inbox.query("SELECT * FROM inbox_dossiers ORDER BY id") == before
    assert inbox.query("SELECT count(*) AS n FROM inbox_sends")[0]["n"] == 1


INBOX_TABLES = {
    "inbox_dossiers": "SELECT * FROM inbox_dossiers ORDER BY id",
    "inbox_sends": "SELECT * FROM inbox_sends ORDER BY send_id",
    "inbox_views": "SELECT * FROM inbox_views ORDER BY practitioner_id, dossier_id",
    "access_log": "SELECT * FROM access_log ORDER BY access_id",
    "access_patients": "SELECT * FROM access_patients ORDER BY dossier_id",
}


def _tables(inbox) -> dict:
    return {name: inbox.query(sql) for name, sql in INBOX_TABLES.items()}


def test_rebuild_equals_live_processing_for_every_kind_of_event(relais, world, env, views, monkeypatch):
    """Live (one small batch per command, rows patched by later batches) and rebuilt (one big batch,
    or batches of two events cut anywhere) give the same inbox and access tables."""
    settle(relais, env, "directory")
    inbox, _ = views
    followers = [Follower("inbox", env), Follower("access", env)]
    req, rec, out = world["requester"], world["recipient"], world["outsider"]

    def live() -> None:
        for f in followers:
            f.wait(log_head(relais, tuple(f.projection.topics))[0], timeout=30)

    try:
        a = relais.create_dossier(actor_id=req, workflow="stroke_opinion", question="?", urgency="stat", consent="given", **PATIENT)
        live()
        relais.edit_draft(dossier_id=a, actor_id=req, urgency="urgent", patient=dict(
            birth_name="Dupont-Martin", first_names="Jeanne", birth_date="1950-03-02", sex="F", birth_place_code="31555"))
        live()
        relais.record_consent(dossier_id=a, actor_id=req, status="refused")
        relais.record_consent(dossier_id=a, actor_id=req, status="given")
        live()
        doc = relais.attach_document(dossier_id=a, actor_id=req, filename="cr.pdf", media_type="application/pdf", size=3,
                                     sha256="a" * 64)
        relais.attach_document(dossier_id=a, actor_id=req, filename="b.pdf", media_type="application/pdf", size=3, sha256="b" * 64)
        live()
        relais.remove_document(dossier_id=a, actor_id=req, document_id=doc)
        relais.attach_imaging(dossier_id=a, actor_id=req, study_instance_uid="1.2.3.4", source="pacs_retrieve")
        s1 = relais.address_recipient(dossier_id=a, actor_id=req, establishment_id=world["montpellier"], service_id=world["neuro"])
        live()
        s2 = relais.address_recipient(dossier_id=a, actor_id=req, establishment_id=world["montpellier"])
        relais.remove_recipient(dossier_id=a, actor_id=req, send_id=s2)
        live()
        relais.send_dossier(dossier_id=a, actor_id=req)
        live()
        relais.open_dossier(dossier_id=a, actor_id=rec)
        relais.accept(dossier_id=a, actor_id=rec, send_id=s1)
        live()
        relais.request_complement(dossier_id=a, actor_id=rec, send_id=s1, message="Heure de début ?")
        live()
        relais.provide_complement(dossier_id=a, actor_id=req, send_id=s1, message="8 h 10")
        relais.give_opinion(dossier_id=a, actor_id=rec, send_id=s1, report="Oui.", conclusion="Thrombectomie")
        live()
        relais.open_dossier(dossier_id=a, actor_id=req)
        relais.open_dossier(dossier_id=a, actor_id=req)
        relais.close_dossier(dossier_id=a, actor_id=req)
        live()
        b = relais.create_dossier(actor_id=req, workflow="generic_opinion", question="?", consent="given", **PATIENT)
        t1 = relais.address_recipient(dossier_id=b, actor_id=req, establishment_id=world["montpellier"], service_id=world["neuro"])
        relais.send_dossier(dossier_id=b, actor_id=req)
        live()
        relais.forward(dossier_id=b, actor_id=rec, send_id=t1, to_practitioner_id=out, note="Pour toi")
        live()
        relais.decline(dossier_id=b, actor_id=out, send_id=t1, reason_code="unavailable")
        relais.cancel_dossier(dossier_id=b, actor_id=req, reason="Patient transféré")
        c = relais.create_dossier(actor_id=req, workflow="generic_opinion", question="?", consent="given", **PATIENT)
        c1 = relais.address_recipient(dossier_id=c, actor_id=req, establishment_id=world["montpellier"])
        relais.send_dossier(dossier_id=c, actor_id=req)
        relais.forward(dossier_id=c, actor_id=out, send_id=c1, to_service_id=world["neuro"])
        relais.cancel_dossier(dossier_id=c, actor_id=req, reason="Doublon")
        live()
        d = relais.create_dossier(actor_id=req, workflow="generic_opinion", question="?", **PATIENT)
        live()
        relais.edit_draft(dossier_id=d, actor_id=req, workflow="stroke_opinion", imaging_source="none")
        relais.cancel_dossier(dossier_id=d, actor_id=req, reason="Erreur")
        live()
        with pytest.raises(ForbiddenError):
            relais.open_dossier(dossier_id=a, actor_id=world["auditor"])  # denied, traced
        live()
    finally:
        for f in followers:
            f.close()
    processed_live = _tables(inbox)
    assert len(processed_live["inbox_dossiers"]) == 4 and len(processed_live["access_log"]) == 4
    assert {r["state"] for r in processed_live["inbox_dossiers"]} == {"closed", "cancelled"}
    (row_a,) = [r for r in processed_live["inbox_dossiers"] if str(r["id"]) == a]
    assert (row_a["documents"], row_a["imaging"], row_a["consent"], row_a["urgency"]) == (1, 1, "given", "urgent")
    assert row_a["birth_name"] == "DUPONT-MARTIN" and row_a["state"] == "closed" and row_a["over_on"] is not None
    sends = {str(r["send_id"]): r for r in processed_live["inbox_sends"]}
    assert s2 not in sends and sends[s1]["state"] == "answered" and sends[s1]["answered_on"] is not None
    assert sends[t1]["practitioner_id"] is not None and str(sends[t1]["practitioner_id"]) == out
    assert sends[t1]["state"] == "declined" and sends[c1]["state"] == "cancelled"
    assert str(sends[c1]["service_id"]) == world["neuro"]
    assert {(v["practitioner_id"], str(v["dossier_id"])) for v in processed_live["inbox_views"]} == {(rec, a), (req, a)}
    rebuild("inbox", env, relais)
    rebuild("access", env, relais)
    assert _tables(inbox) == processed_live
    monkeypatch.setattr(InboxProjection, "batch_size", 2)
    from projections.access import AccessProjection

    monkeypatch.setattr(AccessProjection, "batch_size", 2)
    rebuild("inbox", env, relais)
    rebuild("access", env, relais)
    assert _tables(inbox) == processed_live
