"""Rows of the statistics tables as a batch builds them (named columns), and their binary COPY."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date, datetime
from operator import attrgetter
from typing import Any, NamedTuple
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow

# Facts of a send set by one event each (`<fact>_at`, `<fact>_recorded_at`); the first event wins
# (a re-acceptance after a forward does not move the acceptance time).
SEND_FACTS = ("sent", "accepted", "declined", "answered")


class Fact(NamedTuple):
    """When a fact about a row already written happened (business time) and was recorded."""

    at: datetime
    recorded: datetime


@dataclass(slots=True)
class NewEstablishment:
    id: UUID
    finess: str
    name: str
    department: str
    region: str


@dataclass(slots=True)
class NewDossier:
    id: UUID
    requester_id: UUID | None
    requester_department: str | None
    workflow: str
    imaging_source: str
    imported: bool
    created_recorded_at: datetime
    sent_at: datetime | None = None
    sent_date: date | None = None
    sent_recorded_at: datetime | None = None
    first_answer_at: datetime | None = None


@dataclass(slots=True)
class NewSend:
    dossier_id: UUID
    send_id: str
    recipient_id: UUID | None
    department: str | None
    region: str | None
    channel: str | None
    workflow: str | None = None  # workflow, requester_id, requester_department: copied from the dossier
    requester_id: UUID | None = None
    requester_department: str | None = None
    sent_at: datetime | None = None
    sent_date: date | None = None
    sent_recorded_at: datetime | None = None
    accepted_at: datetime | None = None
    accepted_recorded_at: datetime | None = None
    declined_at: datetime | None = None
    declined_recorded_at: datetime | None = None
    answered_at: datetime | None = None
    answered_recorded_at: datetime | None = None
    # the deadline that counts: the last one recorded (Sent v2 `deadlines`, Forwarded v2 `deadline`);
    # deadline_recorded_at: when the send first had one (none: history, or sent before deadlines existed)
    accept_by: datetime | None = None
    answer_by: datetime | None = None
    deadline_source: str | None = None
    deadline_recorded_at: datetime | None = None
    # taken in charge (accepted, or answered without accepting) since the last deadline started (a
    # forward starts it again: the new assignee's acceptance is the one measured against accept_by)
    taken_at: datetime | None = None
    taken_recorded_at: datetime | None = None
    # escalations (Dossier.Escalated): the first one's times, and every one's recorded time
    escalated_at: datetime | None = None
    escalated_recorded_at: datetime | None = None
    escalations_recorded_at: list[datetime] | None = None
    # the dossier cancelled or closed (the first of them): a send not answered by then is withdrawn
    ended_at: datetime | None = None
    ended_recorded_at: datetime | None = None


PG_TYPES = {
    "UUID": "uuid", "str": "text", "bool": "bool", "datetime": "timestamptz", "date": "date",
    "list[datetime]": "timestamptz[]",
}


class Columns:
    """A row class's columns, PostgreSQL types (from the annotations) and a getter of its values in order."""

    def __init__(self, row_class: type):
        self.names = tuple(f.name for f in fields(row_class))
        self.types = tuple(PG_TYPES[str(f.type).split(" |")[0]] for f in fields(row_class))
        self.values = attrgetter(*self.names)


COLUMNS: dict[type, Columns] = {row_class: Columns(row_class) for row_class in (NewEstablishment, NewDossier, NewSend)}


def copy_rows(curs: Cursor[DictRow], table: str, row_class: type, rows: Iterable[Any]) -> None:
    """Binary COPY (typed: about ten times faster than text COPY from Python)."""
    columns = COLUMNS[row_class]
    with curs.copy(f"COPY {table} ({', '.join(columns.names)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(columns.types))
        values = columns.values
        for row in rows:
            copy.write_row(values(row))
