"""The legacy history may send a dossier twice to one establishment (two of its services, which
its export does not name); a live dossier still may not address the same recipient twice."""

from __future__ import annotations

import uuid

import pytest

from domain.errors import InvalidFieldError
from domain.values import Actor
from tests.domain.test_imported_dossier import REQUESTER, SYSTEM, T0, imported, live, recipient


def test_an_imported_dossier_is_sent_twice_to_one_establishment():
    d = imported()
    d.address(recipient=recipient("s1"), actor=SYSTEM, occurred_at=T0)
    d.address(recipient=recipient("s2"), actor=SYSTEM, occurred_at=T0)
    d.send(actor=SYSTEM, occurred_at=T0)
    assert sorted(d.sends) == ["s1", "s2"]
    with pytest.raises(InvalidFieldError, match="envoi déjà existant"):
        d.address(recipient=recipient("s1"), actor=SYSTEM, occurred_at=T0)


def test_a_live_dossier_still_refuses_the_same_recipient_twice():
    d = live()
    clinician = Actor(practitioner_id=str(uuid.UUID(int=1)), role="clinician", establishment_id=REQUESTER)
    d.address(recipient=recipient("s1"), actor=clinician, occurred_at=T0)
    with pytest.raises(InvalidFieldError, match="déjà adressé"):
        d.address(recipient=recipient("s2"), actor=clinician, occurred_at=T0)
