"""Form tokens: each form rendered gets a fresh one, and a command sent twice with it runs once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

FIELD = "form_token"


def new_token() -> str:
    """A fresh token for one rendering of one form (templates call it as `form_token()`)."""
    return secrets.token_urlsafe(18)


@dataclass
class ItemForm:
    """What a control adding or removing one item sends (a document, a recipient, a study): the token
    of its rendering, and the version it showed when it has one."""

    form_token: str = ""
    expected_version: int | None = None
