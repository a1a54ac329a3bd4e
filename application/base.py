"""The Relais event-sourced application: one store, one log, shared helpers for use cases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from application.errors import ConflictError, NotFoundError
from domain.dossier import Dossier
from domain.errors import InvalidFieldError

A = TypeVar("A", bound=Aggregate)

SYSTEM_ACTOR = {"practitioner_id": "system", "role": "system", "establishment_id": "", "service_ids": [], "name": "Relais"}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_uuid(value: str, field: str) -> UUID:
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        raise NotFoundError(f"{field} : identifiant invalide « {value} »") from None


class RelaisBase(Application[UUID]):
    """Base of the Relais application: store name pinned, snapshots for long dossiers."""

    name = "relais"  # table relais_events: never derive it from a class name
    snapshotting_intervals: ClassVar[dict[type[Aggregate], int]] = {Dossier: 25}

    def __init__(self, env: dict[str, str] | None = None, clock: Callable[[], datetime] = utcnow):
        super().__init__(env=env)
        self.clock = clock

    def load(self, cls: type[A], aggregate_id: UUID | str, what: str, version: int | None = None) -> A:
        try:
            agg = self.repository.get(parse_uuid(aggregate_id, what), version=version)
        except AggregateNotFoundError:
            raise NotFoundError(f"{what} introuvable : {aggregate_id}") from None
        if not isinstance(agg, cls):
            raise NotFoundError(f"{what} introuvable : {aggregate_id}")
        return agg

    def exists(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self.repository

    def commit(self, *aggregates: Aggregate) -> int | None:
        """Saves all pending events in one transaction; a version clash becomes ConflictError."""
        try:
            recordings = self.save(*aggregates)
        except IntegrityError:
            raise ConflictError(
                "modification concurrente : quelqu'un a agi sur ce dossier en même temps, rien n'a été enregistré"
            ) from None
        return recordings[-1].notification.id if recordings else None

    @staticmethod
    def check_version(aggregate: Aggregate, expected_version: int | None) -> None:
        if expected_version is not None and aggregate.version != expected_version:
            raise ConflictError(
                f"le dossier a changé depuis votre lecture (version {expected_version} → {aggregate.version})"
            )

    @contextmanager
    def field(self, name: str) -> Iterator[None]:
        """Re-labels a ValueError raised by an enum constructor as a field error."""
        try:
            yield
        except InvalidFieldError:
            raise
        except ValueError as e:
            raise InvalidFieldError(name, str(e)) from None

    def max_position(self) -> int:
        return self.recorder.max_notification_id() or 0


def event_summary(ev: Any) -> dict:
    """A plain dict of an event's own fields (for histories and audit)."""
    skip = {"originator_id", "originator_version", "timestamp"}
    return {k: v for k, v in ev.__dict__.items() if k not in skip}
