"""The MDT session's notification mails: one per participant with an address, each carrying the .ics; a new one
when the session is rescheduled (SEQUENCE 1) or cancelled (METHOD:CANCEL); never twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from icalendar import Calendar

from adapters.mail.ics import InvitationDelivery, session_uid
from adapters.mail.senders import OutboxSender
from application import Relais
from entrypoints.bootstrap import build_pool
from projections.runner import catch_up
from tests.conftest import rpps


@pytest.fixture()
def pool(settings):
    p = build_pool(settings, max_size=2)
    yield p
    p.close()


def outbox_calendars(folder) -> list[tuple[str, object, object]]:
    """(To, the text/calendar part's method, its VEVENT) of each mail written, oldest first."""
    out = []
    for path in sorted(folder.glob("*.eml")):
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        (part,) = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
        (event,) = Calendar.from_ical(part.get_payload(decode=True)).walk("VEVENT")
        out.append((mail["To"], part.get_param("method"), event))
    return out


def test_invitations_sent_once_per_version_of_the_session(relais: Relais, settings, pool, tmp_path):
    tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    team = relais.add_service(establishment_id=tlse, code="nephro-greffe", name="Néphrologie et transplantation",
                              specialty="néphrologie", kind="team")
    coordinator = relais.add_practitioner(rpps=rpps(31), family_name="Bernard", given_name="Sophie", establishment_id=tlse,
                                          roles=["clinician"], service_ids=[team], email="s.bernard@chu.example")
    urologist = relais.add_practitioner(rpps=rpps(32), family_name="Faure", given_name="Jean", establishment_id=tlse,
                                        roles=["clinician"], email="j.faure@chu.example")
    no_mail = relais.add_practitioner(rpps=rpps(33), family_name="Simon", given_name="Luc", establishment_id=tlse,
                                      roles=["clinician"])
    start = relais.clock() + timedelta(days=2)
    sid = relais.schedule_mdt_session(actor_id=coordinator, service_id=team, starts_at=start, duration_minutes=60,
                                      place="Salle de staff", participant_ids=[coordinator, urologist, no_mail])
    env = settings.eventsourcing_env()
    outbox = tmp_path / "outbox"
    delivery = InvitationDelivery(pool, OutboxSender(outbox), mail_from="relais@chu.example", base_url="https://relais.example")

    def deliver() -> int:
        for name in ("directory", "mdt"):
            catch_up(name, env, relais)
        return asyncio.run(delivery.tick())

    assert deliver() == 2
    assert deliver() == 0  # sent once
    first = outbox_calendars(outbox)
    assert sorted(to for to, _, _ in first) == ["j.faure@chu.example", "s.bernard@chu.example"]
    assert {method for _, method, _ in first} == {"REQUEST"}
    event = first[0][2]
    assert str(event["UID"]) == session_uid(sid) and event["SEQUENCE"] == 0
    assert len(event["ATTENDEE"]) == 2 and str(event["ORGANIZER"]) == "mailto:s.bernard@chu.example"

    relais.reschedule_mdt_session(session_id=sid, actor_id=coordinator, starts_at=start + timedelta(hours=2),
                                  duration_minutes=60, place="Salle de staff")
    relais.cancel_mdt_session(session_id=sid, actor_id=coordinator, reason="Congrès")
    # the reschedule's invitations are superseded by the cancellation, written before they were sent
    assert deliver() == 2
    later = outbox_calendars(outbox)[2:]
    assert {method for _, method, _ in later} == {"CANCEL"}
    assert {int(e["SEQUENCE"]) for _, _, e in later} == {2} and {str(e["UID"]) for _, _, e in later} == {session_uid(sid)}
    with pool.connection() as conn:
        states = conn.execute("SELECT sequence, state, count(*) AS n FROM mdt_invitations GROUP BY 1, 2 ORDER BY 1").fetchall()
    assert [(r["sequence"], r["state"], r["n"]) for r in states] == [(0, "sent", 2), (1, "superseded", 2), (2, "sent", 2)]


def test_a_failed_send_is_retried_later(relais: Relais, settings, pool):
    tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    team = relais.add_service(establishment_id=tlse, code="greffe", name="Transplantation", specialty="néphrologie")
    coordinator = relais.add_practitioner(rpps=rpps(41), family_name="Bernard", given_name="Sophie", establishment_id=tlse,
                                          roles=["clinician"], service_ids=[team], email="s.bernard@chu.example")
    relais.schedule_mdt_session(actor_id=coordinator, service_id=team, starts_at=relais.clock() + timedelta(days=1),
                                duration_minutes=60, video_url="https://visio.example.org/rcp", participant_ids=[coordinator])
    for name in ("directory", "mdt"):
        catch_up(name, settings.eventsourcing_env(), relais)

    class Refusing:
        async def send(self, message) -> None:
            raise OSError("relais SMTP injoignable")

    assert asyncio.run(InvitationDelivery(pool, Refusing(), mail_from="r@x.example", base_url="").tick()) == 0
    with pool.connection() as conn:
        row = conn.execute("SELECT state, attempts, last_error, next_attempt_at > now() AS later FROM mdt_invitations").fetchone()
    assert (row["state"], row["attempts"], row["last_error"], row["later"]) == ("pending", 1, "relais SMTP injoignable", True)


def test_the_notification_mail_loop_sends_them(relais: Relais, settings):
    """`relais scheduler`'s delivery loop (bootstrap.build_mail_delivery) sends the invitations on its passes."""
    from entrypoints.bootstrap import build_mail_delivery

    tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    team = relais.add_service(establishment_id=tlse, code="greffe", name="Transplantation", specialty="néphrologie")
    coordinator = relais.add_practitioner(rpps=rpps(51), family_name="Bernard", given_name="Sophie", establishment_id=tlse,
                                          roles=["clinician"], service_ids=[team], email="s.bernard@chu.example")
    sid = relais.schedule_mdt_session(actor_id=coordinator, service_id=team, starts_at=relais.clock() + timedelta(days=1),
                                      duration_minutes=45, place="Salle 2", participant_ids=[coordinator])
    for name in ("directory", "mdt"):
        catch_up(name, settings.eventsourcing_env(), relais)
    delivery = build_mail_delivery(settings)
    try:
        asyncio.run(delivery.tick())
    finally:
        delivery.close()
    ((to, method, event),) = outbox_calendars(settings.outbox)
    assert (to, method, str(event["UID"])) == ("s.bernard@chu.example", "REQUEST", session_uid(sid))
