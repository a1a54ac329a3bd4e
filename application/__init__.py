"""Relais application layer: the use cases, on one event store."""

from application.relais import Relais

__all__ = ["Relais"]
