"""What readers get of a dossier: its details and its history, each built here and only here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from eventsourcing.domain import DomainEvent

from application.milestones import Milestone, fold_history, timeline
from domain.dossier import Dossier, was_sent
from domain.values import Actor, Json, Role


@dataclass(frozen=True)
class DossierDetails:
    """A dossier as its readers see it (never the aggregate itself)."""

    id: str
    number: str
    version: int
    state: str
    workflow: str
    urgency: str
    question: str
    patient: Json
    consent: Json | None
    imaging_source: str
    requester: Json
    documents: tuple[Json, ...]
    imaging: tuple[Json, ...]
    sends: tuple[Json, ...]
    created_on: datetime
    first_sent_on: datetime | None
    imported_from: Json | None
    imaging_held: tuple[Json, ...] = ()  # images kept out for their patient identity (Dossier.ImagingHeld)
    # the thread of each send, in order (`messages_of`): complement requests and answers, messages
    messages: tuple[Json, ...] = ()
    # the workflow's form as answered ({id, version, answers}: domain/forms), None if never answered
    form: Json | None = None
    # the milestones of care in order, known or not, from `history` (application/milestones.py)
    milestones: tuple[Milestone, ...] = ()
    # exams awaited from the gateway: Accession Numbers, and Patient IDs ({id, issuer, at})
    awaited_accessions: tuple[str, ...] = ()
    awaited_patients: tuple[Json, ...] = ()


@dataclass(frozen=True)
class HistoryEntry:
    """One event of a dossier: who, both times (business and recorded), and its own fields."""

    version: int
    event: str
    occurred_at: datetime | None
    recorded_at: datetime
    actor: Json
    data: Json


def as_seen_by(d: Dossier, actor: Actor, history: tuple[HistoryEntry, ...]) -> tuple[HistoryEntry, ...]:
    """The timeline as this reader may see it: a recipient does not see the sends that were never
    sent (whom else the requester addressed, then removed or never sent to: `was_sent`, the rule
    that keeps such a send from opening the dossier); the requester and auditors see everything."""
    if actor.role == Role.AUDITOR or d.is_requester(actor):
        return history
    sent = {sid for sid, s in d.sends.items() if was_sent(s)}  # a removed send was never sent: not there

    def concerns_unsent(entry: HistoryEntry) -> bool:
        recipient = entry.data.get("recipient")
        send_id = entry.data.get("send_id") or (recipient.get("send_id") if isinstance(recipient, dict) else None)
        return send_id is not None and send_id not in sent

    return tuple(e for e in history if not concerns_unsent(e))


def details_of(d: Dossier, history: Iterable[HistoryEntry] = ()) -> DossierDetails:
    """The reader's dataclass of a dossier aggregate (also for a past version); its thread from `history`
    (the same dossier's entries up to the same version)."""
    history = tuple(history)  # read twice: the thread and the milestones
    return DossierDetails(
        id=str(d.id), number=d.number, version=d.version, state=str(d.state), workflow=d.workflow,
        urgency=d.urgency, question=d.question, patient=dict(d.patient), consent=d.consent,
        imaging_source=d.imaging_source, requester=dict(d.requester),
        documents=tuple(d.documents.values()), imaging=tuple(d.imaging.values()),
        sends=tuple(dict(s) for s in d.sends.values()), created_on=d.opened_on,
        first_sent_on=d.first_sent_on, imported_from=d.imported_from, imaging_held=tuple(d.imaging_held),
        messages=messages_of(history), form=d.form, milestones=timeline(fold_history(history)),
        awaited_accessions=tuple(d.awaited_accessions), awaited_patients=tuple(dict(p) for p in d.awaited_patients),
    )


THREAD = {"ComplementRequested": "complement_request", "ComplementProvided": "complement_answer", "MessagePosted": "message"}


def messages_of(history: Iterable[HistoryEntry]) -> tuple[Json, ...]:
    """The thread of every send (FHIR Communication-like), in order: each complement request, complement
    answer and message with its send, text, the documents and studies it points to, who and when. A
    complement request or answer has no id of its own: it is named by the dossier version that recorded it."""
    out = []
    for h in history:
        kind = THREAD.get(h.event)
        if kind is None:
            continue
        data = h.data
        out.append({
            "message_id": data.get("message_id") or f"v{h.version}", "send_id": data.get("send_id", ""), "kind": kind,
            "text": data.get("text", data.get("message", "")) or "", "document_ids": list(data.get("document_ids") or ()),
            "study_uids": list(data.get("study_uids") or ()), "actor": dict(h.actor), "occurred_at": h.occurred_at,
        })
    return tuple(out)


def event_summary(ev: object) -> Json:
    """A plain dict of an event's own fields (for histories and audit)."""
    skip = {"originator_id", "originator_version", "timestamp"}
    return {k: v for k, v in vars(ev).items() if k not in skip}


def history_of(events: Iterable[DomainEvent]) -> tuple[HistoryEntry, ...]:
    """History entries of a dossier's events, in order. The recorded time is the event's
    `timestamp`, set by the library when the event was triggered, just before it was stored."""
    entries = []
    for ev in events:
        data = event_summary(ev)
        entries.append(
            HistoryEntry(
                version=ev.originator_version, event=type(ev).__name__, occurred_at=data.pop("occurred_at", None),
                recorded_at=ev.timestamp, actor=data.pop("actor", {}), data=data,
            )
        )
    return tuple(entries)
