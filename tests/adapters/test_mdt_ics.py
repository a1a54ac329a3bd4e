"""The MDT session invitation: the .ics read back with icalendar, and the mail that carries it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

from icalendar import Calendar

from adapters.mail.ics import invitation_mail, session_ics, session_uid
from application.mdt import SessionDetails

STAMP = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SID = "6f1c1f0e-8d35-4c55-9b3c-2f7f6f2a9d11"


def details(**changes) -> SessionDetails:
    start = datetime(2026, 12, 3, 13, 30, tzinfo=UTC)
    base = SessionDetails(
        id=SID, version=3, session_type="kidney_transplant", label="RCP greffe rénale", title="", starts_at=start,
        ends_at=start + timedelta(minutes=90), duration_minutes=90, place="Salle de staff, 3e étage", video_url="",
        specialties=("néphrologie", "urologie", "immunologie"),
        participants=(
            {"practitioner_id": "p1", "name": "Sophie BERNARD", "rpps": "1", "specialty": "", "email": "s.bernard@chu.example"},
            {"practitioner_id": "p2", "name": "Jean FAURE", "rpps": "2", "specialty": "", "email": "j.faure@chu.example"},
            {"practitioner_id": "p3", "name": "Sans Adresse", "rpps": "3", "specialty": "", "email": ""},
        ),
        coordinator={"practitioner_id": "p1", "name": "Sophie BERNARD", "rpps": "1", "email": "s.bernard@chu.example"},
        establishment_id="e", establishment_name="CHU de Toulouse", service_id="s",
        service_name="Néphrologie et transplantation", agenda=(), attendance=(), quorum={}, sequence=0, cancelled=None,
        may_manage=True,
    )
    return replace(base, **changes)


def event_of(raw: bytes):
    cal = Calendar.from_ical(raw)
    events = cal.walk("VEVENT")
    assert len(events) == 1
    return cal, events[0]


def test_invitation_parsed_back():
    cal, ev = event_of(session_ics(details(), base_url="https://relais.example", stamp=STAMP))
    assert str(cal["METHOD"]) == "REQUEST" and str(cal["VERSION"]) == "2.0"
    assert str(ev["UID"]) == session_uid(SID) == f"mdt-{SID}@relais"
    assert ev["SEQUENCE"] == 0 and str(ev["STATUS"]) == "CONFIRMED"
    start, end = ev.decoded("DTSTART"), ev.decoded("DTEND")
    assert start == datetime(2026, 12, 3, 14, 30, tzinfo=ZoneInfo("Europe/Paris"))  # 13:30 UTC is 14:30 in Paris
    assert end - start == timedelta(minutes=90)
    assert ev["DTSTART"].params["TZID"] == "Europe/Paris"
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == ["Europe/Paris"]
    assert str(ev["LOCATION"]) == "Salle de staff, 3e étage" and "URL" not in ev
    assert str(ev["ORGANIZER"]) == "mailto:s.bernard@chu.example"
    attendees = ev["ATTENDEE"]
    assert [str(a) for a in attendees] == ["mailto:s.bernard@chu.example", "mailto:j.faure@chu.example"]
    assert attendees[1].params["CN"] == "Jean FAURE"
    assert "https://relais.example/mdt/sessions/" + SID in str(ev["DESCRIPTION"])


def test_video_link_reschedule_and_cancel():
    video = "https://visio.example.org/rcp-greffe"
    _, ev = event_of(session_ics(details(place="", video_url=video, sequence=1), base_url="", stamp=STAMP))
    assert str(ev["URL"]) == video and str(ev["LOCATION"]) == video and ev["SEQUENCE"] == 1
    cal, ev = event_of(session_ics(details(sequence=2, cancelled={"reason": "", "at": ""}), base_url="", stamp=STAMP))
    assert str(cal["METHOD"]) == "CANCEL" and str(ev["STATUS"]) == "CANCELLED" and ev["SEQUENCE"] == 2
    assert str(ev["UID"]) == session_uid(SID)


def test_notification_mail_carries_the_invitation():
    mail = invitation_mail(details(), to="j.faure@chu.example", mail_from="Relais <relais@chu.example>",
                           base_url="https://relais.example", stamp=STAMP)
    parsed = message_from_bytes(mail.as_bytes(), policy=policy.default)
    assert parsed["To"] == "j.faure@chu.example" and parsed["Subject"].startswith("[Relais] Invitation : RCP greffe rénale")
    calendars = [p for p in parsed.walk() if p.get_content_type() == "text/calendar"]
    assert len(calendars) == 1
    assert calendars[0].get_param("method") == "REQUEST"
    _, ev = event_of(calendars[0].get_payload(decode=True))
    assert str(ev["UID"]) == session_uid(SID)
    body = parsed.get_body(("plain",)).get_content()
    assert "03/12/2026 à 14:30" in body and "Salle de staff" in body
    cancelled = invitation_mail(details(sequence=1, cancelled={"reason": "", "at": ""}), to="j.faure@chu.example",
                                mail_from="relais@chu.example", base_url="", stamp=STAMP)
    part = next(p for p in cancelled.walk() if p.get_content_type() == "text/calendar")
    assert part.get_param("method") == "CANCEL" and cancelled["Message-ID"] != mail["Message-ID"]
