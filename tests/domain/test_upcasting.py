"""Schema evolution: Dossier.Declined v1 (free text only) is upcast to v2 (with reason_code)."""

from __future__ import annotations

import json
from uuid import UUID, uuid4

import psycopg
from eventsourcing.persistence import StoredEvent

from adapters.settings import conninfo
from application import Relais
from domain.dossier import Dossier
from entrypoints.bootstrap import build_app


def test_declined_is_version_2():
    assert Dossier.Declined.class_version == 2
    assert not hasattr(Dossier.Declined, "upcast_v2_v3")


def test_upcaster_on_a_dict():
    state = {"send_id": "s", "reason": "pas de lit", "actor": {}, "occurred_at": None}
    Dossier.Declined.upcast_v1_v2(state)
    assert state == {"send_id": "s", "reason": "pas de lit", "actor": {}, "occurred_at": None, "reason_code": "other"}


def test_mapper_upcasts_a_v1_stored_event():
    """A stored state without class_version is a v1 event: the mapper runs upcast_v1_v2."""
    app = Relais(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})

    v1_state = {
        "timestamp": {"_type_": "datetime_iso", "_data_": "2022-03-01T10:00:00+00:00"},
        "send_id": "abc",
        "reason": "Pas de neurochirurgien ce week-end",
        "actor": {"practitioner_id": "p", "role": "clinician", "establishment_id": "e", "service_ids": [], "name": ""},
        "occurred_at": {"_type_": "datetime_iso", "_data_": "2022-03-01T09:58:00+00:00"},
    }
    stored = StoredEvent(
        originator_id=uuid4(), originator_version=4, topic="relais:Dossier.Declined",
        state=json.dumps(v1_state).encode(),
    )
    ev = app.mapper.to_domain_event(stored)
    assert type(ev) is Dossier.Declined
    assert ev.reason_code == "other"
    assert ev.reason == "Pas de neurochirurgien ce week-end"
    assert ev.occurred_at.isoformat() == "2022-03-01T09:58:00+00:00"
    assert "class_version" not in ev.__dict__
    app.close()


def test_v2_event_is_stored_with_class_version(relais, sent_dossier, world, settings):
    relais.decline(
        dossier_id=sent_dossier["dossier_id"], actor_id=world["recipient"], send_id=sent_dossier["send_id"],
        reason_code="unavailable", reason="Astreinte saturée",
    )
    with psycopg.connect(conninfo(settings.database_url)) as conn:
        (state,) = conn.execute(
            "SELECT state FROM relais_events WHERE topic = 'relais:Dossier.Declined'"
        ).fetchone()
    decoded = json.loads(bytes(state))
    assert decoded["class_version"] == 2
    assert decoded["reason_code"] == "unavailable"


def test_stored_v1_declined_event_is_upcast_on_load(relais, sent_dossier, world, settings):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    relais.decline(
        dossier_id=did, actor_id=world["recipient"], send_id=sid, reason_code="unavailable", reason="Bloc plein",
    )
    # Rewrite the stored event as the v1 platform wrote it: no reason_code, no class_version.
    with psycopg.connect(conninfo(settings.database_url)) as conn:
        (version, state) = conn.execute(
            "SELECT originator_version, state FROM relais_events"
            " WHERE originator_id = %s AND topic = 'relais:Dossier.Declined'",
            (did,),
        ).fetchone()
        decoded = json.loads(bytes(state))
        del decoded["reason_code"]
        del decoded["class_version"]
        conn.execute(
            "UPDATE relais_events SET state = %s WHERE originator_id = %s AND originator_version = %s",
            (json.dumps(decoded).encode(), did, version),
        )
        conn.commit()
        (raw,) = conn.execute(
            "SELECT state FROM relais_events WHERE originator_id = %s AND originator_version = %s", (did, version)
        ).fetchone()
    assert b"reason_code" not in bytes(raw) and b"class_version" not in bytes(raw)

    fresh = build_app(settings)
    try:
        dossier = fresh.repository.get(UUID(did))
        assert dossier.sends[sid]["state"] == "declined"
        assert dossier.sends[sid]["decline"] == {"reason_code": "other", "reason": "Bloc plein"}
        declined = [e for e in fresh.events.get(UUID(did)) if type(e) is Dossier.Declined]
        assert len(declined) == 1
        assert declined[0].reason_code == "other"
        details = fresh.get_dossier(dossier_id=did, actor_id=world["requester"])
        assert details.state == "declined"
        assert details.version == version
    finally:
        fresh.close()


def test_opinion_given_v1_is_upcast_to_the_structured_v2():
    """OpinionGiven v1 (report + conclusion) reads as v2 with no recommendation and follow-up not stated."""
    assert Dossier.OpinionGiven.class_version == 2
    app = Relais(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    v1_state = {
        "timestamp": {"_type_": "datetime_iso", "_data_": "2023-05-01T10:00:00+00:00"},
        "send_id": "abc", "report": "Hématome stable.", "conclusion": "Surveillance",
        "actor": {"practitioner_id": "p", "role": "clinician", "establishment_id": "e", "service_ids": [], "name": ""},
        "occurred_at": {"_type_": "datetime_iso", "_data_": "2023-05-01T09:58:00+00:00"},
    }
    stored = StoredEvent(
        originator_id=uuid4(), originator_version=5, topic="relais:Dossier.OpinionGiven", state=json.dumps(v1_state).encode()
    )
    ev = app.mapper.to_domain_event(stored)
    assert type(ev) is Dossier.OpinionGiven
    assert (ev.report, ev.conclusion, ev.recommendations, ev.follow_up) == ("Hématome stable.", "Surveillance", "", "")
    app.close()


def test_structured_opinion_is_recorded_and_checked(relais, sent_dossier, world):
    import pytest

    from domain.errors import InvalidFieldError

    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    with pytest.raises(InvalidFieldError):
        relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=sid, report="r", follow_up="someday")
    relais.give_opinion(
        dossier_id=did, actor_id=world["recipient"], send_id=sid, report="Occlusion M1.", conclusion="Thrombectomie",
        recommendations="Transfert immédiat", follow_up="immediate",
    )
    d = relais.get_dossier(dossier_id=did, actor_id=world["requester"])
    opinion = d.sends[0]["opinion"]
    assert opinion["recommendations"] == "Transfert immédiat" and opinion["follow_up"] == "immediate"


def test_v1_sent_and_forwarded_read_as_without_deadline():
    """Sends of the stores that predate deadlines (Sent v1, Forwarded v1) have none: nothing is due for them."""
    app = Relais(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    actor = {"practitioner_id": "p", "role": "clinician", "establishment_id": "e", "service_ids": [], "name": ""}
    when = {"_type_": "datetime_iso", "_data_": "2025-03-01T09:58:00+00:00"}
    for topic, state, check in (
        ("relais:Dossier.Sent", {"send_ids": ["s"]}, lambda ev: ev.deadlines == {}),
        ("relais:Dossier.Forwarded", {"send_id": "s", "to": {"establishment_id": "e"}, "note": ""},
         lambda ev: ev.deadline is None),
    ):
        stored = StoredEvent(
            originator_id=uuid4(), originator_version=5, topic=topic,
            state=json.dumps({"timestamp": when, "actor": actor, "occurred_at": when, **state}).encode(),
        )
        ev = app.mapper.to_domain_event(stored)
        assert check(ev), topic
    assert Dossier.Sent.class_version == 2 and Dossier.Forwarded.class_version == 2
    app.close()
