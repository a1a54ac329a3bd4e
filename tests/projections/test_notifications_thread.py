"""A message of a send's thread tells the other side « Nouveau message », never its author, never its text."""

from __future__ import annotations

import psycopg

from adapters.notification_prefs import KIND_LABELS
from adapters.settings import Settings
from application import Relais
from projections.runner import catch_up


def follow(settings: Settings, relais: Relais) -> None:
    env = settings.eventsourcing_env()
    catch_up("directory", env, relais)
    catch_up("notifications", env, relais)


def messages(settings: Settings) -> list[dict]:
    with psycopg.connect(settings.database_url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(  # in the order they were written (ids are hashes: their order is none)
            "SELECT practitioner_id, kind, detail FROM notifications WHERE kind = 'message' ORDER BY occurred_at").fetchall()


def test_a_message_tells_the_other_side(relais, world, sent_dossier, settings):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    assert KIND_LABELS["message"] == "Nouveau message"
    relais.post_message(dossier_id=did, actor_id=world["requester"], send_id=sid, message="Mme Dupont s'aggrave")
    follow(settings, relais)
    (to_recipient,) = messages(settings)
    assert str(to_recipient["practitioner_id"]) == world["recipient"]  # the service's clinician, not the author
    assert "Dupont" not in str(to_recipient["detail"]) and to_recipient["detail"]["by"] == "Claire MARTIN"
    relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=sid)
    relais.post_message(dossier_id=did, actor_id=world["recipient"], send_id=sid, message="Je regarde")
    follow(settings, relais)
    told = [str(r["practitioner_id"]) for r in messages(settings)]
    assert told == [world["recipient"], world["requester"]]
