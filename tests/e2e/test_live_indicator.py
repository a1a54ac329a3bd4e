"""The live inbox's indicator tells the truth in Debian's Chromium (Playwright): « en direct » while the
stream is open, « reconnexion… » (amber) as soon as the web server is gone, « hors ligne » (red) when
that lasts, « en direct » again once a new server answers — and a dossier sent while the page was
cut off appears after it reconnects (the page sends the position it shows; the server resyncs it).

`relais serve` as a real process, killed and started again on the same port; sessions in Redis so the
page stays signed in across the restart.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.credentials import Credentials
from adapters.settings import Settings
from entrypoints.bootstrap import build_app, build_pool
from projections.runner import catch_up
from tests.conftest import rpps
from tests.e2e.conftest import CHROMIUM, launch, private_platform
from tests.peers import wait_port
from tests.processes import RelaisProcess

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")

PASSWORD = "indicator password 2026"
STATE = {name: re.compile(rf"\b{name}\b") for name in ("on", "off", "down")}  # the indicator's class
REDIS_URL = os.environ.get("RELAIS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture()
def world(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (scripts/system-packages.sh)")
    secret = "live-indicator-test-secret-key-0123456789"
    with private_platform("relais_live", tmp_path / "var", secret, REDIS_URL) as (settings, env):
        yield from _world(settings, env)


def _world(settings: Settings, env: dict[str, str]) -> Iterator[dict]:
    relais = build_app(settings)
    pool = build_pool(settings, max_size=1)
    tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    mtp = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
    requester = relais.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire", establishment_id=tlse,
                                        roles=["clinician"])
    recipient = relais.add_practitioner(rpps=rpps(2), family_name="Durand", given_name="Paul", establishment_id=mtp,
                                        roles=["clinician"])
    Credentials(pool).set_password(recipient, PASSWORD)
    pool.close()
    try:
        yield {"env": env, "relais": relais, "settings": settings, "requester": requester, "montpellier": mtp}
    finally:
        relais.close()


def send(world: dict, name: str) -> None:
    """A dossier of Toulouse sent to Montpellier, written to the inbox (which notifies)."""
    relais, requester = world["relais"], world["requester"]
    did = relais.create_dossier(
        actor_id=requester, workflow="stroke_opinion", question="?", consent="given", patient_birth_name=name,
        patient_first_names="Anne", patient_birth_date="1960-01-01", patient_sex="F", patient_birth_place_code="31555",
    )
    relais.address_recipient(dossier_id=did, actor_id=requester, establishment_id=world["montpellier"])
    relais.send_dossier(dossier_id=did, actor_id=requester)
    catch_up("inbox", world["settings"].eventsourcing_env(), relais)


def test_the_indicator_turns_amber_then_red_when_the_server_dies_and_green_when_it_is_back(world):
    expect = playwright.expect
    env, port = world["env"], int(world["env"]["RELAIS_HTTP_PORT"])
    server = RelaisProcess(["serve"], env)
    wait_port(port, timeout=60, proc=server.process)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_context(base_url=f"http://127.0.0.1:{port}", locale="fr-FR").new_page()
            page.goto("/login")
            page.fill("#login", rpps(2))
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            status = page.locator("#live-status")
            expect(page.locator("h1")).to_have_text("Boîte de réception")
            expect(status).to_have_class(STATE["on"], timeout=10_000)
            expect(status).to_have_text("en direct")

            send(world, "Premier")  # live while connected
            expect(page.locator(".row", has_text="PREMIER")).to_be_visible(timeout=10_000)

            killed_at = time.monotonic()
            server.process.send_signal(signal.SIGKILL)  # the server dies: no goodbye on the stream
            server.process.wait(timeout=30)
            expect(status).to_have_class(STATE["off"], timeout=10_000)
            expect(status).to_have_text("reconnexion…")
            amber = time.monotonic() - killed_at
            expect(status).to_have_class(STATE["down"], timeout=10_000)
            expect(status).to_have_text("hors ligne")
            red = time.monotonic() - killed_at

            send(world, "Pendant")  # while the page is cut off: its notification is heard by nobody
            server = RelaisProcess(["serve"], env)
            wait_port(port, timeout=60, proc=server.process)
            restarted_at = time.monotonic()
            expect(status).to_have_class(STATE["on"], timeout=20_000)
            green = time.monotonic() - restarted_at
            expect(page.locator(".row", has_text="PENDANT")).to_be_visible(timeout=10_000)  # resynced
            expect(page.locator(".tab.active .count").first).to_have_text("2")
            print(f"\nindicator: amber {amber:.1f} s and red {red:.1f} s after the server was killed, "
                  f"green {green:.1f} s after the new server listened")

            send(world, "Apres")  # and live again
            expect(page.locator(".row", has_text="APRES")).to_be_visible(timeout=10_000)
        finally:
            browser.close()
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
                server.process.wait(timeout=30)
