"""Searching names in read models: the domain's `folded` applied to stored text and to what is typed."""

from __future__ import annotations

from domain.values import folded


def search_text(patient: dict) -> str:
    """The `search` column of a patient identity: its names folded (imported history carries none)."""
    return " ".join(folded(x) for x in (patient.get("birth_name"), patient.get("used_name"), patient.get("first_names")) if x)


def contains(typed: str) -> str:
    """A LIKE pattern finding what was typed anywhere in a folded text (LIKE's wildcards typed are dropped)."""
    return "%" + folded(typed).replace("\\", "").replace("%", "").replace("_", "") + "%"

