"""Browser journeys (Debian Chromium through Playwright) against a live `relais serve` whose sessions
live in Redis: the session is ended server-side while the user is typing (as the store does after
an hour idle), the user sends the form, lands on the login page told why, signs in, and is back on
the page with what they typed; the warning before the idle expiry keeps the session alive."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import redis

from adapters.settings import Settings
from entrypoints.bootstrap import build_app
from tests.conftest import PATIENT, rpps
from tests.e2e.conftest import CHROMIUM
from tests.live import PASSWORD, live_server

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")

REDIS_URL = "redis://127.0.0.1:6379/15"
EXPIRED = "Votre session a expiré : reconnectez-vous, votre saisie a été conservée."


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (scripts/system-packages.sh)")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    with live_server(tmp_path_factory.mktemp("expiry"), RELAIS_REDIS_URL=REDIS_URL) as server:
        relais = build_app(Settings(database_url=server.database_url))
        try:
            did = relais.create_dossier(actor_id=server.users["requester"], workflow="stroke_opinion",
                                        question="Thrombectomie ?", urgency="stat", consent="given", **PATIENT)
            relais.address_recipient(dossier_id=did, actor_id=server.users["requester"],
                                     establishment_id=server.ids["montpellier"], service_id=server.ids["neuro"])
            relais.send_dossier(dossier_id=did, actor_id=server.users["requester"])
        finally:
            relais.close()
        server.ids["dossier"] = did
        yield server


def sign_in(page, login: str) -> None:
    page.fill("#login", login)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")


def end_session(context) -> None:
    """Deletes the browser's session from the store, as the store does after IDLE_TIMEOUT."""
    session_id = next(c["value"] for c in context.cookies() if c["name"] == "relais_session")
    assert redis.Redis.from_url(REDIS_URL).delete(f"relais_sessions:{session_id}") == 1


def drafts(page) -> dict:
    return json.loads(page.evaluate(
        "JSON.stringify(Object.fromEntries(Object.keys(sessionStorage)"
        ".filter(k => k.startsWith('relais.draft:')).map(k => [k, sessionStorage.getItem(k)])))"
    ))


def test_an_opinion_being_written_survives_the_expiry(live, browser):
    expect = playwright.expect
    context = browser.new_context(base_url=live.base, locale="fr-FR")
    page = context.new_page()
    dossier = f"/dossiers/{live.ids['dossier']}"
    page.goto(f"/login?next={dossier}")
    sign_in(page, rpps(2))
    expect(page).to_have_url(live.base + dossier)
    page.click("button:has-text('Prendre en charge')")
    expect(page.locator(".alert-success")).to_contain_text("pris en charge")
    page.fill("input[name=conclusion]", "Thrombectomie indiquée")
    page.fill("textarea[name=report]", "Occlusion M1 gauche, ASPECTS 9.")
    end_session(context)
    page.click("button:has-text(\"Envoyer l'avis\")")  # htmx: 401 + HX-Redirect, the whole page goes
    expect(page.locator(".alert-info")).to_have_text(EXPIRED)
    assert "expiree=1" in page.url
    sign_in(page, rpps(2))
    expect(page).to_have_url(live.base + dossier)
    expect(page.locator("input[name=conclusion]")).to_have_value("Thrombectomie indiquée")
    expect(page.locator("textarea[name=report]")).to_have_value("Occlusion M1 gauche, ASPECTS 9.")
    expect(page.locator(".draft-restored")).to_have_text("Votre saisie a été restaurée.")
    page.click("button:has-text(\"Envoyer l'avis\")")
    expect(page.locator(".opinion")).to_contain_text("Thrombectomie indiquée")
    assert drafts(page) == {}  # sent: the draft is gone
    # a draft never outlives the session on a shared workstation: signing out empties the storage
    page.goto("/dossiers/new")
    page.click("text=Demande d'avis AVC aigu")
    deadline = time.monotonic() + 10  # saved a moment after the click (wait_for_function needs eval, the CSP forbids it)
    while not drafts(page) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert drafts(page), "the choice was not kept as a draft"
    page.click("button:has-text('Se déconnecter')")
    expect(page.locator(".alert-info")).to_have_text("Vous êtes déconnecté.")
    assert drafts(page) == {}
    context.close()


def test_a_new_dossier_s_patient_and_question_survive_the_expiry(live, browser):
    expect = playwright.expect
    context = browser.new_context(base_url=live.base, locale="fr-FR")
    page = context.new_page()
    page.goto("/login")
    sign_in(page, rpps(1))
    page.goto("/dossiers/new")
    page.click("text=Demande d'avis générique")
    page.click("text=Immédiate")
    page.click("button:has-text('Continuer')")
    page.fill("input[name=birth_name]", "Lefebvre")
    page.fill("input[name=first_names]", "Inès")
    page.fill("input[name=birth_date]", "1990-06-30")
    page.select_option("select[name=sex]", "F")
    with page.expect_response("**/communes?*"):  # the field's suggestions answered before the page moves on
        page.fill("#f-birth_place", "66136")
    page.click("button:has-text('Continuer')")
    question = "Hémiplégie droite depuis 1 h 10, NIHSS 14. Thrombectomie ?"
    page.fill("#f-specialty", "Neurologie")
    page.fill("#f-question", question)
    page.check("input[name=consent][value=given]")
    end_session(context)
    page.click("button:has-text('Créer le brouillon')")
    expect(page.locator(".alert-info")).to_have_text(EXPIRED)
    sign_in(page, rpps(1))
    expect(page).to_have_url(live.base + "/dossiers/new")  # the question step is shown only in answer to a form
    expect(page.locator("input[name=workflow][value=generic_opinion]")).to_be_checked()
    page.click("button:has-text('Continuer')")
    expect(page.locator("input[name=birth_name]")).to_have_value("Lefebvre")
    expect(page.locator("#f-birth_place")).to_have_value("66136")
    expect(page.locator("select[name=sex]")).to_have_value("F")
    page.click("button:has-text('Continuer')")
    expect(page.locator("#f-question")).to_have_value(question)
    expect(page.locator("input[name=consent][value=given]")).to_be_checked()
    page.click("button:has-text('Créer le brouillon')")
    expect(page.locator("h1")).to_have_text("Documents")
    assert drafts(page) == {}  # the dossier is recorded: its drafts are gone
    page.goto("/dossiers/new")
    expect(page.locator("input[name=workflow]:checked")).to_have_count(0)  # a new dossier starts empty
    context.close()


def test_the_page_warns_before_the_idle_expiry_and_keeps_the_session(live, browser):
    expect = playwright.expect
    context = browser.new_context(base_url=live.base, locale="fr-FR")
    # Every clinician page holds a live stream, which notices an ended session by itself at its next
    # heartbeat (tested below): here the page has none (a browser without EventSource, which
    # web/static/live.js leaves alone), so that what is tested is the warning and its button.
    context.add_init_script("delete window.EventSource;")
    page = context.new_page()
    page.clock.install()
    page.goto("/login")
    sign_in(page, rpps(1))
    page.goto("/dossiers/new")
    banner = page.locator("#session-warning")
    expect(banner).to_be_hidden()
    page.clock.fast_forward("55:05")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Votre session expire dans 5 minutes")
    with page.expect_response("**/session/ping") as ping:
        page.click("button:has-text('Rester connecté')")
    assert ping.value.status == 204
    expect(banner).to_be_hidden()
    # once the store has forgotten it, the same button leads to the login page, saying why
    end_session(context)
    page.clock.fast_forward("55:05")
    expect(banner).to_be_visible()
    page.click("button:has-text('Rester connecté')")
    expect(page.locator(".alert-info")).to_have_text(EXPIRED)
    context.close()


def test_an_open_live_inbox_goes_to_the_login_page_when_its_session_ends(live, browser):
    """The live inbox left open: its session ends server-side; within a heartbeat the page is on the
    login page saying why (it stayed on « hors ligne », retrying for ever, before)."""
    expect = playwright.expect
    context = browser.new_context(base_url=live.base, locale="fr-FR")
    page = context.new_page()
    page.goto("/login?next=/inbox/received")
    sign_in(page, rpps(2))
    expect(page).to_have_url(live.base + "/inbox/received")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "on", timeout=15_000)
    end_session(context)
    expect(page).to_have_url(f"{live.base}/login?expiree=1&next=%2Finbox%2Freceived", timeout=20_000)
    expect(page.locator("body")).to_contain_text(EXPIRED)
    context.close()
