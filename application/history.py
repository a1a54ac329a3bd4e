"""History import use cases: the legacy platform's dossiers replayed as ordinary, marked events."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from application.base import SYSTEM_ACTOR, Core
from domain import directory as ids
from domain.directory import Establishment
from domain.dossier import Dossier
from domain.errors import RelaisError
from domain.identifiers import region_of
from domain.values import Actor, Json

LEGACY_NAMESPACE = uuid5(NAMESPACE_URL, "https://relais.invalid/legacy-history")
IMPORT_ACTOR = dict(SYSTEM_ACTOR, name="Import de l'historique")
IMPORTED_OPINION = "Avis rendu sur l'ancienne plateforme (contenu non repris à l'import)."
CLOSED_AT_IMPORT = "Historique importé : clôturé à l'import (l'ancienne plateforme ne l'avait pas clôturé)."
IMPORTED_ESTABLISHMENT_NAME = "Établissement {finess} (historique importé)"


class _ImportActor(Actor):
    """The system actor of the import; its dict is built once (dataclasses.asdict is deep and slow,
    and the import records it on every event)."""

    def as_dict(self) -> Json:
        return {**IMPORT_ACTOR, "service_ids": []}


IMPORT = _ImportActor.from_dict(IMPORT_ACTOR)


def legacy_dossier_id(legacy_id: str) -> UUID:
    """Deterministic: the same legacy dossier always gets the same id (a second import finds it)."""
    return uuid5(LEGACY_NAMESPACE, f"dossier:{legacy_id}")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True, slots=True)
class LegacySend:
    """One row of the legacy file: the dossier sent to one recipient establishment (optionally
    named by the legacy send identifier, and to one of its services)."""

    line: int
    recipient_finess: str
    recipient_department: str
    recipient_region: str
    channel: str | None
    sent_at: datetime
    answered_at: datetime | None
    send_id: str | None = None
    service: str | None = None

    def content(self) -> tuple[str | None, ...]:
        """What the row says about the send (not where it sits in the file)."""
        said: tuple[str | None, ...] = (
            self.recipient_finess, self.recipient_department, self.recipient_region, self.channel,
            _iso(self.sent_at), _iso(self.answered_at),
        )
        # Only when given, so that the digests of files without these columns stay what they were.
        if self.send_id is not None or self.service is not None:
            said += (self.send_id, self.service)
        return said

    def same(self) -> tuple[object, ...]:
        """What the row says, as a key (rows with equal keys are identical; `content` without its
        formatting, for the parser to compare every row cheaply)."""
        return (
            self.recipient_finess, self.recipient_department, self.recipient_region, self.channel,
            self.sent_at, self.answered_at, self.send_id, self.service,
        )

    def legacy(self) -> Json:
        """The legacy identifier and service, when the file gives them (kept on the recipient)."""
        return {k: v for k, v in (("send_id", self.send_id), ("service", self.service)) if v is not None}


@dataclass(frozen=True, slots=True)
class LegacyDossier:
    """A legacy dossier: its own fields and its sends (rows sharing a `dossier_id`)."""

    legacy_id: str
    workflow: str
    created_at: datetime
    requester_finess: str
    requester_department: str
    imaging_source: str
    closed_at: datetime | None
    sends: tuple[LegacySend, ...]
    file: str = ""

    @property
    def id(self) -> UUID:
        return legacy_dossier_id(self.legacy_id)

    @property
    def lines(self) -> list[int]:
        return [s.line for s in self.sends]

    def digest(self) -> str:
        """A fingerprint of the dossier's content (not of where it sits in the file)."""
        content = [
            self.legacy_id, self.workflow, _iso(self.created_at), self.requester_finess, self.requester_department,
            self.imaging_source, _iso(self.closed_at),
            # None sorts as "": two sends may now differ only by an empty field (one answered, one not)
            sorted((s.content() for s in self.sends), key=lambda c: [v or "" for v in c]),
        ]
        return hashlib.sha256(json.dumps(content, default=str).encode()).hexdigest()[:32]

    def send_ids(self) -> list[str]:
        """The platform's id of each send, deterministic and independent of the order of the rows:
        from the legacy `send_id` when given, else from what the row says and its rank among the
        dossier's identical rows."""
        out = []
        rank: dict[str, int] = {}
        for s in self.sends:
            if s.send_id is not None:
                key = f"legacy-send:{s.send_id}"
            else:
                said = json.dumps(s.content())
                rank[said] = rank.get(said, 0) + 1
                key = f"send:{said}:{rank[said]}"
            out.append(str(uuid5(self.id, key)))
        return out


@dataclass
class ImportOutcome:
    """What one batch did: dossiers saved, already there, or refused (lines and reason)."""

    imported: list[LegacyDossier] = field(default_factory=list)
    events: int = 0
    unchanged: list[LegacyDossier] = field(default_factory=list)
    refused: list[tuple[LegacyDossier, str]] = field(default_factory=list)


@dataclass
class PreparedBatch:
    """A batch compared with the store and built, not yet written."""

    outcome: ImportOutcome
    built: list[tuple[LegacyDossier, Dossier]]


# Dossiers per transaction at most (the CLI's --batch, 500 by default, is the unit of work).
# A save of ~200 imported dossiers (≈ 400 kB) used to stall for good on the embedded server's
# Unix socket — psycopg's pipeline sync() left the end of the INSERT unsent, fixed by
# adapters/pgpipeline.py —; with the fix, 500 per transaction imports 17 % faster than 100
# (bench/history_stats.py --scale 0.05: 9,538 against 8,172 events/s) and 1,709 dossiers went
# through the embedded server in transactions of 500.
SAVE_CHUNK = 500


def created_events(core: Core, aggregate_ids: Sequence[UUID]) -> dict[UUID, DomainEventProtocol[UUID]]:
    """The first event (version 1) of those of these aggregates that are in the store, read in one query.

    The one hand-written SQL read of the event table, on purpose: the library reads one aggregate per
    query (`recorder.select_events`, behind `events.get`), and for a batch of 500 dossier ids that took
    72-108 ms against 2-8 ms for this `= ANY` query (local PostgreSQL, store empty) — paid on every import batch,
    and the second import of a file (every dossier already there) does little else. Table and schema
    come from the library's recorder and the rows are decoded by its mapper (cipher, upcasting),
    as `events.get` would. (Not about recorded times: the table has no such column; an event's
    recorded time is its `timestamp`, which the library sets and stores in the event itself.)
    """
    store = core.store
    if not aggregate_ids:
        return {}
    recorder = store.recorder
    if not isinstance(recorder, PostgresApplicationRecorder):
        raise TypeError(f"the history import reads a PostgreSQL event store, not {type(recorder).__name__}")
    query = SQL(
        "SELECT originator_id, originator_version, topic, state FROM {}.{} "
        "WHERE originator_id = ANY(%s) AND originator_version = 1"
    ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(query, (list(aggregate_ids),))
        rows = curs.fetchall()
    return {
        r["originator_id"]: store.mapper.to_domain_event(StoredEvent(
            originator_id=r["originator_id"], originator_version=r["originator_version"],
            topic=r["topic"], state=bytes(r["state"]),
        ))
        for r in rows
    }


class HistoryUseCases:
    """Import of the legacy platform's history, acting as the system (role "system")."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def establishment_departments(self, finess: Iterable[str]) -> dict[str, str]:
        """FINESS → department of those already in the directory."""
        out = {}
        for f in set(finess):
            eid = ids.establishment_id(f)
            if self.core.exists(eid):
                out[f] = self.core.load(Establishment, eid, "établissement").department
        return out

    def add_imported_establishments(self, departments: dict[str, str]) -> list[str]:
        """Adds establishments known only by FINESS and department (one transaction); returns their FINESS."""
        new = []
        for finess, department in sorted(departments.items()):
            if self.core.exists(ids.establishment_id(finess)):
                continue
            new.append(Establishment(
                finess=finess, name=IMPORTED_ESTABLISHMENT_NAME.format(finess=finess), department=department,
                region=region_of(department), occurred_at=self.core.clock(), actor=dict(IMPORT_ACTOR),
            ))
        if new:
            self.core.store.save(*new)
        return [e.finess for e in new]

    def imported_digests(self, dossier_ids: Sequence[UUID]) -> dict[UUID, str | None]:
        """For those of these dossiers already in the store: the digest recorded at their import."""
        return {
            uid: (getattr(created, "imported_from", None) or {}).get("digest")
            for uid, created in created_events(self.core, dossier_ids).items()
        }

    def legacy_dossier(self, record: LegacyDossier) -> Dossier:
        """The dossier's events, in business-time order, through the aggregate's own commands.

        The system actor may act as requester and recipient only on an imported dossier
        (the aggregate checks it); every other rule of the lifecycle applies.
        """
        actor = IMPORT
        requester = str(ids.establishment_id(record.requester_finess))
        dossier = Dossier.imported(
            dossier_id=record.id, workflow=record.workflow,
            requester={"establishment_id": requester, "practitioner_id": None, "service_id": None},
            imaging_source=record.imaging_source, actor=actor, occurred_at=record.created_at,
            imported_from={
                "source": "legacy", "legacy_id": record.legacy_id, "file": record.file,
                "line": min(record.lines), "lines": record.lines, "digest": record.digest(),
            },
        )
        # (time, order, n, sends): sends grouped by sending time (order 0, with the group's sends),
        # then answers (1, of send n), then the closing (2).
        steps: list[tuple[datetime, int, int, list[tuple[int, LegacySend]]]] = []
        groups: dict[datetime, list[tuple[int, LegacySend]]] = {}
        for n, s in enumerate(record.sends):
            groups.setdefault(s.sent_at, []).append((n, s))
            if s.answered_at is not None:
                steps.append((s.answered_at, 1, n, []))
        for at, sends in groups.items():
            steps.append((at, 0, sends[0][0], sends))
        # The legacy platform is gone: nobody can act on its dossiers any more. One it did not say closed
        # is closed here, at its last known moment, so that it is history and not work waiting in inboxes.
        closed_at = record.closed_at or max([record.created_at, *(s.answered_at or s.sent_at for s in record.sends)])
        steps.append((closed_at, 2, 0, []))
        send_ids = record.send_ids()
        for at, order, n, sends in sorted(steps, key=lambda s: s[:3]):
            if order == 0:
                for i, s in sends:
                    recipient: Json = {
                        "send_id": send_ids[i], "establishment_id": str(ids.establishment_id(s.recipient_finess)),
                        "service_id": None, "practitioner_id": None, "region": s.recipient_region,
                        "department": s.recipient_department, "channel": s.channel,
                    }
                    if legacy := s.legacy():
                        recipient["legacy"] = legacy
                    dossier.address(recipient=recipient, actor=actor, occurred_at=at)
                dossier.send(actor=actor, occurred_at=at)
            elif order == 1:
                dossier.give_opinion(send_id=send_ids[n], report=IMPORTED_OPINION, conclusion="", actor=actor, occurred_at=at)
            else:
                dossier.close(note="" if record.closed_at else CLOSED_AT_IMPORT, actor=actor, occurred_at=at)
        return dossier

    def prepare_legacy_dossiers(self, records: Sequence[LegacyDossier]) -> PreparedBatch:
        """Compares a batch with the store (known dossiers are skipped or refused if they differ)
        and builds the new ones; nothing is written yet."""
        outcome = ImportOutcome()
        known = self.imported_digests([r.id for r in records])
        built: list[tuple[LegacyDossier, Dossier]] = []
        for r in records:
            if r.id in known:
                if known[r.id] == r.digest():
                    outcome.unchanged.append(r)
                else:
                    outcome.refused.append((r, "télédossier déjà importé avec un autre contenu : non modifié"))
                continue
            try:
                built.append((r, self.legacy_dossier(r)))
            except (RelaisError, ValueError, KeyError) as e:
                outcome.refused.append((r, str(e)))
        return PreparedBatch(outcome=outcome, built=built)

    def save_prepared(self, batch: PreparedBatch) -> ImportOutcome:
        """Writes a prepared batch, at most SAVE_CHUNK dossiers per transaction (one by one for a
        chunk if someone imported some of them meanwhile)."""
        outcome, built = batch.outcome, batch.built
        for start in range(0, len(built), SAVE_CHUNK):
            chunk = built[start:start + SAVE_CHUNK]
            pending = sum(len(d.pending_events) for _, d in chunk)
            try:
                self.core.store.save(*(d for _, d in chunk))
            except IntegrityError:
                self._one_by_one(chunk, outcome)
                continue
            outcome.imported.extend(r for r, _ in chunk)
            outcome.events += pending
        return outcome

    def import_legacy_dossiers(self, records: Sequence[LegacyDossier], *, save: bool = True) -> ImportOutcome:
        """Imports a batch in one transaction: new dossiers saved, known ones compared and skipped.

        Establishments must be in the directory already (`add_imported_establishments`).
        `save=False` checks everything the import would (a dry run) and writes nothing.
        """
        batch = self.prepare_legacy_dossiers(records)
        if save:
            return self.save_prepared(batch)
        batch.outcome.imported.extend(r for r, _ in batch.built)
        batch.outcome.events += sum(len(d.pending_events) for _, d in batch.built)
        return batch.outcome

    def _one_by_one(self, built: list[tuple[LegacyDossier, Dossier]], outcome: ImportOutcome) -> ImportOutcome:
        for r, _ in built:
            dossier = self.legacy_dossier(r)
            events = len(dossier.pending_events)
            try:
                self.core.store.save(dossier)
            except IntegrityError:
                outcome.unchanged.append(r)
                continue
            outcome.imported.append(r)
            outcome.events += events
        return outcome

    def import_legacy_dossier(self, *, record: LegacyDossier) -> str:
        """Imports one legacy dossier (its establishments must be known); returns its id."""
        outcome = self.import_legacy_dossiers([record])
        if outcome.refused:
            raise RelaisError(outcome.refused[0][1])
        return str(record.id)
