"""Relais application layer: the use cases, on one event store."""

from application.dossiers import DossierUseCases


class Relais(DossierUseCases):
    """The whole platform's use cases (directory and dossiers) on the `relais` event store."""


__all__ = ["Relais"]
