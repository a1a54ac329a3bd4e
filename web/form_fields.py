"""What the form templates need of a definition: its lookup by version, inputs' values, shown items, answers as text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain import forms
from domain.forms import FormDefinition, Item
from domain.values import PARIS

TRUE_WORDS = ("true", "oui", "yes", "1", "on")
FALSE_WORDS = ("false", "non", "no", "0")


def _lenient(item: Item, value: Any) -> Any:
    """A value as a condition reads it, whether already normalized or as typed (a form shown again)."""
    if item.type == "boolean" and isinstance(value, str):
        lowered = value.strip().lower()
        return True if lowered in TRUE_WORDS else False if lowered in FALSE_WORDS else None
    if item.type == "multichoice" and isinstance(value, str):
        return [value] if value else []
    return value


def shown_items(definition: FormDefinition, answers: dict[str, Any] | None) -> set[str]:
    """The codes of the items shown for these answers (the same rule as validation: in order, hidden items
    count as unanswered for the items after them)."""
    seen: dict[str, Any] = {}
    shown: set[str] = set()
    for item in definition.items:
        if item.enabled(seen):
            shown.add(item.code)
            value = (answers or {}).get(item.code)
            if value not in (None, "", []):
                seen[item.code] = _lenient(item, value)
    return shown


def input_value(item: Item, value: Any) -> Any:
    """An answer as its input shows it: a datetime-local in Paris time, « true »/« false », 72,5."""
    if value is None:
        return [] if item.type == "multichoice" else ""
    if item.type == "multichoice":
        return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    if isinstance(value, bool):
        return "true" if value else "false"
    if item.type == "datetime" and isinstance(value, str) and len(value) > 16:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is not None:
            moment = moment.astimezone(PARIS)
        return moment.strftime("%Y-%m-%dT%H:%M")
    if item.type == "decimal" and isinstance(value, float):
        return f"{value:g}".replace(".", ",")
    return str(value)


def conditions(item: Item) -> list[dict[str, Any]]:
    """An item's conditions as the page's script reads them (data-enable-when)."""
    return [c.as_json() for c in item.enable_when]


def form_definition(form_id: str, version: int | None = None) -> FormDefinition:
    return forms.definition(form_id, version)


def register(env_globals: dict[str, Any]) -> None:
    """The templates' globals for forms (web/templates/forms/_macros.html)."""
    env_globals.update(
        form_definition=form_definition, form_display=forms.display, form_shown_items=shown_items,
        form_input_value=input_value, form_conditions=conditions,
        now_paris_input=lambda: datetime.now(PARIS).strftime("%Y-%m-%dT%H:%M"),  # a datetime-local's value now
    )
