"""Notifications in Debian's Chromium (Playwright), `relais serve` as a real process, the real
notifications projection: the recipient's tab title counter and bell update when a dossier arrives;
the requester's open dossier page shows the opinion without reload; a stroke dossier left unanswered
escalates to the on-call pool (a Relais with a clock past the accept deadline and `escalate_overdue`),
which sees it arrive on top of its inbox, marked « escaladé »."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.credentials import Credentials
from adapters.settings import Settings
from application import Relais
from entrypoints.bootstrap import build_app, build_pool
from projections.runner import catch_up
from tests.conftest import PATIENT, rpps
from tests.e2e.conftest import CHROMIUM, launch, private_platform
from tests.peers import wait_port
from tests.processes import RelaisProcess

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")

PASSWORD = "notifications password 2026"
REDIS_URL = os.environ.get("RELAIS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture()
def world(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (scripts/system-packages.sh)")
    secret = "notifications-test-secret-key-0123456789"
    with private_platform("relais_notif", tmp_path / "var", secret, REDIS_URL) as (settings, env):
        yield from _world(settings, env)


def _world(settings: Settings, env: dict[str, str]) -> Iterator[dict]:
    relais = build_app(settings)
    pool = build_pool(settings, max_size=1)
    tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    mtp = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
    neuro = relais.add_service(establishment_id=mtp, code="neuroradio", name="Neuroradiologie")
    on_call_pool = relais.add_service(establishment_id=mtp, code="astreinte-nrx", name="Astreinte neuroradiologie",
                                      kind="on_call_pool")
    relais.set_service_escalation(establishment_id=mtp, service_code="neuroradio", to_service_code="astreinte-nrx")
    people = {
        "requester": relais.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire", establishment_id=tlse,
                                             roles=["clinician"]),
        "recipient": relais.add_practitioner(rpps=rpps(2), family_name="Durand", given_name="Paul", establishment_id=mtp,
                                             roles=["clinician"], service_ids=[neuro]),
        "on_call": relais.add_practitioner(rpps=rpps(5), family_name="Roux", given_name="Inès", establishment_id=mtp,
                                           roles=["clinician"], service_ids=[on_call_pool]),
        "colleague": relais.add_practitioner(rpps=rpps(3), family_name="Petit", given_name="Luc", establishment_id=mtp,
                                             roles=["clinician"]),
    }
    for pid in people.values():
        Credentials(pool).set_password(pid, PASSWORD)
    pool.close()
    try:
        yield {"env": env, "relais": relais, "settings": settings, "montpellier": mtp, "neuro": neuro,
               "pool": on_call_pool, **people}
    finally:
        relais.close()


def settle(world: dict) -> None:
    """The read models and the notifications process manager follow the log (no runner here)."""
    for name in ("directory", "inbox", "notifications"):
        catch_up(name, world["settings"].eventsourcing_env(), world["relais"])


def send(world: dict, name: str, urgency: str = "stat", workflow: str = "stroke_opinion", service: str = "neuro") -> tuple[str, str]:
    relais = world["relais"]
    did = relais.create_dossier(actor_id=world["requester"], workflow=workflow, question="Thrombectomie ?",
                                urgency=urgency, consent="given", **(PATIENT | {"patient_birth_name": name}))
    sid = relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"],
                                   service_id=world[service])
    relais.send_dossier(dossier_id=did, actor_id=world["requester"])
    settle(world)
    return did, sid


def signed_in(browser, port: int, login: str):
    page = browser.new_context(base_url=f"http://127.0.0.1:{port}", locale="fr-FR").new_page()
    page.goto("/login")
    page.fill("#login", login)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    playwright.expect(page.locator("h1")).to_have_text("Boîte de réception")
    playwright.expect(page.locator("#live-status")).to_have_text("en direct", timeout=10_000)
    return page


def test_bell_title_live_opinion_and_escalation_to_the_on_call_pool(world):
    expect = playwright.expect
    env, port = world["env"], int(world["env"]["RELAIS_HTTP_PORT"])
    server = RelaisProcess(["serve"], env)
    wait_port(port, timeout=60, proc=server.process)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            # 1. the recipient's tab title counter and bell, live
            recipient = signed_in(browser, port, rpps(2))
            expect(recipient).to_have_title(re.compile(r"^Reçus"))
            expect(recipient.locator("#bell-count")).to_be_hidden()
            did, sid = send(world, "Arrivee")
            expect(recipient).to_have_title(re.compile(r"^\(1\) Reçus"), timeout=10_000)
            expect(recipient.locator("#bell-count")).to_have_text("1")
            assert "n=1" in (recipient.locator("#favicon").get_attribute("href") or "")
            recipient.click("#bell-summary")  # the panel lists it
            expect(recipient.locator("#bell-panel .notification.unread")).to_have_count(1, timeout=10_000)
            expect(recipient.locator("#bell-panel")).to_contain_text("Nouvelle demande")

            # 2. the requester's open dossier page shows the opinion without reload
            requester = signed_in(browser, port, rpps(1))
            requester.goto(f"/dossiers/{did}")
            expect(requester.locator(".send-deadline")).to_contain_text("Prise en charge avant le")
            requester.evaluate("window.__notReloaded = true")
            expect(requester.locator("body")).to_have_attribute("data-live", "/live")
            requester.wait_for_function("document.querySelector('[data-live-dossier]') !== null")
            relais = world["relais"]
            relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=sid)
            relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=sid,
                                report="Thrombectomie indiquée, transfert immédiat.", conclusion="Thrombectomie")
            settle(world)
            expect(requester.locator(".opinion")).to_contain_text("Thrombectomie indiquée", timeout=10_000)
            assert requester.evaluate("window.__notReloaded === true")
            expect(requester).to_have_title(re.compile(r"^\(\d+\) "), timeout=10_000)  # told: accepted, opinion given

            # 3. a stroke dossier left unanswered escalates to the on-call pool, on top of its inbox
            on_call = signed_in(browser, port, rpps(5))
            send(world, "Routine", urgency="routine", workflow="generic_opinion", service="pool")  # the pool's own
            expect(on_call.locator(".row", has_text="ROUTINE")).to_be_visible(timeout=10_000)
            late, late_sid = send(world, "Oubli")
            later = Relais(env=world["settings"].eventsourcing_env(),
                           clock=lambda: datetime.now(UTC) + timedelta(minutes=11))  # past its 10 min accept delay
            try:
                assert later.escalate_overdue(dossier_id=late, send_id=late_sid).to is not None
            finally:
                later.close()
            settle(world)
            first = on_call.locator("#results .row").first
            expect(first).to_contain_text("OUBLI", timeout=10_000)
            expect(first).to_contain_text("escaladé")
            expect(on_call.locator("#bell-count")).to_have_text(re.compile(r"^[1-9]"), timeout=10_000)

            # 4. a change while the user is typing an opinion: a banner, the text kept; « Actualiser » refreshes
            both = relais.create_dossier(actor_id=world["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                                         urgency="stat", consent="given", **(PATIENT | {"patient_birth_name": "Double"}))
            mine = relais.address_recipient(dossier_id=both, actor_id=world["requester"],
                                            establishment_id=world["montpellier"], service_id=world["neuro"])
            theirs = relais.address_recipient(dossier_id=both, actor_id=world["requester"],
                                              establishment_id=world["montpellier"], practitioner_id=world["colleague"])
            relais.send_dossier(dossier_id=both, actor_id=world["requester"])
            relais.accept(dossier_id=both, actor_id=world["recipient"], send_id=mine)
            settle(world)
            recipient.goto(f"/dossiers/{both}")
            report = recipient.locator(f"#report-{mine}")
            report.fill("Avis en cours de rédaction")
            relais.accept(dossier_id=both, actor_id=world["colleague"], send_id=theirs)
            settle(world)
            expect(recipient.locator("#dossier-changed")).to_be_visible(timeout=10_000)
            expect(report).to_have_value("Avis en cours de rédaction")
            expect(recipient.locator(".timeline .tl-Accepted")).to_have_count(1)
            recipient.click(".js-dossier-refresh")
            expect(recipient.locator("#dossier-changed")).to_be_hidden()
            expect(recipient.locator(".timeline .tl-Accepted")).to_have_count(2, timeout=10_000)
        finally:
            browser.close()
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
                server.process.wait(timeout=30)
