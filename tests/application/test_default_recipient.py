"""Default recipient per workflow and establishment: set, read, replaced, removed, checked."""

from __future__ import annotations

import pytest

from application import Relais
from domain.errors import InvalidFieldError


def test_default_recipient_is_the_requester_establishment_setting(relais: Relais, world: dict) -> None:
    assert relais.default_recipient(world["toulouse"], "stroke_opinion") is None
    relais.set_default_recipient(
        establishment_id=world["toulouse"], workflow="stroke_opinion",
        to_establishment_id=world["montpellier"], to_service_code="neuroradio",
    )
    assert relais.default_recipient(world["toulouse"], "stroke_opinion") == {
        "establishment_id": world["montpellier"], "service_id": world["neuro"], "practitioner_id": None,
    }
    # per workflow and per establishment
    assert relais.default_recipient(world["toulouse"], "emergency_opinion") is None
    assert relais.default_recipient(world["montpellier"], "stroke_opinion") is None
    # a practitioner practising at the target; removed
    relais.set_default_recipient(
        establishment_id=world["toulouse"], workflow="stroke_opinion",
        to_establishment_id=world["montpellier"], to_service_code="neuroradio", to_practitioner_id=world["recipient"],
    )
    assert relais.default_recipient(world["toulouse"], "stroke_opinion")["practitioner_id"] == world["recipient"]
    relais.deactivate_practitioner(practitioner_id=world["recipient"])
    assert relais.default_recipient(world["toulouse"], "stroke_opinion") == {
        "establishment_id": world["montpellier"], "service_id": world["neuro"], "practitioner_id": None,
    }
    relais.set_default_recipient(establishment_id=world["toulouse"], workflow="stroke_opinion")
    assert relais.default_recipient(world["toulouse"], "stroke_opinion") is None
    assert relais.default_recipients(establishment_id=world["toulouse"]) == {}


def test_default_recipient_checks_its_target(relais: Relais, world: dict) -> None:
    with pytest.raises(InvalidFieldError, match="inconnu"):
        relais.set_default_recipient(
            establishment_id=world["toulouse"], workflow="stroke_opinion",
            to_establishment_id=world["toulouse"], to_service_code="neuroradio",
        )
    with pytest.raises(InvalidFieldError, match="n'exerce pas"):
        relais.set_default_recipient(
            establishment_id=world["toulouse"], workflow="stroke_opinion",
            to_establishment_id=world["montpellier"], to_practitioner_id=world["requester"],
        )
    with pytest.raises(InvalidFieldError):
        relais.set_default_recipient(establishment_id=world["toulouse"], workflow="nope",
                                     to_establishment_id=world["montpellier"])
    assert relais.default_recipient(world["toulouse"], "stroke_opinion") is None
