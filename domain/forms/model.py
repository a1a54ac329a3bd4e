"""The shape of a structured form: a versioned subset of FHIR Questionnaire (items, conditions, rules)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ITEM_TYPES = ("string", "text", "integer", "decimal", "boolean", "date", "datetime", "choice", "multichoice")
LOINC = "http://loinc.org"


@dataclass(frozen=True)
class EnableWhen:
    """Shows an item only when another item's answer matches (FHIR enableWhen): `operator` is "=" (for a
    multichoice: contains), "!=" or "exists" (answer given: `answer` True, or not: False)."""

    question: str
    operator: str = "="
    answer: Any = True

    def holds(self, answers: dict[str, Any]) -> bool:
        value = answers.get(self.question)
        if self.operator == "exists":
            return (value not in (None, "", [])) == bool(self.answer)
        if isinstance(value, list):
            found = self.answer in value
        else:
            found = value == self.answer
        return found if self.operator == "=" else (value is not None and not found)

    def as_json(self) -> dict[str, Any]:
        return {"question": self.question, "operator": self.operator, "answer": self.answer}


@dataclass(frozen=True)
class Item:
    """One question: its `code` (key of the answer), French `label`, type, whether required (when shown),
    the allowed `options` (code, label) of a choice, the range `min`/`max` of a number, its `unit`, a `help`
    line, a terminology coding (`system`, `system_code`: e.g. LOINC 72089-6) and its `enable_when` conditions
    (all must hold; a hidden item is neither required nor kept)."""

    code: str
    label: str
    type: str
    required: bool = False
    options: tuple[tuple[str, str], ...] = ()
    min: float | None = None
    max: float | None = None
    unit: str = ""
    help: str = ""
    system: str = ""
    system_code: str = ""
    enable_when: tuple[EnableWhen, ...] = ()
    max_length: int = 0
    past: bool = True  # a date or time may not be in the future

    def __post_init__(self) -> None:
        if self.type not in ITEM_TYPES:
            raise ValueError(f"unknown item type {self.type!r}")
        if self.type in ("choice", "multichoice") and not self.options:
            raise ValueError(f"item {self.code!r} needs options")

    def enabled(self, answers: dict[str, Any]) -> bool:
        return all(condition.holds(answers) for condition in self.enable_when)

    def option_label(self, code: str) -> str:
        return dict(self.options).get(code, code)

    @property
    def length_limit(self) -> int:
        return self.max_length or (4000 if self.type == "text" else 200)


@dataclass(frozen=True)
class Before:
    """A cross-item rule: the time `earlier` precedes (or equals) the time `later` when both are answered."""

    earlier: str
    later: str
    message: str


@dataclass(frozen=True)
class SumEquals:
    """A cross-item rule: when every one of `parts` is answered, their sum equals `total`."""

    total: str
    parts: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class AtLeastOne:
    """A cross-item rule: at least one of `codes` is answered (the error goes to the first)."""

    codes: tuple[str, ...]
    message: str


Rule = Before | SumEquals | AtLeastOne


@dataclass(frozen=True)
class FormDefinition:
    """A versioned form (FHIR Questionnaire): `id` stays the same across versions; a changed definition is
    a new `version` kept beside the old ones, so a dossier answered with version 1 still shows it."""

    id: str
    version: int
    title: str
    items: tuple[Item, ...]
    rules: tuple[Rule, ...] = field(default=())

    def __post_init__(self) -> None:
        codes = [item.code for item in self.items]
        if len(codes) != len(set(codes)):
            raise ValueError(f"form {self.id} v{self.version}: duplicate item codes")
        earlier: set[str] = set()
        for item in self.items:  # a condition looks at an item asked before it (answers are read in order)
            for condition in item.enable_when:
                if condition.question not in earlier:
                    raise ValueError(f"form {self.id}: {item.code} depends on {condition.question}, not asked before")
            earlier.add(item.code)

    @property
    def key(self) -> dict[str, Any]:
        """What an answer records of its form (the FHIR QuestionnaireResponse.questionnaire)."""
        return {"id": self.id, "version": self.version}

    def item(self, code: str) -> Item:
        for item in self.items:
            if item.code == code:
                return item
        raise KeyError(code)
