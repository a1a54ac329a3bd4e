"""An exam awaited by Accession Number or by Patient ID (ImagingAwaited v2, upcast from v1)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from application import Relais
from application.errors import ForbiddenError
from domain.dossier import Dossier
from domain.errors import DossierClosedError, InvalidFieldError
from tests.conftest import NOW, PATIENT


def new_dossier(relais: Relais, world: dict) -> str:
    return relais.create_dossier(actor_id=world["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                                 urgency="stat", consent="given", occurred_at=NOW, **PATIENT)


def test_await_by_patient_id_renews_and_keeps_the_issuer(relais: Relais, world: dict) -> None:
    did = new_dossier(relais, world)
    relais.await_imaging(dossier_id=did, actor_id=world["requester"], patient_id=" IPP123 ", issuer="CHR",
                         occurred_at=NOW)
    relais.await_imaging(dossier_id=did, actor_id=world["requester"], accession_number="ACC1", occurred_at=NOW)
    d = relais.load(Dossier, did, "d")
    assert d.awaited_patients == [{"id": "IPP123", "issuer": "CHR", "at": NOW.isoformat()}]
    assert d.awaited_accessions == ["ACC1"]
    later = NOW + timedelta(hours=3)
    relais.await_imaging(dossier_id=did, actor_id=world["requester"], patient_id="IPP123", issuer="CHR",
                         occurred_at=later)  # renewed
    relais.await_imaging(dossier_id=did, actor_id=world["requester"], accession_number="ACC1", occurred_at=later)
    d = relais.load(Dossier, did, "d")
    assert d.awaited_patients == [{"id": "IPP123", "issuer": "CHR", "at": later.isoformat()}]
    awaited = [e for e in relais.repository.event_store.get(d.id) if isinstance(e, Dossier.ImagingAwaited)]
    assert [(e.accession_number, e.patient_id) for e in awaited] == [("", "IPP123"), ("ACC1", ""), ("", "IPP123")]


@pytest.mark.parametrize("kwargs, field", [
    ({}, "accession_number"),
    ({"patient_id": "A\\B"}, "patient_id"),
    ({"patient_id": "x" * 65}, "patient_id"),
    ({"patient_id": "IPP\n1"}, "patient_id"),
    ({"issuer": "CHR"}, "issuer"),
    ({"accession_number": "A" * 17}, "accession_number"),
])
def test_await_checks_what_is_named(relais: Relais, world: dict, kwargs: dict[str, Any], field: str) -> None:
    did = new_dossier(relais, world)
    with pytest.raises(InvalidFieldError) as e:
        relais.await_imaging(dossier_id=did, actor_id=world["requester"], occurred_at=NOW, **kwargs)
    assert e.value.field == field


def test_only_the_requester_of_an_open_dossier_awaits(relais: Relais, world: dict) -> None:
    did = new_dossier(relais, world)
    with pytest.raises(ForbiddenError):
        relais.await_imaging(dossier_id=did, actor_id=world["recipient"], patient_id="IPP1", occurred_at=NOW)
    relais.cancel_dossier(dossier_id=did, actor_id=world["requester"], reason="doublon", occurred_at=NOW)
    with pytest.raises(DossierClosedError):
        relais.await_imaging(dossier_id=did, actor_id=world["requester"], patient_id="IPP1", occurred_at=NOW)


def test_v1_await_is_upcast() -> None:
    state: dict[str, Any] = {"accession_number": "ACC9"}
    Dossier.ImagingAwaited.upcast_v1_v2(state)
    assert state == {"accession_number": "ACC9", "patient_id": "", "issuer": ""}
