"""Relais application layer: the use cases, on one event store."""

from application.access import AccessUseCases
from application.dossiers import DossierUseCases
from application.history import HistoryUseCases
from application.imaging import ImagingUseCases


class Relais(ImagingUseCases, AccessUseCases, HistoryUseCases, DossierUseCases):
    """The whole platform's use cases (directory, dossiers, traced reads) on the `relais` event store."""

    # Pinned: eventsourcing names tables and tracking rows after it, and would otherwise
    # take the class name; a rename must never start an empty store.
    name = "relais"


__all__ = ["Relais"]
