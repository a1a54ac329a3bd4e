"""The open dossier page's live updates: the page's stream (`/live?dossier=<id>`) says `dossier` when
something happens to that dossier (fed by the inbox projection's NOTIFY), only to someone who may read
it — checked when it opens and at every heartbeat (`forbidden` once a forward took it away) — and the
page fetches its #workspace block again."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import httpx
import pytest
from litestar import Litestar

from adapters.settings import Settings
from application import Relais
from projections.runner import catch_up
from tests.conftest import rpps
from tests.web.conftest import login
from tests.web.sse import Event, Stream, serve, signed_in
from web.pages import inbox as inbox_page

HX = {"HX-Request": "true"}


class LiveStream(Stream):
    """`/live` with a page's parameters (the dossier it shows)."""

    def __init__(self, client: httpx.AsyncClient, **params: str):
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.status = None
        self.ended = asyncio.Event()
        self._task = asyncio.create_task(self._read(client, params, {}))

    async def opened(self, timeout: float = 15.0) -> int:
        """The response's status once known."""
        deadline = time.monotonic() + timeout
        while self.status is None and not self.ended.is_set():
            assert time.monotonic() < deadline, "no response"
            await asyncio.sleep(0.02)
        return self.status or 0


def settle(relais: Relais, env: dict) -> None:
    for name in ("directory", "inbox", "access"):
        catch_up(name, env, relais)


def test_the_requesters_open_page_hears_the_opinion(app: Litestar, relais: Relais, passwords: dict, settings: Settings,
                                                    sent_dossier: dict):
    w, env = passwords, settings.eventsourcing_env()
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    settle(relais, env)

    async def scenario(base: str) -> None:
        requester = await signed_in(base, rpps(1))
        try:
            page = LiveStream(requester, dossier=did)
            await page.next("ready")
            await asyncio.to_thread(relais.accept, dossier_id=did, actor_id=w["recipient"], send_id=sid)
            await asyncio.to_thread(relais.give_opinion, dossier_id=did, actor_id=w["recipient"], send_id=sid,
                                    report="Thrombectomie indiquée, transfert immédiat.", conclusion="Thrombectomie")
            await asyncio.to_thread(catch_up, "inbox", env, relais)
            event = await page.next("dossier", skip=("ping", "inbox", "notify"))
            assert event.data == did
            block = await requester.get(f"/dossiers/{did}?live=1", headers=HX)
            assert block.status_code == 200 and 'id="workspace"' in block.text and "<html" not in block.text
            assert "Thrombectomie indiquée" in block.text
            await page.close()
        finally:
            await requester.aclose()

    with serve(app) as base:
        asyncio.run(scenario(base))


def test_a_changed_dossier_of_someone_else_is_not_announced(app: Litestar, relais: Relais, passwords: dict,
                                                            settings: Settings, sent_dossier: dict):
    """Another dossier's change reaches the page as `inbox` (its establishment's), never as `dossier`."""
    w, env = passwords, settings.eventsourcing_env()
    did = sent_dossier["dossier_id"]
    settle(relais, env)
    other = relais.create_dossier(actor_id=w["requester"], workflow="generic_opinion", question="Avis ?", urgency="routine",
                                  consent="given", patient_birth_name="Autre", patient_first_names="Anne",
                                  patient_birth_date="1960-01-01", patient_sex="F", patient_birth_place_code="31555")

    async def scenario(base: str) -> None:
        requester = await signed_in(base, rpps(1))
        try:
            page = LiveStream(requester, dossier=did)
            await page.next("ready")
            await asyncio.to_thread(relais.cancel_dossier, dossier_id=other, actor_id=w["requester"], reason="Doublon")
            await asyncio.to_thread(catch_up, "inbox", env, relais)
            event = await page.next("inbox", skip=("ping", "notify"))  # a `dossier` event first would fail here
            assert other in event.data
            await page.close()
        finally:
            await requester.aclose()

    with serve(app) as base:
        asyncio.run(scenario(base))


def test_only_readers_get_a_dossier_stream(app: Litestar, relais: Relais, passwords: dict, settings: Settings,
                                           sent_dossier: dict):
    did = sent_dossier["dossier_id"]
    settle(relais, settings.eventsourcing_env())

    async def scenario(base: str) -> None:
        outsider = await signed_in(base, rpps(3))  # Montpellier, not in neuroradiology: not a recipient
        try:
            for dossier in (did, str(uuid.uuid4()), "pas-un-id"):
                stream = LiveStream(outsider, dossier=dossier)
                assert await stream.opened() == 403, dossier
                await stream.close()
        finally:
            await outsider.aclose()

    with serve(app) as base:
        asyncio.run(scenario(base))


def test_a_forward_away_ends_the_recipients_dossier_stream_at_the_next_heartbeat(
    app: Litestar, relais: Relais, passwords: dict, settings: Settings, sent_dossier: dict, monkeypatch: pytest.MonkeyPatch,
):
    w = passwords
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    settle(relais, settings.eventsourcing_env())
    monkeypatch.setattr(inbox_page, "HEARTBEAT", 0.5)

    async def scenario(base: str) -> None:
        recipient = await signed_in(base, rpps(2))
        try:
            page = LiveStream(recipient, dossier=did)
            await page.next("ready")
            await page.next("ping")  # readable: the heartbeat goes on
            await asyncio.to_thread(relais.forward, dossier_id=did, actor_id=w["recipient"], send_id=sid,
                                    to_practitioner_id=w["outsider"])
            event = await page.next("forbidden", skip=("ping", "inbox", "dossier", "notify"))
            assert event.data == did
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(page.ended.wait(), 10)
            assert page.ended.is_set()
        finally:
            await recipient.aclose()

    with serve(app) as base:
        asyncio.run(scenario(base))


def test_the_dossier_page_carries_its_live_hooks(client, relais, passwords, settings, sent_dossier):
    settle(relais, settings.eventsourcing_env())
    login(client, rpps(1))
    page = client.get(f"/dossiers/{sent_dossier['dossier_id']}").text
    assert f'data-live-dossier="{sent_dossier["dossier_id"]}"' in page and 'data-live="/live"' in page
    assert 'id="dossier-changed"' in page and "Actualiser" in page
    assert "Réponse avant le" in page and "Prise en charge avant le" in page and "reste " in page
