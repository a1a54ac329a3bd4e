"""Answer deadlines: the default delays per workflow and urgency (the one table), overrides, and the
clock of one send (when to remind, when to escalate, when the deadline is missed).

A send has two delays, both counted from when it was sent (business time, `occurred_at`), recorded
with the sending (`Dossier.Sent` v2 `deadlines`) or the forward (`Dossier.Forwarded` v2 `deadline`):
- **accept**: the recipient takes it in charge (accepts) within this delay. Past it, still not
  accepted, the send is escalated to the service's on-call pool or backup practitioner.
- **answer**: the opinion is given within this delay (it runs until the opinion, whether or not the
  send was accepted in time). Past it, the requester is told the deadline is missed.
Reminders go to the recipient at 50 % and 100 % of the delay that is running (accept until the send
is accepted, then answer). A forward starts the accept delay again for the new assignee; the answer
deadline the requester was promised stays.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.errors import InvalidFieldError
from domain.values import Json, Urgency, Workflow

ANY_URGENCY = "*"  # an override for every urgency of a workflow (a specific urgency wins over it)


@dataclass(frozen=True)
class Delays:
    """How long a recipient has to accept, and to answer (minutes)."""

    accept: int
    answer: int

    def __post_init__(self) -> None:
        if not 0 < self.accept <= self.answer:
            raise InvalidFieldError("accept", "le délai de prise en charge doit être positif et au plus le délai de réponse")
        if self.answer > MAX_DELAY_MINUTES:
            raise InvalidFieldError("answer", "délai de réponse de 90 jours au plus")


MAX_DELAY_MINUTES = 90 * 24 * 60

M, H, D = 1, 60, 24 * 60

# The one table of default delays (accept, answer) per workflow and urgency — documented in README.md
# (« Délais de réponse »). Stroke and emergency requests are counted in minutes: a thrombectomy window is
# hours long; imaging transfers and opinions in days. Recipient services may override any line
# (`relais directory set-deadline`).
DEFAULT_DELAYS: dict[str, dict[str, Delays]] = {
    Workflow.STROKE_OPINION: {
        Urgency.STAT: Delays(10 * M, 30 * M), Urgency.ASAP: Delays(15 * M, 1 * H),
        Urgency.URGENT: Delays(30 * M, 2 * H), Urgency.ROUTINE: Delays(4 * H, 24 * H),
    },
    Workflow.EMERGENCY_OPINION: {
        Urgency.STAT: Delays(15 * M, 1 * H), Urgency.ASAP: Delays(30 * M, 2 * H),
        Urgency.URGENT: Delays(1 * H, 4 * H), Urgency.ROUTINE: Delays(4 * H, 24 * H),
    },
    Workflow.IMAGING_TRANSFER: {
        Urgency.STAT: Delays(30 * M, 2 * H), Urgency.ASAP: Delays(2 * H, 12 * H),
        Urgency.URGENT: Delays(12 * H, 24 * H), Urgency.ROUTINE: Delays(24 * H, 48 * H),
    },
    Workflow.KIDNEY_TRANSPLANT_MDT: {
        Urgency.STAT: Delays(1 * H, 4 * H), Urgency.ASAP: Delays(4 * H, 24 * H),
        Urgency.URGENT: Delays(1 * D, 3 * D), Urgency.ROUTINE: Delays(3 * D, 14 * D),
    },
    Workflow.GENERIC_OPINION: {
        Urgency.STAT: Delays(1 * H, 4 * H), Urgency.ASAP: Delays(4 * H, 24 * H),
        Urgency.URGENT: Delays(1 * D, 3 * D), Urgency.ROUTINE: Delays(2 * D, 7 * D),
    },
    Workflow.OUT_OF_REGION_OPINION: {
        Urgency.STAT: Delays(1 * H, 4 * H), Urgency.ASAP: Delays(4 * H, 24 * H),
        Urgency.URGENT: Delays(1 * D, 3 * D), Urgency.ROUTINE: Delays(3 * D, 10 * D),
    },
}


DelaysOf = Callable[[Json], "tuple[Delays, str] | None"]
"""The delays of a send to a recipient (a send's or a forward's target), and where they come from; None:
no deadline. The application's rule (`application/deadlines.py`) given to Dossier.send and forward."""


def delays_for(workflow: str, urgency: str, overrides: dict[str, Json] | None = None) -> tuple[Delays, str] | None:
    """The delays of a send of this workflow and urgency, and where they come from ("service": an
    override of the recipient service, keyed "workflow/urgency" or "workflow/*"; else "default").
    None for a workflow without deadlines (the legacy modules)."""
    for key in (f"{workflow}/{urgency}", f"{workflow}/{ANY_URGENCY}"):
        found = (overrides or {}).get(key)
        if found:
            return Delays(int(found["accept"]), int(found["answer"])), "service"
    table = DEFAULT_DELAYS.get(workflow)
    if table is None or urgency not in table:
        return None
    return table[urgency], "default"


_DELAY = re.compile(r"^\s*(\d{1,6})\s*(min|mn|m|h|j|d)?\s*$", re.IGNORECASE)


def parse_delay(value: str, field: str) -> int:
    """Minutes from « 30 », « 30m », « 2h », « 7j » / « 7d »."""
    match = _DELAY.match(value or "")
    if not match:
        raise InvalidFieldError(field, f"délai invalide « {value} » (exemples : 30m, 2h, 7j)")
    number, unit = int(match.group(1)), (match.group(2) or "m").lower()
    minutes = number * {"min": M, "mn": M, "m": M, "h": H, "j": D, "d": D}[unit]
    if minutes <= 0:
        raise InvalidFieldError(field, "délai positif attendu")
    return minutes


def format_delay(minutes: int) -> str:
    """« 30 min », « 2 h », « 1 h 30 », « 7 j »: how pages, mails and the README say a delay."""
    if minutes % D == 0:
        return f"{minutes // D} j"
    if minutes >= H:
        hours, rest = divmod(minutes, H)
        return f"{hours} h {rest:02d}" if rest else f"{hours} h"
    return f"{minutes} min"


@dataclass(frozen=True)
class Deadline:
    """A send's deadline as recorded (Dossier.DeadlineSet): when it started and both due times."""

    started_at: datetime
    accept_by: datetime
    answer_by: datetime

    @classmethod
    def starting(cls, started_at: datetime, delays: Delays, answer_by: datetime | None = None) -> Deadline:
        """From `started_at` (sent, or forwarded: then the answer deadline promised stays `answer_by`)."""
        accept_by = started_at + timedelta(minutes=delays.accept)
        answer = answer_by or started_at + timedelta(minutes=delays.answer)
        return cls(started_at=started_at, accept_by=min(accept_by, answer), answer_by=answer)

    @classmethod
    def of(cls, recorded: Json) -> Deadline:
        """From a send's `deadline` record (ISO strings or datetimes)."""
        def when(v: object) -> datetime:
            return v if isinstance(v, datetime) else datetime.fromisoformat(str(v))
        return cls(when(recorded["started_at"]), when(recorded["accept_by"]), when(recorded["answer_by"]))

    def as_record(self, found: tuple[Delays, str]) -> Json:
        """As a send keeps it and events carry it (ISO times), with its basis (delays and source)."""
        delays, source = found
        return {
            "started_at": self.started_at.isoformat(), "accept_by": self.accept_by.isoformat(),
            "answer_by": self.answer_by.isoformat(),
            "basis": {"accept": delays.accept, "answer": delays.answer, "source": source},
        }

    def steps(self) -> list[tuple[str, datetime]]:
        """Every due moment of this deadline, in order: (step, when). The scheduler fires each once,
        skipping those that no longer apply (see `applies`)."""
        half_accept = self.started_at + (self.accept_by - self.started_at) / 2
        half_answer = self.started_at + (self.answer_by - self.started_at) / 2
        steps = [("accept_half", half_accept), ("accept_due", self.accept_by),
                 ("answer_half", half_answer), ("answer_due", self.answer_by)]
        return sorted(steps, key=lambda s: s[1])


STEP_LABELS = {
    "accept_half": "Rappel : la moitié du délai de prise en charge est écoulée",
    "accept_due": "Délai de prise en charge dépassé",
    "answer_half": "Rappel : la moitié du délai de réponse est écoulée",
    "answer_due": "Délai de réponse dépassé",
}


def applies(step: str, send_state: str) -> bool:
    """Whether a due step still means something for a send in `send_state`: acceptance steps only while
    it waits to be taken in charge (`requested`: sent or forwarded, not accepted); answer steps until
    the opinion, except while the requester owes a complement (`on_hold`: the clock is theirs then)."""
    if step.startswith("accept_"):
        return send_state == "requested"
    return send_state in ("requested", "in_progress")
