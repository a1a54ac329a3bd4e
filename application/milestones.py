"""The milestones of a dossier's care (door, imaging, sent, accepted, opinion, decision), folded from its events.

One rule, used by the dossier page (over its history) and by the milestones read model (event by event):
the door is the recorded milestone, else the arrival time of the stroke form; imaging is the recorded
milestone, else the first study attached; sent, accepted and opinion are the first of their events; the
decision is the last recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.dossier import MILESTONES

Fold = dict[str, str]
"""The fold's state: ISO times by source (door_recorded, door_form, imaging_recorded, imaging_attached, sent,
accepted, opinion, decision). JSON, so a read model keeps it as is."""

FIRST_OF = {"Sent": "sent", "Accepted": "accepted", "OpinionGiven": "opinion", "ImagingAttached": "imaging_attached"}
FOLDED = (*FIRST_OF, "FormAnswered", "MilestoneRecorded")
"""The dossier events the fold reads (class names)."""


def fold(state: Fold, event: str, occurred_at: datetime | None, data: dict[str, Any]) -> Fold:
    """The state after one event (unchanged for the others)."""
    if event in FIRST_OF:
        key = FIRST_OF[event]
        if key not in state and occurred_at is not None:
            return {**state, key: occurred_at.isoformat()}
        return state
    if event == "FormAnswered":
        arrival = (data.get("answers") or {}).get("arrival_at")
        new = {k: v for k, v in state.items() if k != "door_form"}
        return {**new, "door_form": str(arrival)} if arrival else new
    if event == "MilestoneRecorded" and data.get("milestone") in ("door", "imaging", "decision"):
        key = "decision" if data["milestone"] == "decision" else f"{data['milestone']}_recorded"
        return {**state, key: str(data["at"])}
    return state


def resolve(state: Fold) -> dict[str, datetime]:
    """Each milestone known, by its MILESTONES code, in the order of care."""
    sources = {
        "door": state.get("door_recorded") or state.get("door_form"),
        "imaging": state.get("imaging_recorded") or state.get("imaging_attached"),
        "sent": state.get("sent"), "accepted": state.get("accepted"), "opinion": state.get("opinion"),
        "decision": state.get("decision"),
    }
    return {code: datetime.fromisoformat(iso) for code in MILESTONES if (iso := sources.get(code))}


@dataclass(frozen=True)
class Milestone:
    """One milestone as the dossier page shows it: minutes since the door and since the one before."""

    code: str
    label: str
    at: datetime | None
    since_door: int | None
    since_previous: int | None


def timeline(state: Fold) -> tuple[Milestone, ...]:
    """Every milestone in order, known or not (at None), with elapsed whole minutes."""
    times = resolve(state)
    door = times.get("door")
    out: list[Milestone] = []
    previous: datetime | None = None
    for code, label in MILESTONES.items():
        at = times.get(code)
        out.append(Milestone(
            code=code, label=label, at=at,
            since_door=_minutes(door, at) if code != "door" else None,
            since_previous=_minutes(previous, at),
        ))
        previous = at or previous
    return tuple(out)


def _minutes(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() / 60)


def fold_history(entries: Any) -> Fold:
    """The state after a dossier's history entries (application.dossier_views.HistoryEntry)."""
    state: Fold = {}
    for h in entries:
        if h.event in FOLDED:
            state = fold(state, h.event, h.occurred_at, h.data)
    return state
