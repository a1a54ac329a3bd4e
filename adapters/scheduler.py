"""The deadline scheduler: fires each due step of a send's deadline (projections/notifications.py
`deadline_due`) exactly once — reminders, escalation, missed deadlines.

`DeadlineFirer.fire_due()` claims the rows due now (FOR UPDATE SKIP LOCKED: several firers never take
the same row), decides what each means for the send's current state (`domain.deadlines.applies`; a row
of an older generation — the send was forwarded since — is moot), writes the notifications (and mails)
it implies and marks the row fired (`fired_at`, `outcome`, `late_ms`), all in one transaction. An
escalation is the application's `escalate_overdue` (idempotent): its `Escalated` event then flows
through the notifications projection, which tells the target, the requester and the first recipient.
Killed at any moment, nothing is fired twice (the row and its notifications commit together; an
escalation already recorded is not recorded again) and nothing is forgotten (rows due meanwhile are
fired at the next start).

`Scheduler.run()` sleeps until the next due time or until told (NOTIFY relais_due through a LiveFeed,
or `wake()`); without Redis it fires in this process, with Redis it hands each row to `relais worker`
as an arq job deferred to its due time (`enqueue`), the worker's cron firing what is due every minute
as a safety net. Both call the same `fire_due`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow

from adapters.database import DictPool
from adapters.live import LiveFeed, Subscription, wait_any
from application import Relais
from domain.deadlines import applies
from domain.dossier import Dossier
from projections.notifications import (
    MAIL_CHANNEL,
    Intent,
    Target,
    recipient_targets,
    requester_targets,
    tell,
)

log = logging.getLogger("relais.scheduler")

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Fired:
    """A due row fired: what it was and what came of it."""

    send_id: str
    generation: int
    step: str
    outcome: str  # reminded | escalated | no_target | moot
    late_ms: int


CLAIM = """
    SELECT d.send_id, d.generation, d.step, d.dossier_id, d.due_at, d.created_at,
           s.generation AS current_generation, s.state, s.establishment_id, s.service_id, s.practitioner_id,
           s.escalated_service_id, s.escalated_practitioner_id, s.accepted_by, s.accept_by, s.answer_by,
           n.number, n.workflow, n.urgency, n.requester_practitioner_id, n.requester_establishment_id,
           n.requester_service_id, n.imported
    FROM deadline_due d
    LEFT JOIN notif_sends s ON s.send_id = d.send_id
    LEFT JOIN notif_dossiers n ON n.id = d.dossier_id
    WHERE d.fired_at IS NULL AND d.due_at <= %s
    ORDER BY d.due_at LIMIT %s
    FOR UPDATE OF d SKIP LOCKED"""


class DeadlineFirer:
    """Fires due rows on `pool`, escalating through `app`, at the time `clock` says (tests move it)."""

    def __init__(self, pool: DictPool, app: Relais, clock: Clock | None = None, batch: int = 100):
        self.pool = pool
        self.app = app
        self.clock = clock or app.clock
        self.batch = batch

    def next_due(self) -> datetime | None:
        """When the next row not fired yet is due (None: none)."""
        with self.pool.connection() as conn:
            row = conn.execute("SELECT min(due_at) AS at FROM deadline_due WHERE fired_at IS NULL").fetchone()
        return row["at"] if row else None

    def pending(self, limit: int = 10_000) -> list[DictRow]:
        """Rows not fired yet, soonest first (what the scheduler hands to arq as deferred jobs)."""
        with self.pool.connection() as conn:
            return conn.execute(
                """SELECT send_id, generation, step, due_at FROM deadline_due WHERE fired_at IS NULL
                   ORDER BY due_at LIMIT %s""", (limit,),
            ).fetchall()

    def fire_due(self) -> list[Fired]:
        """Fires every row due now, in batches of `batch` rows per transaction."""
        fired: list[Fired] = []
        while True:
            done = self._fire_batch()
            fired.extend(done)
            if len(done) < self.batch:
                return fired

    def _fire_batch(self) -> list[Fired]:
        now = self.clock()
        done: list[Fired] = []
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as curs:
            rows = curs.execute(CLAIM, (now, self.batch)).fetchall()
            mails = 0
            for row in rows:
                outcome, queued = self._fire(curs, row)
                mails += queued
                fired_at = max(now, self.clock())  # once done (an escalation takes a few milliseconds)
                # late from when it could have fired: a row written already due (a send recorded with a past
                # business time, a projection catching up) is late from its writing, not from its due time
                since = max(row["due_at"], row["created_at"] or row["due_at"])
                late_ms = max(0, int((fired_at - since).total_seconds() * 1000))
                curs.execute(
                    """UPDATE deadline_due SET fired_at = %s, outcome = %s, late_ms = %s
                       WHERE send_id = %s AND generation = %s AND step = %s""",
                    (fired_at, outcome, late_ms, row["send_id"], row["generation"], row["step"]),
                )
                done.append(Fired(str(row["send_id"]), row["generation"], row["step"], outcome, late_ms))
            if mails:
                curs.execute("SELECT pg_notify(%s, '')", (MAIL_CHANNEL,))
        for f in done:
            log.info("échéance %s de l'envoi %s : %s (retard %d ms)", f.step, f.send_id, f.outcome, f.late_ms)
        return done

    def _fire(self, curs: Cursor[DictRow], row: DictRow) -> tuple[str, int]:
        """What a due row means now; writes its notifications. (outcome, mails queued)"""
        step = row["step"]
        if (row["current_generation"] is None or row["current_generation"] != row["generation"] or row["imported"]
                or not applies(step, row["state"])):
            return "moot", 0
        if step == "accept_due":
            escalation = self.app.escalate_overdue(dossier_id=str(row["dossier_id"]), send_id=str(row["send_id"]))
            if escalation.to is not None:
                return "escalated", 0
            send = self.app.load(Dossier, row["dossier_id"], "télédossier").send_of(str(row["send_id"]))
            if send.get("escalated_to"):
                return "escalated", 0  # escalated before a restart: the projection tells the parties
            if self.app.escalation_target(send) is not None or send.get("state") != "requested":
                return "moot", 0
            # nobody to escalate to: the recipient is reminded, the requester told
            return "no_target", self._remind(curs, row) + self._missed(curs, row)
        if step == "answer_due":
            return "reminded", self._remind(curs, row) + self._missed(curs, row)
        return "reminded", self._remind(curs, row)

    def _intent(self, row: DictRow, kind: str, targets: list[Target]) -> Intent:
        dossier = {"id": row["dossier_id"], "number": row["number"], "workflow": row["workflow"], "urgency": row["urgency"]}
        deadline = row["accept_by"] if row["step"].startswith("accept_") else row["answer_by"]
        return Intent(
            key=f"due:{row['send_id']}:{row['generation']}:{row['step']}:{kind}", kind=kind, dossier=dossier,
            targets=targets, occurred_at=row["due_at"], deadline=deadline, detail={"step": row["step"]},
            service=row["service_id"],
        )

    def _remind(self, curs: Cursor[DictRow], row: DictRow) -> int:
        return tell(curs, self._intent(row, "reminder", recipient_targets(dict(row))))[1]

    def _missed(self, curs: Cursor[DictRow], row: DictRow) -> int:
        return tell(curs, self._intent(row, "deadline_missed", requester_targets(dict(row))))[1]


def job_id(row: Any) -> str:
    """The arq job id of a due row: deterministic, so a row handed over twice is queued once."""
    return f"due:{row['send_id']}:{row['generation']}:{row['step']}"


Enqueue = Callable[[str, datetime], Any]
"""Hands a due row to arq: (job id, due time) → deferred job running `fire_due` in `relais worker`."""


class Scheduler:
    """The loop: fire (or hand to arq) what is due, sleep until the next due time or a wake-up."""

    def __init__(
        self, firer: DeadlineFirer, feed: LiveFeed | None = None, *, enqueue: Enqueue | None = None,
        max_sleep: float = 60.0, busy_sleep: float = 0.5,
    ):
        self.firer = firer
        self.feed = feed
        self.enqueue = enqueue
        self.max_sleep = max_sleep
        self.busy_sleep = busy_sleep
        self.fired = 0
        self.rounds = 0
        self._wake = asyncio.Event()
        self._queued: set[str] = set()

    def wake(self) -> None:
        """Looks again now (tests after moving the clock; also what a NOTIFY relais_due does)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        if self.feed is not None:
            await self.feed.start()
            with self.feed.subscribe() as subscription:
                await self._loop(stop, subscription)
        else:
            await self._loop(stop, None)

    async def _loop(self, stop: asyncio.Event, subscription: Subscription | None) -> None:
        while not stop.is_set():
            self._wake.clear()
            busy = False
            try:
                if self.enqueue is None:
                    fired = await asyncio.to_thread(self.firer.fire_due)
                    self.fired += len(fired)
                else:
                    await asyncio.to_thread(self._hand_over)
                nxt = await asyncio.to_thread(self.firer.next_due)
            except Exception:  # noqa: BLE001 - the database away: try again shortly, never die
                log.exception("échéances : tour en erreur, nouvel essai")
                nxt, busy = None, True
            self.rounds += 1
            if busy:
                delay = self.busy_sleep * 4
            elif nxt is None or self.enqueue is not None:  # with arq, the worker fires: wake for new rows only
                delay = self.max_sleep
            else:
                delay = (nxt - self.firer.clock()).total_seconds()
                if delay <= 0:  # due but taken by another firer (or handed to arq): look again soon
                    delay = self.busy_sleep
            await wait_any(min(delay, self.max_sleep), stop, self._wake, subscription=subscription)

    def _hand_over(self) -> None:
        assert self.enqueue is not None
        if len(self._queued) > 100_000:  # never unbounded: handing a row again is harmless (its job id)
            self._queued.clear()
        for row in self.firer.pending():
            key = job_id(row)
            if key not in self._queued:
                self.enqueue(key, row["due_at"])
                self._queued.add(key)



async def fire_deadlines(ctx: dict[str, Any], **_: Any) -> int:
    """The arq job (deferred to a row's due time, and the worker's cron every minute): fires what is due."""
    firer: DeadlineFirer = ctx["deadlines"]
    return len(await asyncio.to_thread(firer.fire_due))
