"""The delivery of notification mails: `notification_mails` rows due → the practitioner's preferences
→ sent once (SMTP or outbox), retried with backoff, or grouped into a daily digest.

States of a mail row: pending (due at next_attempt_at) → sending (claimed, committed before any SMTP)
→ sent; or → skipped (the practitioner does not want it by mail), digest (waits for the next 07:30
Europe/Paris digest), failed (8 attempts, or an interrupted send — see below; an administrator may
retry it from /admin/mails).

Never twice. A row is claimed (state 'sending', attempts + 1, a lease in next_attempt_at) and
committed before the mail is handed over; the attempt then records the Message-ID it is about to
send (committed) and only then talks SMTP, and marks the row sent afterwards. Two loops, or two
workers, cannot both claim a row (FOR UPDATE SKIP LOCKED, and each attempt is conditional on the
row still being 'sending' at that attempt number). A process that dies leaves its row 'sending'
until the lease ends; then:
  - no Message-ID recorded: the attempt never reached the server: the row is pending again;
  - a Message-ID recorded: the process died between handing the mail to the server and committing
    'sent' — the server may or may not have accepted it, and nothing here can ask it. Sending again
    could deliver it twice, so the row is marked failed with last_error saying so and the
    Message-ID kept: an administrator can look for it in the mail server's log before « Réessayer ».
    (A recipient's server that deduplicates by Message-ID would also drop a second copy: every
    attempt at a notification carries the same one.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from adapters.database import DictPool
from adapters.jobs import JobContext, Jobs
from adapters.live import LiveFeed, wait_any
from adapters.mail import admin
from adapters.mail.compose import PARIS, Notification, compose, compose_digest, message_id
from adapters.mail.senders import MailSender
from adapters.notification_prefs import Preferences

log = logging.getLogger("relais.mail")

CHANNEL = admin.CHANNEL  # NOTIFY'd when a mail row is inserted or retried: the loop wakes
BACKOFF_MINUTES = (1, 5, 15, 60, 240, 720, 1440)  # wait after the 1st, 2nd… failed attempt
MAX_ATTEMPTS = 8  # the 8th failure marks the row failed
LEASE = timedelta(minutes=10)  # a claimed row not finished by then was left by a dead process
DIGEST_AT = time(7, 30)  # Europe/Paris
URGENT = frozenset({"urgent", "asap", "stat"})  # what « urgent only » lets through
STAT = "stat"  # « Immédiate »: never held by quiet hours nor the digest
INTERRUPTED = (
    "envoi interrompu (arrêt du processus) après la remise au serveur : le message {msgid} a pu être reçu ; "
    "vérifiez le journal du serveur de messagerie avant de réessayer"
)
DIGEST_NAMESPACE = uuid.UUID("5d3f7a0e-2f5c-4d39-9c1e-6f1f0c8f9b12")

SELECT_ROW = """
SELECT m.id, m.practitioner_id, m.address, m.state, m.attempts, n.dossier_id, n.number, n.kind, n.workflow,
       n.urgency, n.deadline, n.detail, n.occurred_at
FROM notification_mails m JOIN notifications n ON n.id = m.id
"""


def next_digest(now: datetime) -> datetime:
    """The next 07:30 Europe/Paris strictly after `now`."""
    local = now.astimezone(PARIS)
    at = datetime.combine(local.date(), DIGEST_AT, PARIS)
    if at <= local:
        at = datetime.combine(local.date() + timedelta(days=1), DIGEST_AT, PARIS)
    return at.astimezone(UTC)


def quiet_end(prefs: Preferences, now: datetime) -> datetime:
    """When the quiet hours `now` falls in end (the next quiet_end, Europe/Paris)."""
    assert prefs.quiet_end is not None
    local = now.astimezone(PARIS)
    end = datetime.combine(local.date(), prefs.quiet_end, PARIS)
    if end <= local:
        end = datetime.combine(local.date() + timedelta(days=1), prefs.quiet_end, PARIS)
    return end.astimezone(UTC)


@dataclass(frozen=True)
class Decision:
    action: str  # "send", "skip", "defer" (until `until`), "digest" (until `until`)
    until: datetime | None = None


def decide(prefs: Preferences, kind: str, urgency: str, now: datetime) -> Decision:
    """What the practitioner's preferences make of one mail now."""
    if not prefs.email or kind not in prefs.kinds or (prefs.urgent_only and urgency not in URGENT):
        return Decision("skip")
    if urgency == STAT:
        return Decision("send")
    if prefs.digest:
        return Decision("digest", next_digest(now))
    if prefs.in_quiet_hours(now.astimezone(PARIS)):
        return Decision("defer", quiet_end(prefs, now))
    return Decision("send")


def backoff(attempts: int) -> timedelta:
    return timedelta(minutes=BACKOFF_MINUTES[min(attempts, len(BACKOFF_MINUTES)) - 1])


def describe(error: BaseException) -> str:
    code = getattr(error, "code", None)
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return (f"{code} {text}" if code else f"{type(error).__name__}: {text}")[:500]


async def deliver_mail(ctx: JobContext, mail_id: str, attempt: int) -> str:
    """The job of one delivery attempt (job id `mail:<id>:<attempt>`): idempotent, a no-op unless the
    row is still claimed at that attempt."""
    delivery: MailDelivery = ctx["mail"]
    return await delivery.attempt(mail_id, attempt)


class MailDelivery:
    """The delivery loop of one process (`relais scheduler`): wakes on NOTIFY relais_mail and on its
    timer, applies preferences, hands attempts to arq jobs (`jobs`, Redis configured) or runs them here."""

    def __init__(
        self, pool: DictPool, sender: MailSender, *, mail_from: str, base_url: str,
        feed: LiveFeed | None = None, jobs: Jobs | None = None, clock: Callable[[], datetime] | None = None,
        batch: int = 100, concurrency: int = 8, timer: float = 30.0,
        also: Sequence[Callable[[], Awaitable[int]]] = (),
    ):
        self.pool = pool
        self.sender = sender
        self.mail_from, self.base_url = mail_from, base_url
        self.feed = feed
        self.jobs = jobs
        self.clock = clock or (lambda: datetime.now(UTC))
        self.batch = batch
        self.timer = timer
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[str]] = set()
        self.also = tuple(also)  # other mails delivered on each pass (the MDT invitations: adapters/mail/ics.py)

    # ------------------------------------------------------------ claiming (one transaction)

    def dispatch(self) -> list[tuple[str, int]]:
        """Recovers rows left by a dead process, applies preferences to the due pending rows and claims
        those to send now: [(mail id, attempt)], committed before anything is sent."""
        now = self.clock()
        claimed: list[tuple[str, int]] = []
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE notification_mails SET state = 'pending', next_attempt_at = %s "
                "WHERE state = 'sending' AND next_attempt_at <= %s AND message_id IS NULL", (now, now),
            )
            conn.execute(
                "UPDATE notification_mails SET state = 'failed', "
                "last_error = replace(%s, '{msgid}', message_id) "
                "WHERE state = 'sending' AND next_attempt_at <= %s AND message_id IS NOT NULL",
                (INTERRUPTED, now),
            )
            rows = conn.execute(
                "SELECT m.id, m.attempts, n.kind, n.urgency, p.prefs FROM notification_mails m "
                "JOIN notifications n ON n.id = m.id "
                "LEFT JOIN notification_preferences p ON p.practitioner_id = m.practitioner_id "
                "WHERE m.state = 'pending' AND m.next_attempt_at <= %s "
                "ORDER BY (n.urgency = 'stat') DESC, m.next_attempt_at LIMIT %s FOR UPDATE OF m SKIP LOCKED",
                (now, self.batch),
            ).fetchall()
            for row in rows:
                prefs = Preferences.from_json(row["prefs"]) if row["prefs"] else Preferences()
                decision = decide(prefs, row["kind"], row["urgency"], now)
                if decision.action == "skip":
                    conn.execute("UPDATE notification_mails SET state = 'skipped' WHERE id = %s", (row["id"],))
                elif decision.action == "defer":
                    conn.execute("UPDATE notification_mails SET next_attempt_at = %s WHERE id = %s",
                                 (decision.until, row["id"]))
                elif decision.action == "digest":
                    conn.execute("UPDATE notification_mails SET state = 'digest', next_attempt_at = %s WHERE id = %s",
                                 (decision.until, row["id"]))
                else:
                    conn.execute(
                        "UPDATE notification_mails SET state = 'sending', attempts = attempts + 1, "
                        "next_attempt_at = %s, message_id = NULL WHERE id = %s", (now + LEASE, row["id"]),
                    )
                    claimed.append((str(row["id"]), row["attempts"] + 1))
        return claimed

    # ------------------------------------------------------------ one attempt

    def _hand_over(self, mail_id: str, attempt: int) -> Notification | None:
        """Records the Message-ID about to be sent (committed before SMTP); None when this attempt is
        no longer the row's (done, recovered or claimed again elsewhere)."""
        msgid = message_id(mail_id, self.mail_from)
        with self.pool.connection() as conn:
            row = conn.execute(
                "UPDATE notification_mails SET message_id = %s WHERE id = %s AND state = 'sending' "
                "AND attempts = %s AND message_id IS NULL RETURNING id", (msgid, mail_id, attempt),
            ).fetchone()
            if row is None:
                return None
            full = conn.execute(SELECT_ROW + " WHERE m.id = %s", (mail_id,)).fetchone()
        return Notification.from_row(full) if full else None

    def _finish(self, ids: list[str], msgid: str, error: BaseException | None, back_to: str = "pending") -> str:
        now = self.clock()
        with self.pool.connection() as conn, conn.transaction():
            if error is None:
                conn.execute(
                    "UPDATE notification_mails SET state = 'sent', sent_at = %s, last_error = NULL "
                    "WHERE id = ANY(%s::uuid[]) AND state = 'sending' AND message_id = %s", (now, ids, msgid),
                )
                return "sent"
            rows = conn.execute(
                "SELECT id, attempts FROM notification_mails WHERE id = ANY(%s::uuid[]) AND state = 'sending' "
                "AND message_id = %s FOR UPDATE", (ids, msgid),
            ).fetchall()
            outcome = "failed"
            for row in rows:
                if row["attempts"] >= MAX_ATTEMPTS:
                    conn.execute(
                        "UPDATE notification_mails SET state = 'failed', message_id = NULL, last_error = %s WHERE id = %s",
                        (describe(error), row["id"]),
                    )
                else:
                    outcome = "retry"
                    conn.execute(
                        "UPDATE notification_mails SET state = %s, message_id = NULL, last_error = %s, "
                        "next_attempt_at = %s WHERE id = %s",
                        (back_to, describe(error), now + backoff(row["attempts"]), row["id"]),
                    )
            return outcome

    async def attempt(self, mail_id: str, attempt: int) -> str:
        """One attempt at one claimed row: 'sent', 'retry', 'failed', or 'gone' (not this attempt's)."""
        notification = await asyncio.to_thread(self._hand_over, mail_id, attempt)
        if notification is None:
            return "gone"
        message = compose(notification, mail_from=self.mail_from, base_url=self.base_url)
        msgid = str(message["Message-ID"])
        error: BaseException | None = None
        try:
            await self.sender.send(message)
        except Exception as e:  # noqa: BLE001 - any refusal or failure: retried with backoff
            error = e
            log.warning("mail %s (tentative %d) non remis : %s", mail_id, attempt, describe(e))
        return await asyncio.to_thread(self._finish, [mail_id], msgid, error)

    # ------------------------------------------------------------ the daily digest

    def _claim_digests(self) -> list[tuple[str, list[Notification]]]:
        now = self.clock()
        groups: dict[str, list[Notification]] = {}
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                SELECT_ROW + " WHERE m.state = 'digest' AND m.next_attempt_at <= %s "
                "ORDER BY m.practitioner_id, n.occurred_at FOR UPDATE OF m SKIP LOCKED", (now,),
            ).fetchall()
            for row in rows:
                groups.setdefault(str(row["practitioner_id"]), []).append(Notification.from_row(row))
            claimed = []
            for notifications in groups.values():
                ids = [n.id for n in notifications]
                digest_id = str(uuid.uuid5(DIGEST_NAMESPACE, ",".join(sorted(ids))))
                msgid = message_id(digest_id, self.mail_from)
                conn.execute(
                    "UPDATE notification_mails SET state = 'sending', attempts = attempts + 1, next_attempt_at = %s, "
                    "message_id = %s WHERE id = ANY(%s::uuid[])", (now + LEASE, msgid, ids),
                )
                claimed.append((digest_id, notifications))
        return claimed

    async def send_digests(self) -> int:
        """Sends every practitioner's due digest (one mail listing their notifications); the count sent."""
        sent = 0
        for digest_id, notifications in await asyncio.to_thread(self._claim_digests):
            message = compose_digest(notifications, digest_id=digest_id, mail_from=self.mail_from,
                                     base_url=self.base_url, when=self.clock())
            error: BaseException | None = None
            try:
                await self.sender.send(message)
            except Exception as e:  # noqa: BLE001 - retried with backoff like any mail
                error = e
                log.warning("récapitulatif %s non remis : %s", digest_id, describe(e))
            ids = [n.id for n in notifications]
            if await asyncio.to_thread(self._finish, ids, str(message["Message-ID"]), error, "digest") == "sent":
                sent += 1
        return sent

    # ------------------------------------------------------------ the loop

    def close(self) -> None:
        """Closes the pool and the job queue this delivery was built with (its owner calls it)."""
        if self.jobs is not None:
            self.jobs.close()
        self.pool.close()

    def retry(self, mail_id: str) -> bool:
        """An administrator's « Réessayer » on a failed row: pending again now, attempts from zero."""
        return admin.retry(self.pool, mail_id, self.clock())

    def _start(self, mail_id: str, attempt: int) -> None:
        async def run() -> str:
            async with self._slots:
                return await self.attempt(mail_id, attempt)

        task = asyncio.get_running_loop().create_task(run(), name=f"mail:{mail_id}:{attempt}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def tick(self, wait: bool = True) -> int:
        """One pass: dispatch, attempts started (as jobs with Redis), digests; with `wait`, the attempts
        run here are awaited. The number of attempts started."""
        claimed = await asyncio.to_thread(self.dispatch)
        for mail_id, attempt in claimed:
            if self.jobs is not None:
                await asyncio.to_thread(
                    self.jobs.enqueue, "deliver_mail", job_id=f"mail:{mail_id}:{attempt}", mail_id=mail_id, attempt=attempt,
                )
            else:
                self._start(mail_id, attempt)
        await self.send_digests()
        for deliver in self.also:
            await deliver()
        if wait:
            await self.drain()
        return len(claimed)

    async def drain(self) -> None:
        """Waits for the attempts running in this process."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _next_due(self) -> datetime | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT min(next_attempt_at) AS due FROM notification_mails WHERE state IN ('pending', 'digest', 'sending')"
            ).fetchone()
        return row["due"] if row else None

    async def run(self, stop: asyncio.Event) -> None:
        """Delivers until `stop` is set; attempts under way then finish (bounded by the SMTP timeout)."""
        if self.feed is not None:
            await self.feed.start()
        try:
            with self._subscription() as subscription:
                while not stop.is_set():
                    try:
                        await self.tick(wait=False)
                        due = await asyncio.to_thread(self._next_due)
                    except Exception:  # noqa: BLE001 - the database away: try again on the timer
                        log.exception("distribution des courriels : passage en erreur")
                        due = None
                    wait = self.timer
                    if due is not None:
                        wait = max(0.05, min(wait, (due - self.clock()).total_seconds()))
                    await wait_any(wait, stop, subscription=subscription)
        finally:
            await self.drain()
            if self.feed is not None:
                await self.feed.close()

    def _subscription(self) -> Any:
        return self.feed.subscribe() if self.feed is not None else contextlib.nullcontext(None)

