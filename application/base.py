"""The use cases' shared core: the event store and the clock, loading and committing aggregates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, DomainEvent
from eventsourcing.persistence import IntegrityError

from application.errors import ConflictError, NotFoundError
from domain.values import Json

A = TypeVar("A", bound=Aggregate)

SYSTEM_ACTOR: Json = {
    "practitioner_id": "system", "role": "system", "establishment_id": "", "service_ids": [], "name": "Relais",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_uuid(value: UUID | str, field: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFoundError(f"{field} : identifiant invalide « {value} »") from None


def check_version(aggregate: Aggregate, expected_version: int | None) -> None:
    """A command sent against a version the user read: refused if the aggregate has moved since."""
    if expected_version is not None and aggregate.version != expected_version:
        raise ConflictError(
            f"le dossier a changé depuis votre lecture (version {expected_version} → {aggregate.version})"
        )


class Core:
    """What every use case shares: the store (load, exists, commit, read events) and the clock."""

    def __init__(self, store: Application[UUID], clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.clock = clock

    def load(self, cls: type[A], aggregate_id: UUID | str, what: str, version: int | None = None) -> A:
        """The aggregate of type `cls`; NotFoundError (naming `what`) if absent or of another type."""
        try:
            agg: Aggregate = self.store.repository.get(parse_uuid(aggregate_id, what), version=version)
        except AggregateNotFoundError:
            raise NotFoundError(f"{what} introuvable : {aggregate_id}") from None
        if not isinstance(agg, cls):
            raise NotFoundError(f"{what} introuvable : {aggregate_id}")
        return agg

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate of type `cls` if there is one with this id, else None."""
        try:
            agg: Aggregate = self.store.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return agg if isinstance(agg, cls) else None

    def exists(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self.store.repository

    def commit(self, *aggregates: Aggregate) -> int | None:
        """Saves all pending events in one transaction; a version clash becomes ConflictError.
        Returns the position of the last event in the log (None if there was nothing to save)."""
        try:
            recordings = self.store.save(*aggregates)
        except IntegrityError:
            raise ConflictError(
                "modification concurrente : quelqu'un a agi sur ce dossier en même temps, rien n'a été enregistré"
            ) from None
        return recordings[-1].notification.id if recordings else None

    def events_of(self, aggregate_id: UUID, up_to: int | None = None) -> Iterator[DomainEvent]:
        """An aggregate's events in order, up to version `up_to` (all by default). Every event of
        this store is a library DomainEvent (aggregate events), so it has its `timestamp`."""
        return cast("Iterator[DomainEvent]", self.store.events.get(aggregate_id, lte=up_to))

    def max_position(self) -> int:
        """The position of the last event in the log (0 for an empty store)."""
        return self.store.recorder.max_notification_id() or 0
