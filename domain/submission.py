"""The Submission aggregate: one form sent by a user, recorded with the command it ran (once)."""

from __future__ import annotations

import re
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidFieldError

SUBMISSIONS = uuid5(NAMESPACE_URL, "relais:submission")
TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def submission_id(practitioner_id: str, token: str) -> UUID:
    """The stream of the submission of form `token` by this practitioner (a token is theirs alone)."""
    if not TOKEN.fullmatch(token):
        raise InvalidFieldError("form_token", "jeton de formulaire invalide : rechargez la page puis recommencez")
    return uuid5(SUBMISSIONS, f"{practitioner_id}:{token}")


def derived_id(submission: UUID, what: str) -> UUID:
    """An id made by the command of a submission (a document, a send): the same if the form comes again."""
    return uuid5(submission, what)


class Submission(Aggregate):
    """A form submitted once: its token names the stream, so the same form sent twice (a double click,
    a resend after a timeout) finds it and runs nothing again. It is saved in the same transaction as
    what its command changed: both are recorded, or neither."""

    TOPIC = "relais:Submission"

    @staticmethod
    def create_id(practitioner_id: str, token: str, **_: object) -> UUID:
        return submission_id(practitioner_id, token)

    class Created(Aggregate.Created):
        """A form's command was recorded; the stream's only event."""

        TOPIC = "relais:Submission.Created"

        practitioner_id: str
        token: str
        dossier_id: str
        occurred_at: datetime

    @event(Created)
    def __init__(self, *, practitioner_id: str, token: str, dossier_id: str, occurred_at: datetime) -> None:
        self.practitioner_id = practitioner_id
        self.token = token
        self.dossier_id = dossier_id
        self.occurred_at = occurred_at
