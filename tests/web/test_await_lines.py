"""History lines of an exam awaited by Patient ID and of images held because several dossiers await it."""

from __future__ import annotations

from typing import Any, cast

from web.names import Names
from web.present import timeline_line

NAMES = cast(Names, None)  # these lines name nobody


def test_awaited_and_ambiguous_lines() -> None:
    data: dict[str, Any] = {"accession_number": "", "patient_id": "IPP-4521", "issuer": "CH_RODEZ"}
    assert timeline_line("ImagingAwaited", data, NAMES) == (
        "Examen attendu de la passerelle", "identifiant patient IPP-4521 (CH_RODEZ)")
    assert timeline_line("ImagingAwaited", {"accession_number": "ACC1"}, NAMES) == (
        "Examen attendu de la passerelle", "n° d'examen ACC1")
    held = {"reason": "ambiguous", "identities": [{"count": 2}]}
    assert timeline_line("ImagingHeld", held, NAMES)[1] == "2 images, identifiant patient attendu par plusieurs télédossiers"
    assert timeline_line("ImagingHeld", dict(held, reason="auto_refused"), NAMES)[1] == "2 images, examen attendu non joint"
