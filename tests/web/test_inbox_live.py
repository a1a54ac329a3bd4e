"""The live inbox keeps delivering: streams opened and closed one by one and in bursts, the last one
closed, the listener's PostgreSQL backend killed; a page that missed changes resynchronises.

Real uvicorn server (its own loop, its lifespan), real PostgreSQL LISTEN/NOTIFY; the notifications
are sent as the inbox projection sends them (`pg_notify('relais_inbox', …)` with the same payload).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

import psycopg
import pytest
from litestar import Litestar

from adapters.settings import Settings
from application import Relais
from projections.inbox import CHANNEL
from projections.runner import catch_up
from tests.conftest import rpps
from tests.web.sse import Stream, serve, signed_in
from web.pages import inbox as inbox_page

# The web's listening backend: named by the live feed; before it had a name, found by its last query.
LISTENER = """SELECT pid FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND (application_name = 'relais-live' OR query ILIKE 'LISTEN%%relais_inbox%%')"""


def notify(url: str, establishment: str) -> str:
    """What the inbox projection sends when a dossier concerning `establishment` changes; its id."""
    dossier = str(uuid.uuid4())
    payload = {"dossier": dossier, "version": 2, "event": "Sent", "establishments": [establishment]}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(payload)))
    return dossier


def listeners(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [r[0] for r in conn.execute(LISTENER).fetchall()]


async def delivered(stream: Stream, dossier: str, timeout: float = 10.0) -> float:
    """Waits for the `inbox` event naming `dossier` (others, pings and resyncs passed over); when it came."""
    while True:
        event = await stream.next("inbox", timeout=timeout, skip=("ping", "resync", "down"))
        if json.loads(event.data)["dossier"] == dossier:
            return event.at


def test_streams_opened_and_closed_one_by_one_in_bursts_and_the_last_one(app: Litestar, passwords: dict, settings: Settings):
    url, montpellier = settings.database_url or "", str(passwords["montpellier"])

    async def scenario(base: str) -> None:
        recipient, colleague = await signed_in(base, rpps(2)), await signed_in(base, rpps(3))
        try:
            for _ in range(3):  # one tab at a time, each closed before the next opens (each the last one)
                tab = Stream(recipient)
                await tab.next("ready")
                await delivered(tab, notify(url, montpellier))
                await tab.close()

            keeper = Stream(colleague)  # stays open while a burst of tabs closes
            await keeper.next("ready")
            burst = [Stream(recipient) for _ in range(8)]
            for tab in burst:
                await tab.next("ready")
            await asyncio.gather(*(tab.close() for tab in burst))
            await delivered(keeper, notify(url, montpellier))

            await keeper.close()  # the last stream ends
            assert len(listeners(url)) == 1  # stream cleanup never touched the listening connection

            pages = [Stream(recipient), Stream(colleague)]  # opened again: every page still gets news
            for page in pages:
                await page.next("ready")
            dossier = notify(url, montpellier)
            for page in pages:
                await delivered(page, dossier)
            for page in pages:
                await page.close()
        finally:
            await recipient.aclose()
            await colleague.aclose()

    with serve(app) as base:
        asyncio.run(scenario(base))


def test_killing_the_listener_backend_resyncs_pages_and_delivery_resumes(app: Litestar, passwords: dict, settings: Settings):
    url, montpellier = settings.database_url or "", str(passwords["montpellier"])

    async def scenario(base: str) -> None:
        recipient, colleague = await signed_in(base, rpps(2)), await signed_in(base, rpps(3))
        try:
            pages = [Stream(recipient), Stream(colleague)]
            for page in pages:
                await page.next("ready")
            for round_ in range(2):  # killed twice: the reconnected listener is supervised as well
                [pid] = listeners(url)
                with psycopg.connect(url, autocommit=True) as conn:
                    killed_at = time.monotonic()
                    assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
                notify(url, montpellier)  # while nobody may be listening: the pages are told to reload
                for page in pages:
                    await page.next("resync", timeout=10, skip=("ping", "down", "inbox"))
                resynced_at = time.monotonic()
                dossier = notify(url, montpellier)
                arrived = [await delivered(page, dossier) for page in pages]
                print(f"\nlistener backend killed (round {round_ + 1}): pages resynced after "
                      f"{resynced_at - killed_at:.2f} s, next event on every page {max(arrived) - killed_at:.2f} s after the kill")
                assert listeners(url) and listeners(url) != [pid]
            for page in pages:
                await page.close()
        finally:
            await recipient.aclose()
            await colleague.aclose()

    with serve(app) as base:
        asyncio.run(scenario(base))


def test_a_page_opened_before_a_change_its_stream_missed_resyncs(app: Litestar, passwords: dict, relais: Relais, settings: Settings):
    """The page says which position of the inbox it shows; a stream opened after a change resyncs it."""
    env = settings.eventsourcing_env()

    async def scenario(base: str) -> None:
        recipient = await signed_in(base, rpps(2))
        try:
            page = await recipient.get("/inbox/received")
            match = re.search(r'data-position="(\d+)"', page.text)
            assert match, "the inbox page does not say which position it shows"
            shown = match.group(1)

            fresh = Stream(recipient, last=shown)  # nothing changed since the page: no reload
            ready = await fresh.next("ready")
            assert ready.id == shown
            await fresh.close()

            did = relais.create_dossier(
                actor_id=passwords["requester"], workflow="stroke_opinion", question="?", consent="given",
                patient_birth_name="Durand", patient_first_names="Anne", patient_birth_date="1960-01-01",
                patient_sex="F", patient_birth_place_code="31555",
            )
            relais.address_recipient(dossier_id=did, actor_id=passwords["requester"], establishment_id=passwords["montpellier"])
            relais.send_dossier(dossier_id=did, actor_id=passwords["requester"])
            await asyncio.to_thread(catch_up, "inbox", env, relais)  # sent before the page's stream opens

            late = Stream(recipient, last=shown)
            ready = await late.next("ready")
            assert ready.id is not None and int(ready.id) > int(shown)
            await late.next("resync", timeout=5)
            await late.close()

            native = Stream(recipient, last_event_id=shown)  # a browser's own reconnection says it this way
            await native.next("ready")
            await native.next("resync", timeout=5)
            await native.close()
            current = Stream(recipient, last_event_id=ready.id)  # up to date: no reload
            await current.next("ready")
            current_ping = await current.next("ping", skip=(), timeout=10)
            assert current_ping.name == "ping"
            await current.close()
        finally:
            await recipient.aclose()

    with serve(app) as base:
        asyncio.run(scenario(base))


def test_pings_keep_coming_while_other_establishments_changes_flow(
    app: Litestar, passwords: dict, settings: Settings, monkeypatch: pytest.MonkeyPatch,
):
    """Notifications for others are not sent to this page, and must not hold back its heartbeat
    (the browser takes a silent stream for a lost one)."""
    url, toulouse = settings.database_url or "", str(passwords["toulouse"])
    monkeypatch.setattr(inbox_page, "HEARTBEAT", 0.5)

    async def scenario(base: str) -> None:
        recipient = await signed_in(base, rpps(2))  # at Montpellier
        try:
            page = Stream(recipient)
            await page.next("ready")
            for _ in range(30):  # 3 s of Toulouse's changes, one every 0.1 s: six heartbeats due
                await asyncio.to_thread(notify, url, toulouse)
                await asyncio.sleep(0.1)
            names = []
            while not page.events.empty():
                names.append(page.events.get_nowait().name)
            assert "inbox" not in names
            assert names.count("ping") >= 2, names
            await page.close()
        finally:
            await recipient.aclose()

    with serve(app) as base:
        asyncio.run(scenario(base))
