"""Imported dossiers: the system replays the legacy history; on live dossiers it gets no such power."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.dossier import Dossier
from domain.errors import ConsentMissingError, DossierStateError, NotAllowedError
from domain.values import Actor

SYSTEM = Actor(practitioner_id="system", role="system", establishment_id="", name="Import de l'historique")
T0 = datetime(2023, 2, 15, 8, 0, tzinfo=UTC)
REQUESTER = str(uuid.UUID(int=10))
RECIPIENT = str(uuid.UUID(int=11))


def recipient(send_id: str = "s1") -> dict:
    return {
        "send_id": send_id, "establishment_id": RECIPIENT, "service_id": None, "practitioner_id": None,
        "region": "OCC", "department": "34", "channel": None,
    }


def imported() -> Dossier:
    return Dossier.imported(
        dossier_id=uuid.uuid4(), workflow="imaging_transfer",
        requester={"establishment_id": REQUESTER, "practitioner_id": None, "service_id": None},
        imaging_source="dicom_store", actor=SYSTEM, occurred_at=T0,
        imported_from={"source": "legacy", "legacy_id": "D1", "file": "x.csv", "line": 2},
    )


def live() -> Dossier:
    clinician = Actor(practitioner_id=str(uuid.UUID(int=1)), role="clinician", establishment_id=REQUESTER)
    return Dossier(
        workflow="imaging_transfer", requester={"establishment_id": REQUESTER, "practitioner_id": clinician.practitioner_id,
                                                "service_id": None},
        patient={}, question="?", urgency="routine", consent={"status": "given"}, imaging_source="none",
        actor=clinician.as_dict(), occurred_at=T0, imported_from=None,
    )


def test_the_system_replays_an_imported_dossier_without_consent_record():
    d = imported()
    assert d.patient == {} and d.question == "" and d.imported_from["legacy_id"] == "D1"
    d.address(recipient=recipient(), actor=SYSTEM, occurred_at=T0)
    d.send(actor=SYSTEM, occurred_at=T0)
    d.give_opinion(send_id="s1", report="…", conclusion="", actor=SYSTEM, occurred_at=T0 + timedelta(minutes=30))
    d.close(note="", actor=SYSTEM, occurred_at=T0 + timedelta(days=1))
    assert d.state == "closed"
    assert {e.actor["role"] for e in d.collect_events()} == {"system"}


def test_an_imported_dossier_closed_without_answer_in_the_legacy_platform():
    d = imported()
    d.address(recipient=recipient(), actor=SYSTEM, occurred_at=T0)
    d.send(actor=SYSTEM, occurred_at=T0)
    d.close(note="", actor=SYSTEM, occurred_at=T0 + timedelta(days=3))
    assert d.state == "closed"


def test_the_lifecycle_rules_still_hold_for_imported_dossiers():
    d = imported()
    d.address(recipient=recipient(), actor=SYSTEM, occurred_at=T0)
    d.send(actor=SYSTEM, occurred_at=T0)
    with pytest.raises(Exception, match="antérieure"):
        d.give_opinion(send_id="s1", report="…", conclusion="", actor=SYSTEM, occurred_at=T0 - timedelta(minutes=1))
    d.give_opinion(send_id="s1", report="…", conclusion="", actor=SYSTEM, occurred_at=T0 + timedelta(minutes=1))
    with pytest.raises(DossierStateError):
        d.give_opinion(send_id="s1", report="…", conclusion="", actor=SYSTEM, occurred_at=T0 + timedelta(minutes=2))


def test_the_system_has_no_such_power_on_a_live_dossier():
    d = live()
    with pytest.raises(NotAllowedError):
        d.address(recipient=recipient(), actor=SYSTEM, occurred_at=T0)
    clinician = Actor(practitioner_id=str(uuid.UUID(int=1)), role="clinician", establishment_id=REQUESTER)
    d.address(recipient=recipient(), actor=clinician, occurred_at=T0)
    with pytest.raises(NotAllowedError):
        d.send(actor=SYSTEM, occurred_at=T0)
    d.send(actor=clinician, occurred_at=T0)
    with pytest.raises(NotAllowedError):
        d.give_opinion(send_id="s1", report="…", conclusion="", actor=SYSTEM, occurred_at=T0)
    with pytest.raises(NotAllowedError):
        d.close(note="", actor=SYSTEM, occurred_at=T0)


def test_only_the_system_creates_imported_dossiers_and_only_with_their_origin():
    clinician = Actor(practitioner_id=str(uuid.UUID(int=1)), role="clinician", establishment_id=REQUESTER)
    for actor, origin in ((clinician, {"source": "legacy"}), (SYSTEM, None), (SYSTEM, {})):
        with pytest.raises(NotAllowedError):
            Dossier.imported(
                dossier_id=uuid.uuid4(), workflow="legacy", requester={"establishment_id": REQUESTER},
                imaging_source="none", actor=actor, occurred_at=T0, imported_from=origin,
            )


def test_a_live_dossier_still_needs_consent_to_be_sent():
    clinician = Actor(practitioner_id=str(uuid.UUID(int=1)), role="clinician", establishment_id=REQUESTER)
    d = live()
    d.consent = None
    d.address(recipient=recipient(), actor=clinician, occurred_at=T0)
    with pytest.raises(ConsentMissingError):
        d.send(actor=clinician, occurred_at=T0)
