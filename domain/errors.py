"""Domain errors: one family per aggregate, each names what went wrong."""

from __future__ import annotations


class RelaisError(Exception):
    """Base of every error the product raises on purpose."""


class InvalidFieldError(RelaisError, ValueError):
    """A value given for a named field is not acceptable; nothing was recorded."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class DossierError(RelaisError):
    """Base of the errors raised by the Dossier aggregate."""


class DossierStateError(DossierError):
    """The dossier (or one of its sends) is not in a state that allows the action."""


class DossierNotDraftError(DossierStateError):
    """A sent dossier cannot be edited."""


class DossierClosedError(DossierStateError):
    """Nothing can be done on a closed or cancelled dossier."""


class SendStateError(DossierStateError):
    """The send (dossier × recipient) is not in a state that allows the action."""


class ConsentMissingError(DossierStateError):
    """A dossier cannot be sent without the patient's recorded consent."""


class NotAllowedError(DossierError):
    """The actor may not do this on this dossier (e.g. answering a send not addressed to them)."""


class UnknownSendError(DossierError):
    """No send with this id on this dossier."""


class UnknownDocumentError(DossierError):
    """No document with this id on this dossier."""


class DirectoryError(RelaisError):
    """Base of the errors raised by directory aggregates."""
