"""Server-side validation of a form's answers: each item read, normalized to JSON, checked, in French."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from typing import Any

from domain.errors import InvalidFieldError
from domain.forms.model import AtLeastOne, Before, FormDefinition, Item, SumEquals
from domain.values import CLOCK_SKEW, PARIS

Raw = dict[str, Any]
TRUE = ("true", "oui", "yes", "1", "on")
FALSE = ("false", "non", "no", "0")


class FormInvalid(InvalidFieldError):
    """Answers refused: `errors` maps each failing item's code to its French message (`field` is the first)."""

    def __init__(self, errors: dict[str, str], definition: FormDefinition | None = None):
        first = next(iter(errors))
        label = definition.item(first).label if definition and first in {i.code for i in definition.items} else first
        super().__init__(first, f"{label} : {errors[first]}" if len(errors) == 1 else
                         f"{label} : {errors[first]} (et {len(errors) - 1} autre(s) champ(s) à corriger)")
        self.errors = dict(errors)


class _Refused(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def validate(definition: FormDefinition, raw: Raw, *, now: datetime | None = None) -> dict[str, Any]:
    """The answers normalized (int, float, bool, ISO date or time with its offset, option codes), only for
    the items shown; raises FormInvalid with every error found. Hidden items are neither required nor kept."""
    now = now or datetime.now(UTC)
    answers: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for item in definition.items:
        if not item.enabled(answers):
            continue
        try:
            value = _read(item, raw.get(item.code), now)
        except _Refused as refused:
            errors[item.code] = refused.message
            continue
        if value is None:
            if item.required:
                errors[item.code] = "au moins un choix attendu" if item.type == "multichoice" else "champ obligatoire"
        else:
            answers[item.code] = value
    for rule in definition.rules:
        failing = _broken(rule, answers)
        if failing and failing not in errors:
            errors[failing] = rule.message
    if errors:
        ordered = {item.code: errors[item.code] for item in definition.items if item.code in errors}
        raise FormInvalid(ordered, definition)
    return answers


def _broken(rule: Before | SumEquals | AtLeastOne, answers: dict[str, Any]) -> str | None:
    """The code of the item a rule's error belongs to, or None when the rule holds (or cannot be checked)."""
    if isinstance(rule, Before):
        earlier, later = answers.get(rule.earlier), answers.get(rule.later)
        if earlier is None or later is None:
            return None
        return rule.earlier if _instant(earlier) > _instant(later) else None
    if isinstance(rule, SumEquals):
        if rule.total not in answers or any(part not in answers for part in rule.parts):
            return None
        return rule.total if sum(answers[p] for p in rule.parts) != answers[rule.total] else None
    return None if any(code in answers for code in rule.codes) else rule.codes[0]


def _instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=PARIS)


def _read(item: Item, value: Any, now: datetime) -> Any:
    """One item's value normalized, None when not answered; raises _Refused with the French reason."""
    if item.type == "multichoice":
        values = value if isinstance(value, list | tuple) else ([] if value is None else [value])
        codes = [str(v).strip() for v in values if str(v).strip()]
        allowed = [code for code, _ in item.options]
        unknown = [code for code in codes if code not in allowed]
        if unknown:
            raise _Refused(f"valeur non proposée : {unknown[0][:40]}")
        return [code for code in allowed if code in codes] or None
    if isinstance(value, list | tuple):
        value = next((v for v in value if str(v).strip()), None)
    if value is None:
        return None
    if isinstance(value, bool):
        value = "true" if value else "false"
    text = str(value).strip()
    if not text:
        return None
    if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", text):
        raise _Refused("caractères de contrôle interdits")
    return _READERS[item.type](item, text, now)


def _string(item: Item, text: str, now: datetime) -> str:
    if len(text) > item.length_limit:
        raise _Refused(f"trop long ({len(text)} caractères, maximum {item.length_limit})")
    return text


def _integer(item: Item, text: str, now: datetime) -> int:
    if not re.fullmatch(r"[+-]?\d{1,9}", text):
        raise _Refused("nombre entier attendu")
    number = int(text)
    _in_range(item, number)
    return number


def _decimal(item: Item, text: str, now: datetime) -> float:
    if not re.fullmatch(r"[+-]?\d{1,9}([.,]\d{1,6})?", text):
        raise _Refused("nombre attendu (par exemple 72,5)")
    number = float(text.replace(",", "."))
    if not math.isfinite(number):
        raise _Refused("nombre attendu")
    _in_range(item, number)
    return number


def _in_range(item: Item, number: float) -> None:
    unit = f" {item.unit}" if item.unit else ""
    low, high = (_number(item.min), _number(item.max))
    if item.min is not None and item.max is not None and not item.min <= number <= item.max:
        raise _Refused(f"doit être entre {low} et {high}{unit}")
    if item.min is not None and number < item.min:
        raise _Refused(f"doit être au moins {low}{unit}")
    if item.max is not None and number > item.max:
        raise _Refused(f"doit être au plus {high}{unit}")


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value).replace(".", ",")


def _boolean(item: Item, text: str, now: datetime) -> bool:
    lowered = text.lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise _Refused("répondez oui ou non")


def _date(item: Item, text: str, now: datetime) -> str:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise _Refused("date attendue (jj/mm/aaaa)") from None
    if item.past and day > now.astimezone(PARIS).date():
        raise _Refused("date dans le futur")
    return day.isoformat()


def _datetime(item: Item, text: str, now: datetime) -> str:
    try:
        moment = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise _Refused("date et heure attendues (jj/mm/aaaa hh:mm)") from None
    if len(text) <= 10:
        raise _Refused("heure manquante")
    moment = moment.replace(tzinfo=PARIS) if moment.tzinfo is None else moment
    if moment.year < 1900:
        raise _Refused("date invraisemblable")
    if item.past and moment > now + CLOCK_SKEW:
        raise _Refused("heure dans le futur")
    return moment.astimezone(PARIS).replace(second=0, microsecond=0).isoformat(timespec="minutes")


def _choice(item: Item, text: str, now: datetime) -> str:
    if text not in {code for code, _ in item.options}:
        raise _Refused(f"valeur non proposée : {text[:40]}")
    return text


_READERS = {
    "string": _string, "text": _string, "integer": _integer, "decimal": _decimal, "boolean": _boolean,
    "date": _date, "datetime": _datetime, "choice": _choice,
}
