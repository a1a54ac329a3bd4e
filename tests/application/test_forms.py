"""Answering a dossier's workflow form (real PostgreSQL): validated, recorded with its form id and version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from application import Relais
from application.errors import ForbiddenError
from domain import forms
from domain.errors import InvalidFieldError, NotAllowedError, RelaisError
from domain.forms import FormDefinition, FormInvalid, FormRegistry, Item
from domain.values import PARIS
from tests.conftest import PATIENT


def local(minutes_ago: int) -> str:
    """A datetime-local input's value, as a browser in Paris posts it."""
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).astimezone(PARIS).strftime("%Y-%m-%dT%H:%M")


def stroke_raw() -> dict:
    return {
        "time_reference": "last_known_well", "last_known_well_at": local(120), "arrival_at": local(60),
        "nihss_total": "9", "anticoagulant": "unknown", "imaging": "mri", "angiography": "oui",
        "thrombolysis": "non", "question": ["thrombectomy"],
    }


@pytest.fixture
def draft(relais: Relais, world: dict) -> str:
    return relais.create_dossier(actor_id=world["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                                 urgency="stat", consent="given", **PATIENT)


def test_answers_are_recorded_with_the_form_id_and_version(relais: Relais, world: dict, draft: str) -> None:
    relais.answer_form(dossier_id=draft, actor_id=world["requester"], raw=stroke_raw())
    details = relais.get_dossier(dossier_id=draft, actor_id=world["requester"])
    assert details.form is not None
    assert (details.form["id"], details.form["version"]) == ("stroke_opinion", 1)
    assert details.form["answers"]["nihss_total"] == 9 and details.form["answers"]["angiography"] is True
    history = relais.dossier_history(dossier_id=draft, actor_id=world["auditor"])
    answered = [h for h in history if h.event == "FormAnswered"]
    assert len(answered) == 1 and answered[0].data["form"] == {"id": "stroke_opinion", "version": 1}
    before = relais.max_position()
    relais.answer_form(dossier_id=draft, actor_id=world["requester"], raw=stroke_raw())  # the same answers again
    assert relais.max_position() == before


def test_invalid_answers_record_nothing_and_name_each_field(relais: Relais, world: dict, draft: str) -> None:
    before = relais.max_position()
    with pytest.raises(FormInvalid) as caught:
        relais.answer_form(dossier_id=draft, actor_id=world["requester"],
                           raw={**stroke_raw(), "nihss_total": "50", "arrival_at": local(-60)})
    assert caught.value.errors == {"arrival_at": "heure dans le futur", "nihss_total": "doit être entre 0 et 42"}
    assert relais.max_position() == before


def test_the_version_shown_must_be_the_dossiers(relais: Relais, world: dict, draft: str) -> None:
    with pytest.raises(InvalidFieldError, match="version 1 du formulaire, pas la version 2"):
        relais.answer_form(dossier_id=draft, actor_id=world["requester"], raw=stroke_raw(), form_version=2)
    relais.answer_form(dossier_id=draft, actor_id=world["requester"], raw=stroke_raw(), form_version=1)


def test_a_dossier_keeps_the_version_it_was_answered_with(
    relais: Relais, world: dict, draft: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    relais.answer_form(dossier_id=draft, actor_id=world["requester"], raw=stroke_raw())
    v1 = forms.definition("stroke_opinion", 1)
    v2 = FormDefinition(id="stroke_opinion", version=2, title="AVC aigu",
                        items=(*v1.items, Item("mrs_before", "Rankin antérieur", "integer", required=True, min=0, max=5)),
                        rules=v1.rules)
    registry = FormRegistry()
    registry.register(v1, workflow="stroke_opinion")
    registry.register(v2, workflow="stroke_opinion")
    monkeypatch.setattr(forms, "REGISTRY", registry)
    assert forms.form_for("stroke_opinion").version == 2
    # the started dossier is still read and validated with version 1 (no Rankin asked)
    relais.answer_form(dossier_id=draft, actor_id=world["requester"], raw={**stroke_raw(), "nihss_total": "10"})
    assert relais.get_dossier(dossier_id=draft, actor_id=world["requester"]).form["version"] == 1  # type: ignore[index]
    # a new dossier gets version 2, whose new item is required
    other = relais.create_dossier(actor_id=world["requester"], workflow="stroke_opinion", question="?",
                                  consent="given", **PATIENT)
    with pytest.raises(FormInvalid) as caught:
        relais.answer_form(dossier_id=other, actor_id=world["requester"], raw=stroke_raw())
    assert caught.value.errors == {"mrs_before": "champ obligatoire"}
    relais.answer_form(dossier_id=other, actor_id=world["requester"], raw={**stroke_raw(), "mrs_before": "1"})
    assert relais.get_dossier(dossier_id=other, actor_id=world["requester"]).form["version"] == 2  # type: ignore[index]


def test_others_may_not_answer(relais: Relais, world: dict, draft: str) -> None:
    before = relais.max_position()
    for who in (world["outsider"], world["recipient"], world["auditor"]):
        with pytest.raises((ForbiddenError, NotAllowedError, RelaisError)) as caught:
            relais.answer_form(dossier_id=draft, actor_id=who, raw={"nihss_total": "oops"})
        assert not isinstance(caught.value, FormInvalid)  # refused for who they are, before what they typed
    assert relais.max_position() == before


def test_after_sending_the_form_is_closed(relais: Relais, world: dict, sent_dossier: dict) -> None:
    with pytest.raises(RelaisError, match="envoy|brouillon|modifi"):
        relais.answer_form(dossier_id=sent_dossier["dossier_id"], actor_id=world["requester"], raw=stroke_raw())


def test_a_changed_workflow_takes_its_own_form(relais: Relais, world: dict, draft: str) -> None:
    """The draft's workflow changed after its form was answered: the new workflow's form is asked and recorded."""
    relais.answer_form(dossier_id=draft, actor_id=world["requester"], raw=stroke_raw())
    relais.edit_draft(dossier_id=draft, actor_id=world["requester"], workflow="emergency_opinion")
    with pytest.raises(FormInvalid) as caught:
        relais.answer_form(dossier_id=draft, actor_id=world["requester"], raw=stroke_raw())
    assert set(caught.value.errors) == {"specialty", "vital_distress"}
    relais.answer_form(dossier_id=draft, actor_id=world["requester"], form_version=1,
                       raw={"specialty": "Neurochirurgie", "question": "Hématome ?", "vital_distress": "non"})
    form = relais.get_dossier(dossier_id=draft, actor_id=world["requester"]).form
    assert form is not None and (form["id"], form["version"]) == ("emergency_opinion", 1)
