"""The audit history of a dossier: every event, its actor, business time vs. recorded time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from application import Relais
from application.errors import ForbiddenError, NotFoundError
from tests.conftest import PATIENT


def test_history_lists_every_event_with_actor_and_both_times(relais: Relais, world: dict):
    req, rec = world["requester"], world["recipient"]
    start = datetime.now(UTC)
    # history from the legacy platform / queued offline: it happened two days ago
    created_at = (start - timedelta(days=2)).replace(microsecond=0)
    addressed_at = created_at + timedelta(minutes=4)
    sent_at = created_at + timedelta(minutes=5)

    did = relais.create_dossier(actor_id=req, workflow="stroke_opinion", question="Thrombolyse ?", urgency="stat",
                                consent="given", occurred_at=created_at, **PATIENT)
    sid = relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=world["montpellier"],
                                   service_id=world["neuro"], occurred_at=addressed_at)
    relais.send_dossier(dossier_id=did, actor_id=req, occurred_at=sent_at)
    relais.decline(dossier_id=did, actor_id=rec, send_id=sid, reason_code="other", reason="Pas de lit")
    end = datetime.now(UTC)

    history = relais.dossier_history(dossier_id=did, actor_id=world["auditor"])
    assert [(h.version, h.event) for h in history] == [
        (1, "Created"), (2, "RecipientAddressed"), (3, "Sent"), (4, "Declined")]

    requester_actor = {
        "practitioner_id": req, "role": "clinician", "establishment_id": world["toulouse"], "service_ids": [],
        "name": "Claire MARTIN",
    }
    recipient_actor = {
        "practitioner_id": rec, "role": "clinician", "establishment_id": world["montpellier"],
        "service_ids": [world["neuro"]], "name": "Paul DURAND",
    }
    assert [h.actor for h in history] == [requester_actor] * 3 + [recipient_actor]

    # business time as given, distinct from the recorded time
    assert [h.occurred_at for h in history[:3]] == [created_at, addressed_at, sent_at]
    for h in history:
        assert start <= h.recorded_at <= end
    for h in history[:3]:
        assert h.recorded_at - h.occurred_at > timedelta(days=1)
    # without occurred_at, the business time is the moment of the command (just before recording)
    declined = history[3]
    assert start <= declined.occurred_at <= declined.recorded_at <= end

    # the event's own fields, without the envelope, the actor or the business time
    assert history[2].data["send_ids"] == [sid]
    deadline = history[2].data["deadlines"][sid]  # recorded with the sending (domain/deadlines.py)
    assert set(deadline) == {"started_at", "accept_by", "answer_by", "basis"}
    assert history[3].data == {"send_id": sid, "reason_code": "other", "reason": "Pas de lit"}
    assert history[0].data["question"] == "Thrombolyse ?"
    assert history[0].data["patient"]["birth_name"] == "DUPONT"
    for h in history:
        assert not {"actor", "occurred_at", "originator_id", "originator_version", "timestamp"} & set(h.data)


def test_business_time_drives_the_dossier_dates(relais, world):
    req = world["requester"]
    created_at = datetime(2024, 5, 31, 21, 30, tzinfo=UTC)  # 1 June in Paris
    did = relais.create_dossier(actor_id=req, workflow="generic_opinion", question="?", consent="given",
                                occurred_at=created_at, **PATIENT)
    relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=world["montpellier"])
    sent_at = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
    relais.send_dossier(dossier_id=did, actor_id=req, occurred_at=sent_at)
    d = relais.get_dossier(dossier_id=did, actor_id=req)
    assert d.created_on == created_at
    assert d.first_sent_on == sent_at
    assert d.sends[0]["sent_on"] == sent_at.isoformat()
    assert d.consent["occurred_at"] == created_at.isoformat()


def test_history_of_forward_records_both_practitioners(relais, world):
    req, rec, out = world["requester"], world["recipient"], world["outsider"]
    did = relais.create_dossier(actor_id=req, workflow="generic_opinion", question="?", consent="given", **PATIENT)
    sid = relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=world["montpellier"],
                                   service_id=world["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=req)
    relais.forward(dossier_id=did, actor_id=rec, send_id=sid, to_practitioner_id=out, note="Pour toi")
    relais.accept(dossier_id=did, actor_id=out, send_id=sid)
    history = relais.dossier_history(dossier_id=did, actor_id=world["auditor"])
    forwarded, accepted = history[-2], history[-1]
    assert (forwarded.event, forwarded.actor["practitioner_id"]) == ("Forwarded", rec)
    deadline = forwarded.data.pop("deadline")  # the new assignee's, recorded with the forward
    assert deadline["basis"]["source"] == "default"
    assert forwarded.data == {
        "send_id": sid, "note": "Pour toi",
        "to": {"establishment_id": world["montpellier"], "service_id": None, "practitioner_id": out,
               "region": "OCC", "department": "34", "channel": None},
    }
    assert (accepted.event, accepted.actor["practitioner_id"], accepted.actor["service_ids"]) == ("Accepted", out, [])


def test_history_is_for_auditors(relais, world, sent_dossier):
    with pytest.raises(ForbiddenError):
        relais.dossier_history(dossier_id=sent_dossier["dossier_id"], actor_id=world["outsider"])
    with pytest.raises(ForbiddenError):
        relais.dossier_history(dossier_id=sent_dossier["dossier_id"], actor_id="nobody")


def test_history_of_unknown_dossier(relais, world):
    with pytest.raises(NotFoundError):
        relais.dossier_history(dossier_id="6d1f2a4e-0000-4000-8000-000000000000", actor_id=world["auditor"])

