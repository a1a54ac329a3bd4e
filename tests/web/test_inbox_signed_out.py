"""An open live inbox is held to the same rule as every request: when its session ends (sign-out
elsewhere, idle expiry) or its account is deactivated, the stream says so (`signedout`) and closes,
instead of feeding a page for hours to someone who may no longer see it."""

from __future__ import annotations

import asyncio
import re

import httpx
from litestar import Litestar

from adapters.settings import Settings
from application import Relais
from projections.runner import catch_up
from tests.conftest import rpps
from tests.web.sse import Stream, serve, signed_in

CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


def test_a_stream_whose_session_was_ended_elsewhere_is_told_and_closed(app: Litestar, passwords: dict):
    async def scenario(base: str) -> None:
        recipient = await signed_in(base, rpps(2))
        other_tab = httpx.AsyncClient(base_url=base, cookies=recipient.cookies, timeout=30)
        try:
            stream = Stream(recipient)
            await stream.next("ready")
            page = await other_tab.get("/inbox/received")
            token = CSRF.search(page.text)
            assert token, "no CSRF token on the inbox page"
            out = await other_tab.post("/logout", data={"_csrf_token": token.group(1)})
            assert out.status_code == 303
            event = await stream.next("signedout", timeout=15)
            assert event.data == "expiree"
            await asyncio.wait_for(stream.ended.wait(), 10)
        finally:
            await recipient.aclose()
            await other_tab.aclose()

    with serve(app) as base:
        asyncio.run(scenario(base))


def test_a_stream_of_a_deactivated_account_is_told_and_closed(app: Litestar, passwords: dict, relais: Relais, settings: Settings):
    view = app.state.services.imaging.directory

    def settle() -> None:
        catch_up("directory", settings.eventsourcing_env(), relais)
        view.forget_standings()  # as if the web's 5-second cache had run out

    settle()

    async def scenario(base: str) -> None:
        recipient = await signed_in(base, rpps(2))
        try:
            stream = Stream(recipient)
            await stream.next("ready")
            relais.deactivate_practitioner(practitioner_id=passwords["recipient"])
            await asyncio.to_thread(settle)
            event = await stream.next("signedout", timeout=15)
            assert event.data == "desactive"
            await asyncio.wait_for(stream.ended.wait(), 10)
        finally:
            await recipient.aclose()

    with serve(app) as base:
        asyncio.run(scenario(base))
