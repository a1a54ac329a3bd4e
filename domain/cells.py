"""Text as a spreadsheet cell: what an operator opens in Excel or LibreOffice never runs as a formula.

The one rule for every CSV the platform writes (statistics exports, the history import's refusals)
and for the identifiers it refuses (a legacy `dossier_id` may not look like a formula). A cell
starting with `=`, `+`, `-`, `@` (or their full-width forms, which spreadsheets also read),
a tab or a carriage return — after leading spaces — is a formula to a spreadsheet (OWASP "CSV
injection"); it is written with a leading apostrophe, which the spreadsheet shows as text. A plain
number (`-25`, `-10.29`, `-10,29`, `+33`) is not a formula and stays as it is: statistics keep
their negative variations.
"""

from __future__ import annotations

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?")


def formula_like(value: str) -> bool:
    """Whether a spreadsheet would read this text as a formula."""
    return value.lstrip(" ").startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value)


def neutralise_formula(value: str) -> str:
    """The text as a cell that shows it and never computes it."""
    return "'" + value if formula_like(value) else value
