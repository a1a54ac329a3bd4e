"""The received tab's order: active sends first by urgency (« Immédiate » on top), then by the deadline
that runs, then by age; the others after, by last activity. Keyset pages follow that order without
duplicates or holes; rows show the time left or late, overdue rows stand out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from application import Relais
from projections.inbox_queries import Filters, InboxRow, Scope
from projections.runner import catch_up, open_view
from tests.clock import Clock
from tests.conftest import PATIENT, rpps
from tests.web.conftest import login

HX = {"HX-Request": "true"}
URGENCY_RANK = {"stat": 0, "asap": 1, "urgent": 2, "routine": 3}


@pytest.fixture()
def inbox(settings):
    view = open_view("inbox", settings.eventsourcing_env())
    yield view
    view.datastore.close()


def tag(i: int) -> str:
    """Letters for a number (names accept no digits)."""
    return chr(65 + i // 26) + chr(65 + i % 26)


def send(relais: Relais, w: dict, workflow: str, urgency: str, name: str = "Dupont") -> tuple[str, str]:
    did = relais.create_dossier(actor_id=w["requester"], workflow=workflow, question="Avis ?", urgency=urgency,
                                consent="given", **(PATIENT | {"patient_birth_name": name}))
    sid = relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                                   service_id=w["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])
    return did, sid


def settle(relais: Relais, settings) -> None:
    for name in ("directory", "inbox", "access"):
        catch_up(name, settings.eventsourcing_env(), relais)


def recipient_scope(w: dict) -> Scope:
    return Scope(practitioner_id=w["recipient"], establishment_id=w["montpellier"], service_ids=(w["neuro"],))


def expected_key(r: InboxRow) -> tuple:
    """The documented order, written again in Python from the rows' own fields."""
    due = r.due
    if r.state in ("requested", "in_progress", "on_hold"):
        return (0, URGENCY_RANK[r.urgency], due[1] if due else datetime.max.replace(tzinfo=UTC), 0.0)
    return (1, 0, datetime.max.replace(tzinfo=UTC), -r.since.timestamp())


def test_a_stroke_stat_request_is_above_newer_routine_ones(client, relais, settings, passwords):
    w = passwords
    stroke, _ = send(relais, w, "stroke_opinion", "stat", name="Avc")
    routine = [send(relais, w, "generic_opinion", "routine", name="Routine" + tag(i))[0] for i in range(3)]
    settle(relais, settings)
    login(client, rpps(2))
    html = client.get("/inbox/received", headers=HX).text
    numbers = {did: relais.get_dossier(dossier_id=did, actor_id=w["requester"]).number for did in [stroke, *routine]}
    positions = {did: html.index(n) for did, n in numbers.items()}
    assert all(positions[stroke] < positions[did] for did in routine), positions
    assert "reste 10 min" in html or "reste 9 min" in html  # the stroke's accept delay (10 min) runs


def test_overdue_rows_stand_out_with_the_delay_late(client, settings, passwords, inbox):
    w = passwords
    clock = Clock(datetime.now(UTC) - timedelta(hours=2, minutes=5))
    past = Relais(env=settings.eventsourcing_env(), clock=clock)
    try:
        late, _ = send(past, w, "stroke_opinion", "stat", name="Retard")
        settle(past, settings)
    finally:
        past.close()
    (row,) = inbox.page(recipient_scope(w), "received", Filters()).rows
    assert row.dossier_id == late and row.due is not None and row.due[0] == "accept"
    login(client, rpps(2))
    html = client.get("/inbox/received", headers=HX).text
    assert "row-overdue" in html and "en retard de 1 h 55" in html  # accept_by was 10 min after sending


def test_order_and_keyset_pages_without_duplicates_or_holes(relais, settings, world, inbox):
    w = world
    sends = {}
    for i, (workflow, urgency) in enumerate([
        ("generic_opinion", "routine"), ("stroke_opinion", "stat"), ("generic_opinion", "urgent"),
        ("emergency_opinion", "urgent"), ("generic_opinion", "asap"), ("stroke_opinion", "routine"),
        ("generic_opinion", "routine"), ("emergency_opinion", "stat"), ("generic_opinion", "routine"),
        ("imaging_transfer", "urgent"),
    ]):
        sends[i] = send(relais, w, workflow, urgency, name="Patient" + tag(i))
    # some taken in charge (the answer deadline runs), one on hold, two answered (no longer active)
    relais.accept(dossier_id=sends[0][0], actor_id=w["recipient"], send_id=sends[0][1])
    relais.accept(dossier_id=sends[3][0], actor_id=w["recipient"], send_id=sends[3][1])
    relais.accept(dossier_id=sends[5][0], actor_id=w["recipient"], send_id=sends[5][1])
    relais.request_complement(dossier_id=sends[5][0], actor_id=w["recipient"], send_id=sends[5][1], message="Scanner ?")
    for i in (6, 8):
        relais.give_opinion(dossier_id=sends[i][0], actor_id=w["recipient"], send_id=sends[i][1], report="Avis.")
    settle(relais, settings)

    scope = recipient_scope(w)
    whole = inbox.page(scope, "received", Filters(), limit=200).rows
    assert len(whole) == 10
    assert [r.send_id for r in whole] == [r.send_id for r in sorted(whole, key=expected_key)]
    assert [r.urgency for r in whole[:2]] == ["stat", "stat"]
    assert {r.state for r in whole[-2:]} == {"answered"}
    # « Urgente » ones by the deadline that runs, not by age: the emergency opinion taken in charge
    # (answer within 4 h), the imaging transfer (accept within 12 h), the generic opinion sent first (1 day)
    urgent = [r.workflow for r in whole if r.urgency == "urgent"]
    assert urgent == ["emergency_opinion", "imaging_transfer", "generic_opinion"]

    for size in (1, 3, 4):
        walked, cursor, pages = [], None, 0
        while True:
            page = inbox.page(scope, "received", Filters(), cursor=cursor, limit=size)
            walked += [r.send_id for r in page.rows]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
            assert pages < 20
        assert walked == [r.send_id for r in whole], size  # same rows, same order: no duplicate, no hole


def test_page_two_over_http_continues_the_order(client, relais, settings, passwords, inbox):
    """Infinite scroll: the `next_url` of page one gives the rest, in order, once."""
    w = passwords
    for i in range(27):  # PAGE_SIZE is 25
        send(relais, w, "generic_opinion", ("stat", "routine", "urgent")[i % 3], name="Lot" + tag(i))
    settle(relais, settings)
    login(client, rpps(2))
    first = client.get("/inbox/received", headers=HX).text
    assert 'hx-trigger="revealed"' in first
    import re

    next_url = re.search(r'<li class="row-more" hx-get="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(next_url, headers=HX).text
    ids_first = re.findall(r'data-dossier="([^"]+)"', first)
    ids_second = re.findall(r'data-dossier="([^"]+)"', second)
    assert len(ids_first) == 25 and len(ids_second) == 2 and not set(ids_first) & set(ids_second)
    whole = [r.dossier_id for r in inbox.page(recipient_scope(w), "received", Filters(), limit=200).rows]
    assert ids_first + ids_second == whole


def test_the_requester_s_sent_tab_shows_the_answer_awaited_and_its_delay(client, relais, settings, passwords):
    """The requester waits for an opinion: each dossier of « Envoyés » shows the earliest answer deadline of its
    sends still being worked on (« reste … », « en retard de … »), and none once answered."""
    w = passwords
    clock = Clock(datetime.now(UTC) - timedelta(minutes=45))
    past = Relais(env=settings.eventsourcing_env(), clock=clock)
    try:
        late, _ = send(past, w, "stroke_opinion", "stat", name="Retard")  # answer within 30 min: 15 min late
    finally:
        past.close()
    running, _ = send(relais, w, "generic_opinion", "routine", name="Attente")  # answer within 7 days
    answered, sid = send(relais, w, "generic_opinion", "routine", name="Repondu")
    relais.give_opinion(dossier_id=answered, send_id=sid, actor_id=w["recipient"], report="R", conclusion="C")
    settle(relais, settings)
    login(client, rpps(1))
    html = client.get("/inbox/sent", headers=HX).text
    rows = {did: html[html.rindex("<li", 0, html.index(f'data-dossier="{did}"')):].split("</li>", 1)[0]
            for did in (late, running, answered)}
    assert "row-overdue" in rows[late] and "en retard de 15 min" in rows[late]
    assert "reste 6 j" in rows[running] or "reste 7 j" in rows[running]
    assert "deadline" not in rows[answered]
