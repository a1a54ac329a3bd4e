"""The stroke fast path in Debian's Chromium (Playwright) against a real `relais serve`: from the inbox to
« Envoyé » through three screens — the patient (birthplace chosen from the commune list as typed), the
stroke form with consent and the gateway's images, review and send to the preset neurovascular on-call
pool. The screens, the interactions (clicks, fills, key presses) and the page timings are printed (-s)."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.credentials import Credentials
from domain.values import PARIS
from entrypoints.bootstrap import build_app, build_pool
from projections.runner import catch_up
from tests.conftest import rpps
from tests.e2e.conftest import CHROMIUM, launch, private_platform
from tests.peers import wait_port
from tests.processes import RelaisProcess

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")

PASSWORD = "fast path password 2026"
REDIS_URL = os.environ.get("RELAIS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
OUTPUT = Path(os.environ.get("RELAIS_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output")) / "e2e"


def shot(page: Any, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"stroke-{name}.png"), full_page=True)


@pytest.fixture()
def platform(tmp_path) -> Iterator[dict[str, Any]]:
    """Toulouse's requester; Montpellier's neurovascular on-call pool, Toulouse's default for stroke requests."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (scripts/system-packages.sh)")
    with private_platform("relais_fast", tmp_path / "var", "stroke-fast-path-test-secret-0123456789", REDIS_URL) as (settings, env):
        relais = build_app(settings)
        pool = build_pool(settings, max_size=1)
        tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
        mtp = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
        relais.add_service(establishment_id=mtp, code="astreinte-nv", name="Astreinte neurovasculaire régionale (AVC)")
        requester = relais.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire", establishment_id=tlse,
                                            roles=["clinician"])
        Credentials(pool).set_password(requester, PASSWORD)
        pool.close()
        relais.set_default_recipient(establishment_id=tlse, workflow="stroke_opinion", to_establishment_id=mtp,
                                     to_service_code="astreinte-nv")
        catch_up("directory", settings.eventsourcing_env(), relais)
        server = RelaisProcess(["serve"], env)
        try:
            wait_port(int(env["RELAIS_HTTP_PORT"]), timeout=60, proc=server.process)
            yield {"relais": relais, "requester": requester, "base": f"http://127.0.0.1:{env['RELAIS_HTTP_PORT']}"}
        finally:
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
                server.process.wait(timeout=30)
            relais.close()


class Journey:
    """The page, with the user's interactions counted and each screen's load timed."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.clicks = self.fills = self.keys = 0
        self.screens: list[tuple[str, float, dict[str, float]]] = []  # (path, seconds from the action, navigation timing)
        self.navigations = 0
        page.on("framenavigated", lambda frame: self._navigated(frame))

    def _navigated(self, frame: Any) -> None:
        if frame == self.page.main_frame:
            self.navigations += 1

    def click(self, selector: str) -> None:
        self.clicks += 1
        self.page.click(selector)

    def check(self, selector: str) -> None:
        self.clicks += 1
        self.page.check(selector)

    def fill(self, selector: str, value: str) -> None:
        self.fills += 1
        self.page.fill(selector, value)

    def select(self, selector: str, value: str) -> None:
        self.clicks += 1
        self.page.select_option(selector, value)

    def type(self, selector: str, text: str) -> None:
        self.keys += len(text)
        self.page.locator(selector).press_sequentially(text, delay=60)

    def to_next_screen(self, selector: str) -> None:
        """Clicks what leads to the next screen and times it until that screen has loaded."""
        before = self.navigations
        started = time.monotonic()
        self.click(selector)
        deadline = time.monotonic() + 60
        while self.navigations == before and time.monotonic() < deadline:
            self.page.wait_for_timeout(20)
        self.page.wait_for_load_state("load")
        elapsed = time.monotonic() - started
        timing = self.page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0];
            return {response: n.responseEnd - n.requestStart, dom: n.domContentLoadedEventEnd - n.startTime,
                    load: n.loadEventEnd - n.startTime}; }""")
        self.screens.append((self.page.url.split("//", 1)[1].split("/", 1)[1], elapsed, timing))

    @property
    def interactions(self) -> int:
        return self.clicks + self.fills + self.keys


def test_from_the_inbox_to_sent_in_three_screens(platform):
    expect = playwright.expect
    now = datetime.now(PARIS)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(base_url=platform["base"], locale="fr-FR", timezone_id="Europe/Paris")
            page = context.new_page()
            page.goto("/login")
            page.fill("#login", rpps(1))
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Boîte de réception", timeout=20_000)

            j = Journey(page)
            # screen 1: the patient
            j.to_next_screen("a:has-text('Nouvelle demande AVC')")
            expect(page.locator("h1")).to_contain_text("Identité du patient")
            expect(page.locator("input[name=urgency][value=stat]")).to_be_checked()
            j.fill("#f-birth_name", "Garcia")
            j.fill("#f-first_names", "Antoine")
            j.fill("#f-birth_date", "1971-11-19")
            j.select("#f-sex", "M")
            j.type("#f-birth_place", "toul")
            option = page.locator("#birth-place-options [role=option]", has_text="Toulouse (31)")
            expect(option).to_be_visible(timeout=10_000)
            shot(page, "1-patient-birthplace")
            j.click("#birth-place-options [role=option]:has-text('Toulouse (31)')")
            expect(page.locator("#f-birth_place")).to_have_value("Toulouse (31)")
            expect(page.locator("#f-birth_place_code")).to_have_value("31555")
            j.to_next_screen("form button[type=submit]:has-text('Continuer')")

            # screen 2: the stroke form, consent, imaging (the gateway's, chosen by default)
            expect(page.locator("h1")).to_contain_text("AVC aigu")
            expect(page.locator("input[name=imaging_source][value=dicom_store]")).to_be_checked()
            j.check("input[name=time_reference][value=onset]")
            j.fill("#f-onset_at", f"{now - timedelta(minutes=70):%Y-%m-%dT%H:%M}")
            j.fill("#f-arrival_at", f"{now - timedelta(minutes=35):%Y-%m-%dT%H:%M}")
            j.fill("#f-nihss_total", "14")
            j.check("input[name=anticoagulant][value=no]")
            j.check("input[name=imaging][value=ct]")
            j.check("input[name=angiography][value=true]")
            j.check("input[name=thrombolysis][value=false]")
            j.check("input[name=question][value=thrombectomy]")
            j.check("input[name=consent][value=given]")
            j.fill("#f-accession_number", "ACC20261208")
            shot(page, "2-form")
            j.to_next_screen("form button[type=submit]:has-text('Créer et vérifier')")

            # screen 3: review, the recipient preset, send
            expect(page.locator("h1")).to_have_text("Vérifier et envoyer")
            expect(page.locator("#recipients")).to_contain_text("Astreinte neurovasculaire régionale (AVC)")
            shot(page, "3-review")
            j.to_next_screen("#send-button")
            expect(page.locator("body")).to_contain_text("Envoyé", timeout=20_000)
            landed = j.screens[-1][0]
            shot(page, "4-sent")

            acted_on = len(j.screens) - 1  # the last load is the dossier page saying « Envoyé »
            print(f"\nstroke fast path: {acted_on} screens from the inbox to « Envoyé » "
                  f"({j.navigations} page loads, the last one the sent dossier's page)")
            print(f"interactions: {j.interactions} ({j.clicks} clicks, {j.fills} fills, {j.keys} key presses)")
            for path, elapsed, timing in j.screens:
                shown = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "{id}", "/" + path)
                print(f"  {shown}: {elapsed * 1000:.0f} ms from the action to the loaded page "
                      f"(response {timing['response']:.0f} ms, DOM ready {timing['dom']:.0f} ms, load {timing['load']:.0f} ms)")
            assert acted_on <= 3
            assert j.navigations == len(j.screens)  # no page load the journey did not count
            context.close()
        finally:
            browser.close()
    relais, requester = platform["relais"], platform["requester"]
    did = landed.split("/")[1]
    d = relais.get_dossier(dossier_id=did, actor_id=requester)
    assert d.urgency == "stat" and d.imaging_source == "dicom_store" and d.patient["birth_place_code"] == "31555"
    assert d.form["answers"]["nihss_total"] == 14 and [s["state"] for s in d.sends] == ["requested"]


def test_the_birthplace_by_keyboard_and_an_ambiguous_name_chosen_at_its_field(platform):
    expect = playwright.expect
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_context(base_url=platform["base"], locale="fr-FR").new_page()
            page.goto("/login")
            page.fill("#login", rpps(1))
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.goto("/dossiers/new?workflow=stroke_opinion")
            page.fill("#f-birth_name", "Garcia")
            page.fill("#f-first_names", "Antoine")
            page.fill("#f-birth_date", "1971-11-19")
            page.select_option("#f-sex", "M")
            field = page.locator("#f-birth_place")
            field.press_sequentially("st gaud", delay=60)
            expect(page.locator("#birth-place-options [role=option]").first).to_contain_text("Saint-Gaudens (31)", timeout=10_000)
            expect(field).to_have_attribute("aria-expanded", "true")
            field.press("ArrowDown")
            expect(field).to_have_attribute("aria-activedescendant", "place-1")
            field.press("Enter")  # chooses, does not send the form
            expect(field).to_have_value("Saint-Gaudens (31)")
            expect(page.locator("#f-birth_place_code")).to_have_value("31483")
            expect(page.locator("#birth-place-options")).to_be_hidden()
            # a name typed and not chosen: resolved on submit; an ambiguous one is asked at its field
            with page.expect_response("**/communes?*"):
                field.fill("Beaulieu")
            expect(page.locator("#birth-place-options")).to_be_visible()
            field.press("Escape")  # the suggestions closed, none chosen
            expect(page.locator("#birth-place-options")).to_be_hidden()
            page.click("form button[type=submit]:has-text('Continuer')")
            expect(page.locator("#err-birth_place")).to_contain_text("plusieurs lieux")
            expect(field).to_be_focused()
            expect(field).to_have_value("Beaulieu")
            page.check("input[name=birth_place_code][value='43021']")
            page.click("form button[type=submit]:has-text('Continuer')")
            expect(page.locator("h1")).to_contain_text("AVC aigu")
            expect(page.locator("input[name=birth_place_code]")).to_have_value("43021")
        finally:
            browser.close()
