"""Searching names in read models: the domain's `folded` applied to stored text, to what is typed, and in SQL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.values import folded


def search_text(patient: Mapping[str, Any]) -> str:
    """The `search` column of a patient identity: its names folded (imported history carries none)."""
    return " ".join(folded(x) for x in (patient.get("birth_name"), patient.get("used_name"), patient.get("first_names")) if x)


def contains(typed: str) -> str:
    """A LIKE pattern finding what was typed anywhere in a folded text (LIKE's wildcards typed are dropped)."""
    return "%" + folded(typed).replace("\\", "").replace("%", "").replace("_", "") + "%"


# `folded` in SQL for text stored unfolded (the directory's names): translate() maps each letter that
# folds to one other letter — every Latin-1 and Latin Extended-A letter, upper or lower case — and
# drops combining accents; lower() then does ASCII. Letters folding to two (Ĳ → ij, ŉ) are left
# as they are. tests/projections/test_search.py checks it against `folded` letter by letter.
LATIN_LETTERS = [chr(c) for c in range(0xC0, 0x180) if chr(c).isalpha()]
_COMBINING = [chr(c) for c in range(0x300, 0x370)]
_PAIRS = [(c, folded(c)) for c in LATIN_LETTERS if len(folded(c)) == 1 and folded(c) != c]
FOLD_FROM = "".join(c for c, _ in _PAIRS) + "".join(_COMBINING)  # those beyond FOLD_TO's length are dropped
FOLD_TO = "".join(f for _, f in _PAIRS)


def folded_sql(expression: str) -> str:
    """The SQL expression of `expression` folded as `folded` does (its result has no surrounding spaces trimmed)."""
    return f"lower(translate({expression}, '{FOLD_FROM}', '{FOLD_TO}'))"
