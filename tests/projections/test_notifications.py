"""Notifications projection: who is told what, no patient data, exactly once through crashes, replays and
rebuilds, nobody told of history imports or of events recorded long before they are processed."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest

from adapters.history_import import import_file, parse_legacy_text
from adapters.settings import Settings
from application import Relais
from projections.notifications import NotificationsProjection
from projections.runner import catch_up, rebuild
from tests.conftest import PATIENT, rpps
from tests.history import csv_text


@pytest.fixture()
def env(settings: Settings) -> dict:
    return settings.eventsourcing_env()


def follow(env: dict, relais: Relais) -> None:
    catch_up("directory", env, relais)
    catch_up("notifications", env, relais)


def rows(settings: Settings, sql: str, *params) -> list[dict]:
    with psycopg.connect(settings.database_url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def told(settings: Settings, kind: str | None = None) -> set[tuple[str, str]]:
    """(practitioner, kind) of every notification (of `kind`)."""
    return {
        (str(r["practitioner_id"]), r["kind"]) for r in rows(settings, "SELECT practitioner_id, kind FROM notifications")
        if kind is None or r["kind"] == kind
    }


def snapshot(settings: Settings) -> list[tuple]:
    return [tuple(r.values()) for r in rows(
        settings, "SELECT id, practitioner_id, kind, detail, read_at, created_at FROM notifications ORDER BY id")]


def send(relais: Relais, world: dict, **to) -> dict:
    did = relais.create_dossier(
        actor_id=world["requester"], workflow="stroke_opinion", question="Thrombectomie ?", urgency="stat",
        consent="given", **PATIENT,
    )
    sid = relais.address_recipient(dossier_id=did, actor_id=world["requester"], **to)
    relais.send_dossier(dossier_id=did, actor_id=world["requester"])
    return {"dossier_id": did, "send_id": sid}


def test_a_send_to_a_service_tells_its_clinicians_only_and_schedules_its_deadline(relais, world, sent_dossier, env, settings):
    colleague = relais.add_practitioner(
        rpps=rpps(10), family_name="Bernard", given_name="Marc", establishment_id=world["montpellier"],
        roles=["clinician"], service_ids=[world["neuro"]], email="marc.bernard@chu-montpellier.fr",
    )
    again = send(relais, world, establishment_id=world["montpellier"], service_id=world["neuro"])
    follow(env, relais)
    assert told(settings) == {
        (world["recipient"], "received"), (colleague, "received"),
    }  # twice each (two dossiers), never the outsider of the same establishment nor the requester
    assert len(rows(settings, "SELECT 1 FROM notifications")) == 4
    mails = rows(settings, "SELECT practitioner_id, address, state FROM notification_mails")
    assert {(str(m["practitioner_id"]), m["address"], m["state"]) for m in mails} == {
        (colleague, "marc.bernard@chu-montpellier.fr", "pending")}
    assert len(mails) == 2  # one per notification of the one practitioner with an address
    due = rows(settings, "SELECT step, generation FROM deadline_due WHERE send_id = %s ORDER BY due_at",
               again["send_id"])
    assert [(d["step"], d["generation"]) for d in due] == [
        ("accept_half", 0), ("accept_due", 0), ("answer_half", 0), ("answer_due", 0)]
    state = rows(settings, "SELECT state, accept_by, answer_by FROM notif_sends WHERE send_id = %s", again["send_id"])[0]
    assert state["state"] == "requested" and state["answer_by"] - state["accept_by"] == timedelta(minutes=20)


def test_a_send_to_an_establishment_tells_every_clinician_there(relais, world, env, settings):
    send(relais, world, establishment_id=world["montpellier"])
    follow(env, relais)
    assert told(settings) == {(world["recipient"], "received"), (world["outsider"], "received")}


def test_the_requester_is_told_of_each_answer_and_the_service_while_away(relais, world, env, settings):
    urgences = relais.add_service(establishment_id=world["toulouse"], code="urg", name="Urgences")
    relais.set_membership(practitioner_id=world["requester"], establishment_id=world["toulouse"], roles=["clinician"],
                          service_ids=[urgences])
    deputy = relais.add_practitioner(
        rpps=rpps(11), family_name="Roux", given_name="Julie", establishment_id=world["toulouse"],
        roles=["clinician"], service_ids=[urgences],
    )
    sent = send(relais, world, establishment_id=world["montpellier"], service_id=world["neuro"])
    relais.accept(dossier_id=sent["dossier_id"], send_id=sent["send_id"], actor_id=world["recipient"])
    relais.request_complement(dossier_id=sent["dossier_id"], send_id=sent["send_id"], actor_id=world["recipient"],
                              message="Merci de joindre l'angio-scanner de Mme Dupont")
    follow(env, relais)
    assert told(settings) - told(settings, "received") == {
        (world["requester"], "accepted"), (world["requester"], "complement_requested")}

    relais.set_away(practitioner_id=world["requester"], away=True, admin_id=world["requester"])
    relais.provide_complement(dossier_id=sent["dossier_id"], send_id=sent["send_id"], actor_id=world["requester"],
                              message="Angio-scanner joint")
    relais.give_opinion(dossier_id=sent["dossier_id"], send_id=sent["send_id"], actor_id=world["recipient"],
                        report="Occlusion M1 chez Mme Dupont", conclusion="Thrombectomie")
    follow(env, relais)
    # the one who accepted is told of the complement; the away requester's service of the opinion
    assert told(settings, "complement_provided") == {(world["recipient"], "complement_provided")}
    assert told(settings, "opinion_given") == {(world["requester"], "opinion_given"), (deputy, "opinion_given")}
    opinion = rows(settings, "SELECT * FROM notifications WHERE kind = 'opinion_given'")[0]
    assert opinion["detail"] == {"by": "Paul DURAND", "service": "Neuroradiologie"}
    assert opinion["number"].startswith("TD-") and opinion["urgency"] == "stat" and opinion["deadline"] is not None

    declined = send(relais, world, establishment_id=world["montpellier"], service_id=world["neuro"])
    relais.decline(dossier_id=declined["dossier_id"], send_id=declined["send_id"], actor_id=world["recipient"],
                   reason_code="other", reason="Mme Dupont est déjà suivie chez nous")
    follow(env, relais)
    refusal = rows(settings, "SELECT * FROM notifications WHERE kind = 'declined'")
    assert {str(r["practitioner_id"]) for r in refusal} == {world["requester"], deputy}
    assert refusal[0]["detail"] == {"by": "Paul DURAND", "service": "Neuroradiologie", "reason_code": "other"}


def test_no_patient_data_nor_free_text_in_any_notification(relais, world, env, settings):
    sent = send(relais, world, establishment_id=world["montpellier"], service_id=world["neuro"])
    relais.decline(dossier_id=sent["dossier_id"], send_id=sent["send_id"], actor_id=world["recipient"],
                   reason_code="other", reason="Motif libre secret")
    follow(env, relais)
    text = " ".join(str(tuple(r.values())) for r in rows(settings, "SELECT * FROM notifications"))
    assert text
    for secret in ("Dupont", "Jeanne", "1950", "Thrombectomie", "Motif libre secret", "31555"):
        assert secret not in text


def test_a_crash_in_the_middle_of_a_batch_writes_nothing_then_everything_once(relais, world, sent_dossier, env, settings,
                                                                              monkeypatch):
    relais.accept(dossier_id=sent_dossier["dossier_id"], send_id=sent_dossier["send_id"], actor_id=world["recipient"])
    catch_up("directory", env, relais)
    original = NotificationsProjection.write

    def crash(self, curs, batch):
        original(self, curs, batch)  # notifications written in the transaction…
        raise RuntimeError("processus tué au milieu du lot")  # …which never commits

    monkeypatch.setattr(NotificationsProjection, "write", crash)
    with pytest.raises(RuntimeError):
        catch_up("notifications", env, relais, timeout=20)
    assert rows(settings, "SELECT 1 FROM notifications") == []
    monkeypatch.setattr(NotificationsProjection, "write", original)
    catch_up("notifications", env, relais)
    assert sorted(r["kind"] for r in rows(settings, "SELECT kind FROM notifications")) == ["accepted", "received"]


def test_a_replayed_event_tells_nobody_twice(relais, world, sent_dossier, env, settings):
    relais.accept(dossier_id=sent_dossier["dossier_id"], send_id=sent_dossier["send_id"], actor_id=world["recipient"])
    relais.forward(dossier_id=sent_dossier["dossier_id"], send_id=sent_dossier["send_id"], actor_id=world["recipient"],
                   to_establishment_id=world["montpellier"], to_practitioner_id=world["outsider"])
    follow(env, relais)
    before = snapshot(settings)
    due = rows(settings, "SELECT * FROM deadline_due ORDER BY send_id, generation, step")
    assert len(before) == 3 and len(due) == 8  # received, accepted, received (forward); two generations
    # the position moved back to the middle of the log (a replay): the same events are processed again
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        moved = conn.execute("UPDATE notifications_tracking SET notification_id = notification_id - 2 "
                             "WHERE application_name <> '__migration__'")
        assert moved.rowcount == 1
    follow(env, relais)
    assert snapshot(settings) == before
    assert rows(settings, "SELECT * FROM deadline_due ORDER BY send_id, generation, step") == due
    gens = rows(settings, "SELECT generation FROM notif_sends")
    assert [g["generation"] for g in gens] == [max(d["generation"] for d in due)]


def test_a_rebuild_resends_nothing_and_keeps_what_was_read_sent_and_fired(relais, world, sent_dossier, env, settings):
    relais.add_practitioner(
        rpps=rpps(12), family_name="Blanc", given_name="Eva", establishment_id=world["montpellier"],
        roles=["clinician"], service_ids=[world["neuro"]], email="eva.blanc@chu-montpellier.fr",
    )
    send(relais, world, establishment_id=world["montpellier"], service_id=world["neuro"])
    follow(env, relais)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("UPDATE notifications SET read_at = now()")
        conn.execute("UPDATE notification_mails SET state = 'sent', sent_at = now()")
        conn.execute("UPDATE deadline_due SET fired_at = now(), outcome = 'reminded' WHERE step = 'accept_half'")
    before = snapshot(settings)
    mails = rows(settings, "SELECT * FROM notification_mails ORDER BY id")
    due = rows(settings, "SELECT * FROM deadline_due ORDER BY send_id, step")
    state = rows(settings, "SELECT * FROM notif_sends ORDER BY send_id")
    rebuild("notifications", env, relais)
    assert snapshot(settings) == before
    assert rows(settings, "SELECT * FROM notification_mails ORDER BY id") == mails
    assert rows(settings, "SELECT * FROM deadline_due ORDER BY send_id, step") == due
    assert rows(settings, "SELECT * FROM notif_sends ORDER BY send_id") == state


def test_history_imports_tell_nobody(relais, world, env, settings):
    report = import_file(relais, parse_legacy_text(csv_text(1), name="legacy.csv"))
    assert not report.errors, report.errors
    follow(env, relais)
    assert rows(settings, "SELECT count(*) AS n FROM notif_dossiers WHERE imported")[0]["n"] > 0
    assert rows(settings, "SELECT 1 FROM notifications") == []
    assert rows(settings, "SELECT 1 FROM deadline_due") == []


def test_events_recorded_long_before_they_are_processed_tell_nobody(relais, world, sent_dossier, env, settings,
                                                                     monkeypatch):
    relais.accept(dossier_id=sent_dossier["dossier_id"], send_id=sent_dossier["send_id"], actor_id=world["recipient"])
    later = NotificationsProjection.clock() + timedelta(hours=25)  # first deployment, a day after these events
    monkeypatch.setattr(NotificationsProjection, "clock", staticmethod(lambda: later))
    follow(env, relais)
    assert rows(settings, "SELECT 1 FROM notifications") == []
    assert rows(settings, "SELECT 1 FROM notification_mails") == []
    assert rows(settings, "SELECT 1 FROM deadline_due") == []
    state = rows(settings, "SELECT state, accepted_by FROM notif_sends")
    assert [(s["state"], str(s["accepted_by"])) for s in state] == [("in_progress", world["recipient"])]


def test_closing_tells_the_requester_when_a_colleague_closes(relais, world, sent_dossier, env, settings):
    colleague = relais.add_practitioner(
        rpps=rpps(13), family_name="Morel", given_name="Anne", establishment_id=world["toulouse"], roles=["clinician"],
    )
    relais.give_opinion(dossier_id=sent_dossier["dossier_id"], send_id=sent_dossier["send_id"],
                        actor_id=world["recipient"], report="R", conclusion="C")
    relais.close_dossier(dossier_id=sent_dossier["dossier_id"], actor_id=colleague, note="")
    follow(env, relais)
    assert told(settings, "closed") == {(world["requester"], "closed")}  # not the colleague who closed it
    assert rows(settings, "SELECT state FROM notif_sends")[0]["state"] == "answered"


def test_each_batch_notifies_the_web_the_mail_delivery_and_the_scheduler(relais, world, env, settings):
    relais.add_practitioner(
        rpps=rpps(14), family_name="Faure", given_name="Tom", establishment_id=world["montpellier"],
        roles=["clinician"], service_ids=[world["neuro"]], email="tom.faure@chu-montpellier.fr",
    )
    catch_up("directory", env, relais)
    with psycopg.connect(settings.database_url, autocommit=True) as listener:
        for channel in ("relais_notifications", "relais_mail", "relais_due"):
            listener.execute(f"LISTEN {channel}")
        sent = send(relais, world, establishment_id=world["montpellier"], service_id=world["neuro"])
        catch_up("notifications", env, relais)
        heard = [(n.channel, n.payload) for n in listener.notifies(timeout=5, stop_after=3)]
    assert sorted(c for c, _ in heard) == ["relais_due", "relais_mail", "relais_notifications"]
    payload = json.loads(next(p for c, p in heard if c == "relais_notifications"))
    assert payload["dossier"] == sent["dossier_id"] and payload["kind"] == "received" and payload["urgency"] == "stat"
    assert len(payload["practitioners"]) == 2 and world["recipient"] in payload["practitioners"]


def test_people_just_added_are_told_even_when_the_directory_follows_later(relais, world, env, settings, monkeypatch):
    import threading
    import time
    import types

    import projections.notifications as module

    waiting = threading.Event()

    def sleep(seconds: float) -> None:
        waiting.set()  # the batch waits for the directory read model
        time.sleep(seconds)

    monkeypatch.setattr(module, "DIRECTORY_WAIT", 60.0)
    monkeypatch.setattr(module, "time", types.SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    send(relais, world, establishment_id=world["montpellier"], service_id=world["neuro"])  # directory not followed yet
    notifications = threading.Thread(target=catch_up, args=("notifications", env, relais))
    notifications.start()
    try:
        assert waiting.wait(30), "the notifications were written without waiting for the directory"
        catch_up("directory", env, relais)
    finally:
        notifications.join(60)
    assert told(settings) == {(world["recipient"], "received")}


def test_recipients_still_working_are_told_when_the_dossier_is_cancelled_or_closed(relais, world, env, settings):
    """No opinion is awaited any more: the recipients of sends still being worked on are told (cancelled; closed
    on another recipient's opinion), not those who had finished (answered, declined) nor those never sent to."""
    cancelled = send(relais, world, establishment_id=world["montpellier"], service_id=world["neuro"])
    relais.accept(dossier_id=cancelled["dossier_id"], send_id=cancelled["send_id"], actor_id=world["recipient"])
    relais.cancel_dossier(dossier_id=cancelled["dossier_id"], actor_id=world["requester"], reason="Patient transféré")
    follow(env, relais)
    assert told(settings, "cancelled") == {(world["recipient"], "cancelled")}  # who had taken it in charge
    # two sends: the first answers, the requester closes; the second (to Petit) is told
    did = relais.create_dossier(actor_id=world["requester"], workflow="generic_opinion", question="Avis ?",
                                urgency="routine", consent="given", **PATIENT)
    first = relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"],
                                     service_id=world["neuro"])
    relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"],
                             practitioner_id=world["outsider"])
    relais.send_dossier(dossier_id=did, actor_id=world["requester"])
    relais.give_opinion(dossier_id=did, send_id=first, actor_id=world["recipient"], report="R", conclusion="C")
    relais.close_dossier(dossier_id=did, actor_id=world["requester"], note="")
    follow(env, relais)
    closed = {p for p, _ in told(settings, "closed")}
    assert closed == {world["outsider"]}  # the requester closed it; Durand had answered; Petit's send was open
