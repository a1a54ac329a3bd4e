"""Answers as a reader sees them: (label, French text) for each answered item, in the form's order."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from domain.forms.model import FormDefinition, Item
from domain.values import PARIS


def display(definition: FormDefinition, answers: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Each answered item of the definition (the version the answers were given with) as (label, text);
    items the answers do not hold are left out, and so are answers to items this version lacks."""
    answers = answers or {}
    return [(item.label, answer_text(item, answers[item.code])) for item in definition.items
            if answers.get(item.code) not in (None, "", [])]


def answer_text(item: Item, value: Any) -> str:
    """One answer in French: option labels, « Oui »/« Non », 08/12/2026 à 04 h 10, 72,5 kg."""
    unit = f" {item.unit}" if item.unit else ""
    if item.type == "multichoice":
        return ", ".join(item.option_label(str(code)) for code in value)
    if item.type == "choice":
        return item.option_label(str(value))
    if item.type == "boolean":
        return "Oui" if value else "Non"
    if item.type == "datetime":
        moment = datetime.fromisoformat(str(value))
        moment = moment.astimezone(PARIS) if moment.tzinfo else moment
        return f"{moment:%d/%m/%Y} à {moment:%H} h {moment:%M}"
    if item.type == "date":
        return f"{date.fromisoformat(str(value)):%d/%m/%Y}"
    if item.type in ("integer", "decimal"):
        number = float(value)
        shown = str(int(number)) if number.is_integer() else f"{number:g}".replace(".", ",")
        return f"{shown}{unit}"
    return str(value)
