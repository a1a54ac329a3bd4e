"""Browser journeys in Debian's Chromium (Playwright) against the real platform, started by `relais up`.

A requester creates and sends a dossier; in a second browser context the recipient sees it arrive
live, accepts and answers; the requester reads the answer; the auditor replays the history and
sees both users' accesses. Screenshots go to test-output/e2e/ (or $RELAIS_TEST_OUTPUT).
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from pathlib import Path

import psycopg
import pytest

from adapters.credentials import Credentials
from adapters.settings import Settings
from entrypoints.bootstrap import build_app, build_pool, upgrade
from tests.adapters.test_up import Platform
from tests.conftest import SERVER_URL, rpps
from tests.e2e.conftest import CHROMIUM
from tests.e2e.conftest import sign_in as signed_in_at
from tests.peers import free_port

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")

PASSWORD = "journey password 2026"
OUTPUT = Path(os.environ.get("RELAIS_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output")) / "e2e"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (scripts/system-packages.sh)")
    name = f"relais_e2e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = SERVER_URL.rsplit("/", 1)[0] + "/" + name
    settings = Settings(database_url=url)
    upgrade(settings)
    relais = build_app(settings)
    pool = build_pool(settings, max_size=2)
    credentials = Credentials(pool)
    tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    mtp = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
    neuro = relais.add_service(establishment_id=mtp, code="neuroradio", name="Neuroradiologie", specialty="radiologie")
    users = {
        "requester": relais.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire", establishment_id=tlse,
                                             roles=["clinician"]),
        "recipient": relais.add_practitioner(rpps=rpps(2), family_name="Durand", given_name="Paul", establishment_id=mtp,
                                             roles=["clinician"], service_ids=[neuro]),
        "auditor": relais.add_practitioner(rpps=rpps(4), family_name="Leroy", given_name="Anne", establishment_id=tlse, roles=["auditor"]),
    }
    for pid in users.values():
        credentials.set_password(pid, PASSWORD)
    pool.close()
    relais.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    env.update(RELAIS_DATABASE_URL=url, RELAIS_HTTP_PORT=str(port), RELAIS_DICOM_PORT=str(free_port()),
               RELAIS_DATA_DIR=str(tmp_path_factory.mktemp("var")), RELAIS_LOG_LEVEL="WARNING")
    # The whole platform as a user starts it: `relais up` (web, DICOM node, projections; jobs in-process).
    up = Platform(env)
    try:
        up.wait_for("Relais est prêt", timeout=120)
        yield f"http://127.0.0.1:{port}"
        up.process.send_signal(signal.SIGTERM)
        assert up.process.wait(timeout=60) == 0, up.output
        assert "Relais arrêté." in up.output
    finally:
        if up.process.poll() is None:  # pragma: no cover
            up.process.kill()
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def browser(browser):
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return browser



def sign_in(browser, base: str, login: str, viewport: dict | None = None):
    return signed_in_at(browser, base, login, PASSWORD, viewport or {"width": 1440, "height": 900})


def shot(page, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")  # a full-page capture draws sticky parts (the patient banner) where the page was scrolled
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def test_requester_sends_recipient_answers_live_auditor_replays(platform, browser):
    expect = playwright.expect
    recipient_ctx, inbox = sign_in(browser, platform, rpps(2))
    expect(inbox.locator("h1")).to_have_text("Boîte de réception")
    expect(inbox.locator("#live-status.on")).to_be_visible(timeout=5000)  # the SSE stream is open

    requester_ctx, page = sign_in(browser, platform, rpps(1))
    page.goto("/dossiers/new")  # the long path (a stroke takes the short one: tests/e2e/test_stroke_fast_path.py)
    page.click("text=Demande d'avis générique")
    page.click("text=Immédiate")
    shot(page, "01-new-workflow")
    page.click("button:has-text('Continuer')")
    page.fill("input[name=birth_name]", "Lefebvre")
    page.fill("input[name=first_names]", "Inès")
    page.fill("input[name=birth_date]", "1990-06-30")
    page.select_option("select[name=sex]", "F")
    with page.expect_response("**/communes?*"):  # the field's suggestions answered before the page moves on
        page.fill("#f-birth_place", "66136")  # a commune's name or its INSEE code
    shot(page, "02-new-patient")
    page.click("button:has-text('Continuer')")
    page.fill("#f-specialty", "Neuroradiologie")
    page.fill("#f-question", "Hémiplégie droite depuis 1 h 10, NIHSS 14. Thrombectomie ?")
    page.check("input[name=consent][value=given]")
    page.click("button:has-text('Créer le brouillon')")
    expect(page.locator("h1")).to_have_text("Documents")
    page.click("a.button:has-text('Continuer')")
    page.check("input[name=imaging_source][value=none]")
    page.click("button:has-text('Continuer')")
    expect(page.locator("h1")).to_have_text("Destinataires")
    page.fill("#dir-q", "neuro")
    page.locator(".target-form", has_text="Neuroradiologie").locator("button").click()
    expect(page.locator("#recipients")).to_contain_text("Neuroradiologie")
    shot(page, "03-new-recipients")
    page.click("a.button:has-text('Continuer')")
    shot(page, "04-new-review")
    page.click("button:has-text('Envoyer le télédossier')")
    expect(page.locator(".banner")).to_contain_text("LEFEBVRE")
    shot(page, "05-requester-dossier-sent")

    # the recipient's open inbox shows it without reload, counters updated
    row = inbox.locator(".row", has_text="LEFEBVRE")
    expect(row).to_be_visible(timeout=5000)
    expect(inbox.locator(".tab.active .count").first).to_have_text("1")
    shot(inbox, "06-recipient-inbox-live")
    row.click()
    expect(inbox.locator(".banner")).to_contain_text("Inès")
    inbox.click("button:has-text('Prendre en charge')")
    expect(inbox.locator(".alert-success")).to_contain_text("pris en charge")
    inbox.fill("input[name=conclusion]", "Thrombectomie indiquée")
    inbox.fill("textarea[name=report]", "Occlusion M1 gauche, ASPECTS 9. Pas de contre-indication.")
    inbox.fill("textarea[name=recommendations]", "Transfert immédiat en salle de neuroradiologie interventionnelle.")
    inbox.select_option("select[name=follow_up]", "immediate")
    shot(inbox, "07-recipient-opinion-form")
    inbox.click("button:has-text(\"Envoyer l'avis\")")
    expect(inbox.locator(".opinion")).to_contain_text("Thrombectomie indiquée")
    shot(inbox, "08-recipient-answered")

    page.reload()
    expect(page.locator(".opinion")).to_contain_text("Thrombectomie indiquée")
    expect(page.locator(".opinion")).to_contain_text("Immédiate")
    shot(page, "09-requester-sees-answer")
    page.goto("/inbox/sent")
    shot(page, "10-requester-inbox-sent")
    page.set_viewport_size({"width": 820, "height": 1180})  # tablet, portrait
    page.goto("/inbox/sent")
    shot(page, "11-requester-inbox-tablet")

    auditor_ctx, audit = sign_in(browser, platform, rpps(4))
    audit.fill("#q", "lefebvre")
    audit.keyboard.press("Enter")
    audit.locator("a", has_text=re.compile(r"TD-")).first.click()
    expect(audit.locator("h2").first).to_contain_text("Historique complet")
    accesses = audit.locator("table.accesses")
    expect(accesses).to_contain_text("Claire MARTIN")
    expect(accesses).to_contain_text("Paul DURAND")
    shot(audit, "12-auditor-history")
    audit.click("text=Rejouer pas à pas")
    expect(audit.locator(".replay-pos")).to_contain_text("Version 1")
    for version in (2, 3, 4):  # one step at a time: a click during the previous swap would be lost
        audit.click("text=Suivant ▶")
        expect(audit.locator(".replay-pos")).to_contain_text(f"Version {version}")
    shot(audit, "13-auditor-replay")
    audit.goto(audit.url.split("/replay")[0] + "/print")  # the printable audit trail, as printed
    expect(audit.locator(".report-sheet")).to_contain_text("Accès aux données")
    audit.emulate_media(media="print")
    shot(audit, "14-auditor-print")
    # the recipient on a tablet (portrait): the dossier page and the inbox
    inbox.set_viewport_size({"width": 820, "height": 1180})
    inbox.reload()
    expect(inbox.locator(".banner")).to_contain_text("LEFEBVRE")
    shot(inbox, "15-recipient-dossier-tablet")
    inbox.goto("/inbox/received?state=answered")
    expect(inbox.locator(".row", has_text="LEFEBVRE")).to_be_visible()
    shot(inbox, "16-recipient-inbox-tablet")
    for ctx in (recipient_ctx, requester_ctx, auditor_ctx):
        ctx.close()
