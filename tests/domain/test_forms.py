"""The workflow forms: each definition accepts a valid answer and refuses each invalid field in French."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from domain import forms
from domain.errors import InvalidFieldError
from domain.forms import FormInvalid, display, form_for, validate
from domain.values import Workflow

NOW = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)  # 11:00 in Paris


def check(workflow: Workflow, raw: dict[str, Any]) -> dict[str, Any]:
    return validate(form_for(workflow), raw, now=NOW)


def errors(workflow: Workflow, raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(FormInvalid) as caught:
        check(workflow, raw)
    assert isinstance(caught.value, InvalidFieldError)
    assert caught.value.field == next(iter(caught.value.errors))
    return caught.value.errors


STROKE = {
    "time_reference": "onset", "onset_at": "2026-12-08T09:10", "arrival_at": "2026-12-08T09:45",
    "nihss_total": "14", "anticoagulant": "no", "weight": "72,5", "imaging": "ct", "angiography": "true",
    "thrombolysis": "false", "question": ["thrombectomy", "transfer"],
}


def test_stroke_valid_answers_are_normalized() -> None:
    answers = check(Workflow.STROKE_OPINION, STROKE)
    assert answers == {
        "time_reference": "onset", "onset_at": "2026-12-08T09:10+01:00", "arrival_at": "2026-12-08T09:45+01:00",
        "nihss_total": 14, "anticoagulant": "no", "weight": 72.5, "imaging": "ct", "angiography": True,
        "thrombolysis": False, "question": ["thrombectomy", "transfer"],
    }
    item = form_for(Workflow.STROKE_OPINION).item("nihss_total")
    assert (item.system, item.system_code, item.min, item.max) == ("http://loinc.org", "72089-6", 0, 42)


@pytest.mark.parametrize(("change", "code", "message"), [
    ({"time_reference": ""}, "time_reference", "champ obligatoire"),
    ({"time_reference": "yesterday"}, "time_reference", "valeur non proposée"),
    ({"onset_at": ""}, "onset_at", "champ obligatoire"),
    ({"onset_at": "hier"}, "onset_at", "date et heure attendues"),
    ({"onset_at": "2026-12-08"}, "onset_at", "heure manquante"),
    ({"onset_at": "2026-12-08T10:00", "arrival_at": "2026-12-08T09:00"}, "onset_at", "doit précéder l'arrivée"),
    ({"arrival_at": "2026-12-08T12:30"}, "arrival_at", "heure dans le futur"),
    ({"nihss_total": "43"}, "nihss_total", "entre 0 et 42"),
    ({"nihss_total": "-1"}, "nihss_total", "entre 0 et 42"),
    ({"nihss_total": "douze"}, "nihss_total", "nombre entier attendu"),
    ({"nihss_total": "12.5"}, "nihss_total", "nombre entier attendu"),
    ({"anticoagulant": "peut-être"}, "anticoagulant", "valeur non proposée"),
    ({"anticoagulant": "yes"}, "anticoagulant_drug", "champ obligatoire"),
    ({"weight": "5"}, "weight", "entre 20 et 300 kg"),
    ({"weight": "lourd"}, "weight", "nombre attendu"),
    ({"imaging": ""}, "imaging", "champ obligatoire"),
    ({"angiography": ""}, "angiography", "champ obligatoire"),
    ({"angiography": "peut-être"}, "angiography", "oui ou non"),
    ({"thrombolysis": "true"}, "thrombolysis_at", "champ obligatoire"),
    ({"thrombolysis": "true", "thrombolysis_at": "2026-12-08T09:00"}, "onset_at", "ne peut précéder"),
    ({"question": []}, "question", "au moins un choix"),
    ({"question": ["thrombectomy", "teleportation"]}, "question", "valeur non proposée"),
    ({"question": ["other"]}, "question_detail", "champ obligatoire"),
])
def test_stroke_each_invalid_field_is_named_in_french(change: dict[str, Any], code: str, message: str) -> None:
    found = errors(Workflow.STROKE_OPINION, {**STROKE, **change})
    assert code in found and message in found[code], found


def test_stroke_anticoagulant_yes_needs_the_drug_and_the_last_dose() -> None:
    found = errors(Workflow.STROKE_OPINION, {**STROKE, "anticoagulant": "yes", "anticoagulant_drug": "other"})
    assert set(found) == {"anticoagulant_other", "anticoagulant_last_dose_at"}
    answers = check(Workflow.STROKE_OPINION, {
        **STROKE, "anticoagulant": "yes", "anticoagulant_drug": "apixaban", "anticoagulant_last_dose_at": "2026-12-07T20:00",
    })
    assert answers["anticoagulant_last_dose_at"] == "2026-12-07T20:00+01:00"


def test_stroke_hidden_items_are_neither_required_nor_kept() -> None:
    answers = check(Workflow.STROKE_OPINION, {
        **STROKE, "last_known_well_at": "2026-12-08T08:00", "anticoagulant_drug": "apixaban",
        "thrombolysis_at": "2026-12-08T09:50", "question_detail": "sans objet", "imaging": "none", "nihss_5a": "3",
    })
    for hidden in ("last_known_well_at", "anticoagulant_drug", "thrombolysis_at", "question_detail", "angiography", "nihss_5a"):
        assert hidden not in answers
    answers = check(Workflow.STROKE_OPINION, {**STROKE, "time_reference": "last_known_well", "onset_at": "",
                                              "last_known_well_at": "2026-12-08T07:30"})
    assert answers["last_known_well_at"] == "2026-12-08T07:30+01:00" and "onset_at" not in answers


def test_stroke_nihss_items_must_add_up_to_the_total_when_all_given() -> None:
    items = {f"nihss_{code}": "0" for code, _, _ in forms.stroke.NIHSS_ITEMS}
    detail = {**STROKE, "nihss_detail": "true", **items, "nihss_5a": "4", "nihss_6a": "4", "nihss_9": "3", "nihss_1a": "3"}
    assert check(Workflow.STROKE_OPINION, detail)["nihss_5a"] == 4
    found = errors(Workflow.STROKE_OPINION, {**detail, "nihss_total": "20"})
    assert "somme des items" in found["nihss_total"]
    found = errors(Workflow.STROKE_OPINION, {**detail, "nihss_5a": "5"})
    assert found == {"nihss_5a": "doit être entre 0 et 4"}
    partial = check(Workflow.STROKE_OPINION, {**STROKE, "nihss_detail": "true", "nihss_2": "1"})
    assert partial["nihss_2"] == 1  # some items only: no sum to check


def test_stroke_answers_displayed_in_french() -> None:
    shown = dict(display(form_for(Workflow.STROKE_OPINION), check(Workflow.STROKE_OPINION, STROKE)))
    assert shown["Début des symptômes"] == "08/12/2026 à 09 h 10"
    assert shown["Poids"] == "72,5 kg"
    assert shown["Angiographie (angio-scanner ou ARM) réalisée"] == "Oui"
    assert shown["Question posée"] == "Indication de thrombectomie, Transfert en unité neurovasculaire"
    assert "Dernière fois vu normal" not in shown


EMERGENCY = {"specialty": "Neurochirurgie", "question": "Hématome sous-dural : indication opératoire ?",
             "context": "Chute, AVK", "vital_distress": "non"}


def test_emergency_valid_and_invalid() -> None:
    assert check(Workflow.EMERGENCY_OPINION, EMERGENCY)["vital_distress"] is False
    assert errors(Workflow.EMERGENCY_OPINION, {**EMERGENCY, "question": "  "}) == {"question": "champ obligatoire"}
    assert "trop long" in errors(Workflow.EMERGENCY_OPINION, {**EMERGENCY, "specialty": "x" * 101})["specialty"]
    assert errors(Workflow.EMERGENCY_OPINION, {**EMERGENCY, "vital_distress": ""}) == {"vital_distress": "champ obligatoire"}
    assert "contrôle" in errors(Workflow.EMERGENCY_OPINION, {**EMERGENCY, "context": "a\x00b"})["context"]


KIDNEY = {"stage": "assessment", "donor_type": "living", "dialysis": "haemodialysis", "dialysis_since": "2024-03-01",
          "creatinine": "650", "immunisation": "immunised", "hla_antibodies": "Anti-A2 MFI 3000", "cpra": "45",
          "comorbidities": ["diabetes"], "question": "Inscription sur liste d'attente ?"}


def test_kidney_transplant_mdt_valid_and_invalid() -> None:
    answers = check(Workflow.KIDNEY_TRANSPLANT_MDT, KIDNEY)
    assert answers["cpra"] == 45 and answers["dialysis_since"] == "2024-03-01"
    assert check(Workflow.KIDNEY_TRANSPLANT_MDT, {**KIDNEY, "dialysis": "none"}).get("dialysis_since") is None
    assert errors(Workflow.KIDNEY_TRANSPLANT_MDT, {**KIDNEY, "dialysis_since": ""}) == {"dialysis_since": "champ obligatoire"}
    assert errors(Workflow.KIDNEY_TRANSPLANT_MDT, {**KIDNEY, "dialysis_since": "2027-01-01"}) == {
        "dialysis_since": "date dans le futur"}
    assert "DFG" in errors(Workflow.KIDNEY_TRANSPLANT_MDT, {**KIDNEY, "creatinine": ""})["egfr"]
    assert errors(Workflow.KIDNEY_TRANSPLANT_MDT, {**KIDNEY, "egfr": "200"}) == {
        "egfr": "doit être entre 0 et 150 mL/min/1,73 m²"}
    assert errors(Workflow.KIDNEY_TRANSPLANT_MDT, {**KIDNEY, "hla_antibodies": ""}) == {"hla_antibodies": "champ obligatoire"}
    assert errors(Workflow.KIDNEY_TRANSPLANT_MDT, {**KIDNEY, "cpra": "101"}) == {"cpra": "doit être entre 0 et 100 %"}
    assert errors(Workflow.KIDNEY_TRANSPLANT_MDT, {**KIDNEY, "donor_type": "robot"})["donor_type"].startswith("valeur non")
    assert errors(Workflow.KIDNEY_TRANSPLANT_MDT, {**KIDNEY, "question": ""}) == {"question": "champ obligatoire"}


def test_imaging_transfer_valid_and_invalid() -> None:
    raw = {"reason": "second_reading", "requested_action": "import", "expected_by": "2027-01-15"}
    assert check(Workflow.IMAGING_TRANSFER, raw)["expected_by"] == "2027-01-15"  # a date to come is fine here
    assert errors(Workflow.IMAGING_TRANSFER, {**raw, "requested_action": ""}) == {"requested_action": "champ obligatoire"}
    assert errors(Workflow.IMAGING_TRANSFER, {**raw, "reason": "other"}) == {"reason_detail": "champ obligatoire"}
    assert "date attendue" in errors(Workflow.IMAGING_TRANSFER, {**raw, "expected_by": "15/01"})["expected_by"]


@pytest.mark.parametrize("workflow", [Workflow.GENERIC_OPINION, Workflow.OUT_OF_REGION_OPINION])
def test_opinions_valid_and_invalid(workflow: Workflow) -> None:
    raw = {"specialty": "Dermatologie", "question": "Lésion pigmentée : exérèse ?", "context": "Évolution récente"}
    assert check(workflow, raw) == raw
    assert errors(workflow, {**raw, "specialty": ""}) == {"specialty": "champ obligatoire"}
    assert errors(workflow, {**raw, "question": ""}) == {"question": "champ obligatoire"}


def test_out_of_region_asks_why() -> None:
    raw = {"specialty": "Génétique", "question": "?", "why_out_of_region": "reference_centre"}
    assert dict(display(form_for(Workflow.OUT_OF_REGION_OPINION), check(Workflow.OUT_OF_REGION_OPINION, raw)))[
        "Pourquoi hors région"] == "Centre de référence"


def test_every_workflow_but_legacy_has_a_form() -> None:
    for workflow in Workflow:
        assert forms.has_form(workflow) == (workflow != Workflow.LEGACY)
    with pytest.raises(forms.UnknownForm):
        form_for(Workflow.LEGACY)
