"""The invitation to an MDT session as iCalendar (RFC 5545 / iTIP): a VEVENT, the mail that carries it, its delivery."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from uuid import UUID, uuid5

from icalendar import Calendar, Event, vCalAddress, vText

from adapters.database import DictPool
from adapters.mail.compose import _envelope, message_id, paris_time
from adapters.mail.senders import MailSender
from application.mdt import SessionDetails
from domain.mdt import specialty_label
from domain.values import PARIS
from projections.mdt import invitation_details

log = logging.getLogger("relais.mail.mdt")

PRODID = "-//Relais//RCP//FR"


def session_uid(session_id: str) -> str:
    """The event's UID: the same for a session whatever changes (a reschedule updates, a cancel removes)."""
    return f"mdt-{UUID(session_id)}@relais"


def _address(email: str, name: str, role: str = "") -> vCalAddress:
    address = vCalAddress(f"mailto:{email}" if email else "mailto:noreply@relais.invalid")
    address.params["CN"] = vText(name or email)
    if role:
        address.params["ROLE"] = vText(role)
        address.params["PARTSTAT"] = vText("NEEDS-ACTION")
        address.params["RSVP"] = vText("FALSE")
    return address


def session_calendar(session: SessionDetails, *, base_url: str, stamp: datetime) -> Calendar:
    """The session as a calendar of one VEVENT: METHOD:REQUEST, or CANCEL once cancelled; DTSTART/DTEND in
    Europe/Paris (with its VTIMEZONE), LOCATION and/or the video link as URL, the coordinator as ORGANIZER,
    every invited practitioner as ATTENDEE; SEQUENCE grows with each reschedule and the cancellation."""
    cancelled = session.cancelled is not None
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "CANCEL" if cancelled else "REQUEST")
    ev = Event()
    ev.add("uid", session_uid(session.id))
    ev.add("sequence", session.sequence)
    ev.add("dtstamp", stamp)
    ev.add("dtstart", session.starts_at.astimezone(PARIS))
    ev.add("dtend", session.ends_at.astimezone(PARIS))
    title = session.title or session.label
    ev.add("summary", f"{title} — {session.service_name}")
    specialties = ", ".join(specialty_label(s) for s in session.specialties)
    description = [f"{session.label} organisée par {session.service_name} ({session.establishment_name}).",
                   f"Spécialités attendues : {specialties}.", f"Séance dans Relais : {base_url}/mdt/sessions/{session.id}"]
    if session.video_url:
        description.insert(1, f"Visioconférence : {session.video_url}")
        ev.add("url", session.video_url)
    ev.add("description", "\n".join(description))
    if session.place:
        ev.add("location", session.place)
    elif session.video_url:
        ev.add("location", session.video_url)
    ev.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    coordinator = session.coordinator
    ev.add("organizer", _address(coordinator.get("email", ""), coordinator.get("name", "")))
    for p in session.participants:
        if p.get("email"):
            ev.add("attendee", _address(p["email"], p.get("name", ""), "REQ-PARTICIPANT"))
    cal.add_component(ev)
    cal.add_missing_timezones()
    return cal


def session_ics(session: SessionDetails, *, base_url: str, stamp: datetime) -> bytes:
    ics: bytes = session_calendar(session, base_url=base_url, stamp=stamp).to_ical()
    return ics


def invitation_mail(
    session: SessionDetails, *, to: str, mail_from: str, base_url: str, stamp: datetime,
) -> EmailMessage:
    """The session's notification mail to one participant, in French, with the invitation attached
    (text/calendar; method=REQUEST, or CANCEL): when, where, the link — no patient data."""
    cancelled = session.cancelled is not None
    link = f"{base_url}/mdt/sessions/{session.id}"
    title = session.title or session.label
    when = paris_time(session.starts_at)
    sentence = (f"La séance « {title} » du {when} est annulée." if cancelled
                else f"Vous êtes invité(e) à la séance « {title} » du {when}.")
    lines = [("Organisateur", f"{session.service_name} ({session.establishment_name})"),
             ("Coordinateur", session.coordinator.get("name", "")), ("Durée", f"{session.duration_minutes} min")]
    if session.place:
        lines.append(("Lieu", session.place))
    if session.video_url:
        lines.append(("Visioconférence", session.video_url))
    text = "\n".join([sentence, "", *(f"{k} : {v}" for k, v in lines), "", f"Ouvrir la séance : {link}"]) + "\n"
    e = html.escape
    rows = "".join(f"<tr><th align=\"left\">{e(k)}</th><td>{e(v)}</td></tr>" for k, v in lines)
    body = (f"<!doctype html><html lang=\"fr\"><head><meta charset=\"utf-8\"></head><body><p>{e(sentence)}</p>"
            f"<table>{rows}</table><p><a href=\"{e(link)}\">Ouvrir la séance</a></p></body></html>")
    message = EmailMessage()
    message["Subject"] = f"[Relais] {'Annulation' if cancelled else 'Invitation'} : {title} — {when}"
    _envelope(message, to=to, mail_from=mail_from, base_url=base_url,
              msg_id=message_id(str(uuid5(UUID(session.id), f"{session.sequence}:{to}")), mail_from), when=stamp)
    message.set_content(text)
    message.add_alternative(body, subtype="html")
    method = "CANCEL" if cancelled else "REQUEST"
    message.add_attachment(session_ics(session, base_url=base_url, stamp=stamp), maintype="text", subtype="calendar",
                           filename="invitation.ics", params={"method": method, "charset": "utf-8"})
    return message


# ------------------------------------------------------------------ delivery of the invitations

LEASE = timedelta(minutes=10)  # a row claimed and not finished by then was left by a dead process
MAX_ATTEMPTS = 8
BACKOFF_MINUTES = (1, 5, 15, 60, 240, 720, 1440)


class InvitationDelivery:
    """Sends the pending rows of `mdt_invitations` (written by the MDT projection when a session is scheduled,
    rescheduled or cancelled): each participant's mail with the .ics of the session as it is now. A row whose
    session has moved on since (a later sequence) is superseded: the later invitation goes instead. Retried with
    backoff, failed after 8 attempts. A process dying between the server's acceptance and the commit may send
    a row again after the lease: calendars apply the same UID and SEQUENCE once."""

    def __init__(self, pool: DictPool, sender: MailSender, *, mail_from: str, base_url: str,
                 clock: Callable[[], datetime] | None = None, batch: int = 50):
        self.pool = pool
        self.sender = sender
        self.mail_from, self.base_url = mail_from, base_url
        self.clock = clock or (lambda: datetime.now(UTC))
        self.batch = batch

    def _claim(self) -> list[tuple[dict[str, object], SessionDetails | None]]:
        now = self.clock()
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute("UPDATE mdt_invitations SET state = 'pending' WHERE state = 'sending' AND next_attempt_at <= %s",
                         (now,))
            curs.execute(
                """UPDATE mdt_invitations SET state = 'sending', attempts = attempts + 1, next_attempt_at = %s
                   WHERE id IN (SELECT id FROM mdt_invitations WHERE state = 'pending' AND next_attempt_at <= %s
                                ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)
                   RETURNING id::text, session_id::text, sequence, address, attempts""", (now + LEASE, now, self.batch))
            rows = [dict(r) for r in curs.fetchall()]
            return [(r, invitation_details(curs, str(r["session_id"]))) for r in rows]

    def _finish(self, mail_id: object, state: str, attempts: int, error: str = "") -> None:
        now = self.clock()
        if state == "retry":
            state = "failed" if attempts >= MAX_ATTEMPTS else "pending"
        delay = timedelta(minutes=BACKOFF_MINUTES[min(attempts, len(BACKOFF_MINUTES)) - 1])
        with self.pool.connection() as conn:
            conn.execute(
                """UPDATE mdt_invitations SET state = %s, last_error = nullif(%s, ''), next_attempt_at = %s,
                       sent_at = CASE WHEN %s = 'sent' THEN %s ELSE sent_at END WHERE id = %s AND state = 'sending'""",
                (state, error[:500], now + delay, state, now, mail_id))

    async def tick(self) -> int:
        """One pass: the due invitations sent (or superseded, or put back for later); how many were sent."""
        sent = 0
        for row, session in await asyncio.to_thread(self._claim):
            attempts = int(str(row["attempts"]))
            if session is None or session.sequence != row["sequence"]:
                await asyncio.to_thread(self._finish, row["id"], "superseded", attempts)
                continue
            message = invitation_mail(session, to=str(row["address"]), mail_from=self.mail_from, base_url=self.base_url,
                                      stamp=self.clock())
            try:
                await self.sender.send(message)
            except Exception as e:  # noqa: BLE001 - any refusal or failure: retried with backoff
                log.warning("invitation RCP %s (tentative %d) non remise : %s", row["id"], attempts, e)
                await asyncio.to_thread(self._finish, row["id"], "retry", attempts, str(e) or type(e).__name__)
                continue
            await asyncio.to_thread(self._finish, row["id"], "sent", attempts)
            sent += 1
        return sent
