"""Application errors: what the web maps to 403/404/409, beside the domain's own (422)."""

from __future__ import annotations

from domain.errors import RelaisError


class NotFoundError(RelaisError, LookupError):
    """No such dossier, establishment, practitioner or node."""


class ForbiddenError(RelaisError, PermissionError):
    """The actor may not read or do this (checked server-side)."""


class ConflictError(RelaisError):
    """Someone else changed the same thing first; nothing of this request was recorded."""


class AlreadyExistsError(ConflictError):
    """An establishment, practitioner or node with this identifier already exists."""
