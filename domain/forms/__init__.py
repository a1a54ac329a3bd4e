"""Structured forms per workflow, versioned as data (a subset of FHIR Questionnaire), and their validation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.forms import emergency, generic_opinion, imaging_transfer, kidney_transplant, out_of_region_opinion, stroke
from domain.forms.display import answer_text, display
from domain.forms.model import ITEM_TYPES, LOINC, AtLeastOne, Before, EnableWhen, FormDefinition, Item, SumEquals
from domain.forms.registry import FormRegistry, UnknownForm
from domain.forms.validation import FormInvalid
from domain.forms.validation import validate as _validate
from domain.values import Workflow

REGISTRY = FormRegistry()
for _module in (stroke, emergency, kidney_transplant, imaging_transfer, generic_opinion, out_of_region_opinion):
    for _definition in _module.DEFINITIONS:
        REGISTRY.register(_definition, workflow=_module.WORKFLOW)


def form_for(workflow: Workflow | str) -> FormDefinition:
    """The current form of a workflow (raises UnknownForm for a workflow without one, e.g. legacy)."""
    return REGISTRY.form_for(workflow)


def has_form(workflow: Workflow | str) -> bool:
    return REGISTRY.has_form(workflow)


def definition(form_id: str, version: int | None = None) -> FormDefinition:
    """A definition by id and version (any version ever shipped; the latest when version is None)."""
    return REGISTRY.definition(form_id, version)


def validate(form: FormDefinition, raw: dict[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    """Normalized, JSON-safe answers, or FormInvalid(errors: code → French message)."""
    return _validate(form, raw, now=now)


__all__ = [
    "ITEM_TYPES", "LOINC", "REGISTRY", "AtLeastOne", "Before", "EnableWhen", "FormDefinition", "FormInvalid",
    "FormRegistry", "Item", "SumEquals", "UnknownForm", "answer_text", "definition", "display", "form_for", "has_form",
    "validate",
]
