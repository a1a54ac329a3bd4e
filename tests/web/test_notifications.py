"""The notification centre: the list (newest first, unread marked), the header's count, the tab title and
favicon, opening and marking read (one's own rows only, CSRF), and the live `notify` events of the
page's stream, for the practitioners told only. Notifications come from the real projection
(projections/notifications.py)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import psycopg
from litestar import Litestar

from adapters.notification_prefs import Preferences, PreferenceStore
from adapters.settings import Settings
from application import Relais
from entrypoints.bootstrap import build_pool
from projections.notification_centre import CHANNEL
from projections.runner import catch_up
from tests.conftest import PATIENT, rpps
from tests.web.conftest import csrf_from, login
from tests.web.sse import Stream, serve, signed_in
from web.pages import inbox as inbox_page

HX = {"HX-Request": "true"}


def settle(relais: Relais, settings: Settings) -> None:
    for name in ("directory", "inbox", "access", "notifications"):
        catch_up(name, settings.eventsourcing_env(), relais)


def send_stroke(relais: Relais, w: dict, urgency: str = "stat", name: str = "Dupont") -> tuple[str, str]:
    did = relais.create_dossier(actor_id=w["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                                urgency=urgency, consent="given", **(PATIENT | {"patient_birth_name": name}))
    sid = relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                                   service_id=w["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])
    return did, sid


def rows_of(settings: Settings, practitioner: str) -> list[dict]:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        cur = conn.execute("SELECT id::text, kind, dossier_id::text, read_at FROM notifications WHERE practitioner_id = %s "
                           "ORDER BY created_at", (practitioner,))
        return [dict(zip(("id", "kind", "dossier_id", "read_at"), r, strict=True)) for r in cur.fetchall()]


def read(settings: Settings, practitioner: str) -> dict[str, bool]:
    return {r["id"]: r["read_at"] is not None for r in rows_of(settings, practitioner)}


def test_the_list_the_count_the_title_and_the_favicon(client, relais, settings, passwords):
    w = passwords
    first, _ = send_stroke(relais, w, name="Premier")
    second, _ = send_stroke(relais, w, urgency="routine", name="Second")
    settle(relais, settings)
    numbers = [relais.get_dossier(dossier_id=d, actor_id=w["requester"]).number for d in (first, second)]

    login(client, rpps(2))
    page = client.get("/notifications").text
    assert page.count('class="notification unread') == 2
    assert page.index(numbers[1]) < page.index(numbers[0])  # newest first
    assert "Nouvelle demande" in page and "PREMIER" not in page and "Premier" not in page  # no patient data
    inbox = client.get("/inbox/received").text
    assert "<title>(2) Reçus" in inbox
    assert 'id="bell-count" data-count="2"' in inbox and 'href="/notifications/favicon.svg?n=2"' in inbox
    svg = client.get("/notifications/favicon.svg?n=2")
    assert svg.headers["content-type"].startswith("image/svg+xml") and ">2</text>" in svg.text
    panel = client.get("/notifications?panel=1", headers=HX).text
    assert 'id="bell-panel"' in panel and "Tout marquer comme lu" in panel and "<html" not in panel

    client.cookies.clear()
    login(client, rpps(1))  # the requester was told nothing yet
    assert "Aucune notification" in client.get("/notifications").text
    assert "<title>(" not in client.get("/inbox/sent").text


def test_marking_read_one_all_and_by_opening(client, relais, settings, passwords):
    w = passwords
    for name in ("Alpha", "Beta", "Gamma"):
        send_stroke(relais, w, name=name)
    settle(relais, settings)
    mine = rows_of(settings, w["recipient"])
    assert len(mine) == 3 and all(r["read_at"] is None for r in mine)
    login(client, rpps(2))
    token = csrf_from(client.get("/notifications").text)

    assert client.post(f"/notifications/{mine[0]['id']}/read", data={}).status_code == 403  # no CSRF token
    r = client.post(f"/notifications/{mine[0]['id']}/read", data={"_csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert read(settings, w["recipient"]) == {mine[0]["id"]: True, mine[1]["id"]: False, mine[2]["id"]: False}

    opened = client.get(f"/notifications/{mine[1]['id']}/open", follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == f"/dossiers/{mine[1]['dossier_id']}"
    assert read(settings, w["recipient"]) == {mine[0]["id"]: True, mine[1]["id"]: True, mine[2]["id"]: False}

    assert client.get(f"/dossiers/{mine[2]['dossier_id']}").status_code == 200  # opening the dossier marks its own
    assert all(x["read_at"] is not None for x in rows_of(settings, w["recipient"]))
    assert "<title>(" not in client.get("/inbox/received").text

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("UPDATE notifications SET read_at = NULL")
    listed = client.post("/notifications/read-all", data={"_csrf_token": token}, headers=HX).text
    assert "Tout est lu." in listed and 'class="notification unread' not in listed
    assert all(x["read_at"] is not None for x in rows_of(settings, w["recipient"]))


def test_another_practitioners_notifications_are_refused(client, relais, settings, passwords):
    w = passwords
    send_stroke(relais, w)
    settle(relais, settings)
    (theirs,) = rows_of(settings, w["recipient"])
    login(client, rpps(3))  # a clinician of the same establishment, not told
    token = csrf_from(client.get("/notifications").text)
    assert client.post(f"/notifications/{theirs['id']}/read", data={"_csrf_token": token}).status_code == 404
    assert client.get(f"/notifications/{theirs['id']}/open", follow_redirects=False).status_code == 404
    client.post("/notifications/read-all", data={"_csrf_token": token})
    assert rows_of(settings, w["recipient"])[0]["read_at"] is None  # untouched
    assert client.post(f"/notifications/{uuid.uuid4()}/read", data={"_csrf_token": token}).status_code == 404
    assert client.post("/notifications/not-an-id/read", data={"_csrf_token": token}).status_code == 404


def test_the_stream_tells_the_practitioners_told_and_no_one_else(app: Litestar, relais: Relais, passwords: dict,
                                                                 settings: Settings):
    w, env = passwords, settings.eventsourcing_env()
    pool = build_pool(settings, max_size=1)
    try:
        PreferenceStore(pool).save(w["recipient"], Preferences(sound=False, desktop=True))
    finally:
        pool.close()
    inbox_page._preferences.clear()  # kept 10 s by the process: another test's may still be there

    async def scenario(base: str) -> None:
        recipient, outsider = await signed_in(base, rpps(2)), await signed_in(base, rpps(3))
        try:
            mine, theirs = Stream(recipient), Stream(outsider)
            ready = json.loads((await mine.next("ready")).data)
            assert ready == {"unread": 0, "sound": False, "desktop": True}
            await theirs.next("ready")
            did, _ = await asyncio.to_thread(send_stroke, relais, w)
            for name in ("directory", "notifications"):  # whom to tell: the service's members (directory)
                await asyncio.to_thread(catch_up, name, env, relais)
            told = json.loads((await mine.next("notify", skip=("ping", "inbox"))).data)
            number = relais.get_dossier(dossier_id=did, actor_id=w["requester"]).number
            assert told["unread"] == 1 and told["kind"] == "received" and told["urgent"] is True
            assert told["dossier"] == did and number in told["title"] and told["url"].startswith("/notifications/")
            assert told["sound"] is False and told["desktop"] is True
            # then a notification for the outsider alone: the first one it hears of is that one
            marker = str(uuid.uuid4())
            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(
                    {"practitioners": [w["outsider"]], "dossier": marker, "kind": "received", "urgency": "routine"})))
            heard = json.loads((await theirs.next("notify", skip=("ping", "inbox"))).data)
            assert heard["dossier"] == marker and heard["unread"] == 0 and heard["urgent"] is False
            await mine.close()
            await theirs.close()
        finally:
            await recipient.aclose()
            await outsider.aclose()

    with serve(app) as base:
        asyncio.run(scenario(base))


def test_a_urgent_notification_page_shows_the_bell_for_clinicians_only(client, relais, settings, passwords):
    login(client, rpps(4))  # an auditor: no bell, no stream
    page = client.get("/audit").text
    assert 'id="bell"' not in page and "data-live=" not in page
    assert client.get("/notifications").status_code == 403
    assert re.search(r'rel="icon"[^>]+n=0', page)
