"""Form tokens: each form rendered gets a fresh one, and a command sent twice with it runs once."""

from __future__ import annotations

import secrets

FIELD = "form_token"


def new_token() -> str:
    """A fresh token for one rendering of one form (templates call it as `form_token()`)."""
    return secrets.token_urlsafe(18)
