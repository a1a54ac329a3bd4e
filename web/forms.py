"""Form tokens: each form rendered gets a fresh one, and a command sent twice with it runs once. Forms that
change a dossier name the version they showed: without it they are refused (400)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from application.actors import Acting
from application.commands import require_version
from web.session import SessionUser

FIELD = "form_token"


def new_token() -> str:
    """A fresh token for one rendering of one form (templates call it as `form_token()`)."""
    return secrets.token_urlsafe(18)


def form_version(value: str) -> int | None:
    """The version a form field names (None when it names none)."""
    value = value.strip()
    return int(value) if value.isdigit() else None


@dataclass
class ItemForm:
    """What a control adding or removing items of a dossier sends (a document, a recipient, a study): the
    token of its rendering and the version it showed, which it must send like every form that changes a
    dossier."""

    form_token: str = ""
    expected_version: int | None = None

    @classmethod
    def of_fields(cls, fields: Mapping[str, bytes]) -> ItemForm:
        """The same from the text fields of a multipart form."""
        return cls(fields.get(FIELD, b"").decode("ascii", "replace"),
                   form_version(fields.get("expected_version", b"").decode("ascii", "replace")))

    def acting(self, user: SessionUser, part: int | str = "") -> Acting:
        """Who the command acts as (the session), for this form sent (its token, `part` for one of several
        commands it runs); the version it showed is required."""
        token = f"{self.form_token}-{part}" if self.form_token and part != "" else self.form_token
        return user.acting(token, version_required=True)

    def require(self, user: SessionUser) -> None:
        """The version rule, asked before a page records anything else than its command (an import's
        studies); call it once the user's right to act is checked."""
        require_version(self.acting(user), self.expected_version)

    def versions(self, count: int) -> Iterator[tuple[int, int | None]]:
        """The part (for `acting`) and the version of each of the `count` commands this form runs (several files,
        several studies): the first on the version shown (required), the next ones each on the version the
        previous one made."""
        for i in range(count):
            yield i, None if self.expected_version is None else self.expected_version + i
