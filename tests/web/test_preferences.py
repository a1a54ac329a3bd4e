"""/preferences/notifications: a clinician's own preferences and absence; CSRF; other roles refused."""

from __future__ import annotations

from datetime import date, time, timedelta
from html import unescape

import pytest
from litestar.testing import TestClient

from adapters.notification_prefs import KINDS, Preferences, PreferenceStore
from entrypoints.bootstrap import build_pool
from tests.conftest import rpps
from tests.web.conftest import csrf_from, login


@pytest.fixture()
def store(settings):
    pool = build_pool(settings, max_size=2)
    yield PreferenceStore(pool)
    pool.close()


def away_of(store: PreferenceStore, pid: str) -> tuple[bool, date | None]:
    with store.pool.connection() as conn:
        row = conn.execute("SELECT away, away_until FROM dir_practitioners WHERE id = %s", (pid,)).fetchone()
    return row["away"], row["away_until"]


def test_defaults_then_saved(client: TestClient, passwords: dict, store: PreferenceStore, settle) -> None:
    settle()
    assert login(client, rpps(1)).status_code == 303
    assert 'href="/preferences/notifications"' in client.get("/").text  # the header links to it
    page = client.get("/preferences/notifications")
    assert page.status_code == 200
    html = unescape(page.text)
    assert "Préférences de notification" in html and "Je suis absent(e)" in html
    assert html.count('name="kinds"') == len(KINDS) and html.count("checked") >= len(KINDS) + 3  # defaults: all on
    until = (date.today() + timedelta(days=10)).isoformat()
    response = client.post("/preferences/notifications", data={
        "_csrf_token": csrf_from(page.text), "email": "on", "kinds": ["opinion_given", "declined"], "urgent_only": "on",
        "quiet_start": "21:30", "quiet_end": "07:00", "desktop": "on", "away": "on", "away_until": until,
    })
    assert response.status_code == 200 and "Préférences enregistrées." in response.text
    assert store.get(passwords["requester"]) == Preferences(
        email=True, kinds=frozenset({"opinion_given", "declined"}), urgent_only=True,
        quiet_start=time(21, 30), quiet_end=time(7, 0), digest=False, sound=False, desktop=True,
    )
    assert store.get(passwords["recipient"]) == Preferences()  # only mine
    settle()
    assert away_of(store, passwords["requester"]) == (True, date.fromisoformat(until))
    again = unescape(client.get("/preferences/notifications").text)
    assert 'value="21:30"' in again and f'value="{until}"' in again

    back = client.post("/preferences/notifications", data={"_csrf_token": csrf_from(again), "digest": "on"})
    assert back.status_code == 200
    prefs = store.get(passwords["requester"])
    assert prefs.digest and not prefs.email and prefs.kinds == frozenset()
    settle()
    assert away_of(store, passwords["requester"]) == (False, None)


def test_single_kind_and_wrong_values(client: TestClient, passwords: dict, store: PreferenceStore) -> None:
    assert login(client, rpps(2)).status_code == 303
    token = csrf_from(client.get("/preferences/notifications").text)
    ok = client.post("/preferences/notifications", data={"_csrf_token": token, "email": "on", "kinds": "received"})
    assert ok.status_code == 200
    assert store.get(passwords["recipient"]).kinds == frozenset({"received"})
    for bad, message in (
        ({"quiet_start": "22:00"}, "indiquez le début et la fin"),
        ({"quiet_start": "25:00", "quiet_end": "07:00"}, "HH:MM"),
        ({"away": "on", "away_until": "2001-01-01"}, "date de retour est passée"),
        ({"away": "on", "away_until": "demain"}, "date de retour invalide"),
    ):
        response = client.post("/preferences/notifications", data={"_csrf_token": token, "email": "on", **bad})
        assert response.status_code == 422 and message in unescape(response.text), bad
    assert store.get(passwords["recipient"]).kinds == frozenset({"received"})  # nothing saved


def test_csrf_required(client: TestClient, passwords: dict, store: PreferenceStore) -> None:
    assert login(client, rpps(1)).status_code == 303
    client.get("/preferences/notifications")
    response = client.post("/preferences/notifications", data={"digest": "on"})
    assert response.status_code == 403
    assert store.get(passwords["requester"]) == Preferences()


def test_other_roles_and_anonymous_refused(client: TestClient, passwords: dict, store: PreferenceStore) -> None:
    assert client.get("/preferences/notifications", follow_redirects=False).status_code in (302, 303)
    assert login(client, rpps(4)).status_code == 303  # the auditor
    assert client.get("/preferences/notifications").status_code == 403
    token = csrf_from(client.get("/").text)
    assert client.post("/preferences/notifications", data={"_csrf_token": token, "digest": "on"}).status_code == 403
    assert store.get(passwords["auditor"]) == Preferences()
