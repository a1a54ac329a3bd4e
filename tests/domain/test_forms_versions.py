"""Form versions: a changed definition is a new version kept beside the old one, which still validates and displays."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from domain import forms
from domain.forms import EnableWhen, FormDefinition, FormInvalid, FormRegistry, Item, UnknownForm, display, validate
from domain.values import Workflow

NOW = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)

V1 = FormDefinition(id="wound", version=1, title="Plaie", items=(
    Item("site", "Localisation", "choice", required=True, options=(("arm", "Bras"), ("leg", "Jambe"))),
    Item("size", "Taille", "integer", min=0, max=50, unit="cm"),
))
V2 = FormDefinition(id="wound", version=2, title="Plaie", items=(
    Item("site", "Localisation", "choice", required=True, options=(("arm", "Bras"), ("leg", "Jambe"), ("head", "Tête"))),
    Item("size_mm", "Taille", "integer", required=True, min=0, max=500, unit="mm"),
    Item("infected", "Signes d'infection", "boolean", required=True),
    Item("since", "Depuis le", "date", enable_when=(EnableWhen("infected", "=", True),)),
))


@pytest.fixture
def registry() -> FormRegistry:
    r = FormRegistry()
    r.register(V1, workflow="wound_care")
    r.register(V2, workflow="wound_care")
    return r


def test_the_current_version_is_the_highest_and_the_old_one_stays(registry: FormRegistry) -> None:
    assert registry.form_for("wound_care") is V2
    assert registry.definition("wound", 1) is V1
    assert registry.versions("wound") == [1, 2]


def test_an_old_version_still_validates_and_displays_its_own_items(registry: FormRegistry) -> None:
    old = registry.definition("wound", 1)
    answers = validate(old, {"site": "leg", "size": "4"}, now=NOW)
    assert answers == {"site": "leg", "size": 4}
    assert display(old, answers) == [("Localisation", "Jambe"), ("Taille", "4 cm")]
    with pytest.raises(FormInvalid) as caught:  # the new version's rules are not the old one's
        validate(registry.form_for("wound_care"), {"site": "leg", "size": "4"}, now=NOW)
    assert set(caught.value.errors) == {"size_mm", "infected"}
    with pytest.raises(FormInvalid):
        validate(old, {"site": "head"}, now=NOW)  # an option only version 2 has
    assert display(V2, answers) == [("Localisation", "Jambe")]  # read with another version, its items are absent


def test_a_version_cannot_be_changed_in_place(registry: FormRegistry) -> None:
    registry.register(V1)  # the same definition again: nothing changes
    with pytest.raises(ValueError, match="make a new version"):
        registry.register(replace(V1, title="Plaie chronique"))


def test_unknown_form_or_version_is_refused_in_french(registry: FormRegistry) -> None:
    with pytest.raises(UnknownForm, match="version 3 du formulaire wound inconnue"):
        registry.definition("wound", 3)
    with pytest.raises(UnknownForm, match="formulaire inconnu"):
        registry.definition("burn", 1)


def test_a_condition_must_look_at_an_item_asked_before() -> None:
    with pytest.raises(ValueError, match="not asked before"):
        FormDefinition(id="x", version=1, title="x", items=(
            Item("a", "A", "string", enable_when=(EnableWhen("b"),)), Item("b", "B", "boolean"),
        ))


def test_every_shipped_definition_is_reachable_by_id_and_version() -> None:
    for workflow in Workflow:
        if forms.has_form(workflow):
            current = forms.form_for(workflow)
            assert forms.definition(current.id, current.version) is current
            assert current.key == {"id": current.id, "version": current.version}
