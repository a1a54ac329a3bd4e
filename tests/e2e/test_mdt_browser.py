"""A kidney-transplant MDT session in Debian's Chromium (Playwright) against `relais serve`: the coordinator schedules
a session, registers a dossier from its page, records attendance, tries the decision without quorum (the French error
names the missing specialties), adds a third specialty, records the decision, and finds it on the dossier page; the
requester reads it as the opinion. Screenshots go to test-output/e2e/ (or $RELAIS_TEST_OUTPUT)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from adapters.credentials import Credentials
from entrypoints.bootstrap import build_app, build_pool
from projections.runner import catch_up
from tests.conftest import PATIENT, rpps
from tests.e2e.conftest import CHROMIUM, launch, private_platform, sign_in
from tests.peers import wait_port
from tests.processes import RelaisProcess

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")

PASSWORD = "mdt password 2026"
REDIS_URL = os.environ.get("RELAIS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
OUTPUT = Path(os.environ.get("RELAIS_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output")) / "e2e"
QUESTION = "Bilan pré-greffe complet : inscription sur liste d'attente ?"


@pytest.fixture()
def world(tmp_path) -> Iterator[dict]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (scripts/system-packages.sh)")
    secret = "mdt-test-secret-key-0123456789abcdef"
    with private_platform("relais_mdt", tmp_path / "var", secret, REDIS_URL) as (settings, env):
        relais = build_app(settings)
        pool = build_pool(settings, max_size=1)
        tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
        mtp = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
        team = relais.add_service(establishment_id=mtp, code="nephro-greffe", name="Néphrologie et transplantation",
                                  specialty="néphrologie", kind="team")
        requester = relais.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire", establishment_id=tlse,
                                            roles=["clinician"])
        coordinator = relais.add_practitioner(rpps=rpps(2), family_name="Bernard", given_name="Sophie",
                                              establishment_id=mtp, roles=["clinician"], service_ids=[team],
                                              specialty="néphrologie")
        colleagues = {
            specialty: relais.add_practitioner(rpps=rpps(n), family_name=name, given_name="Dr", establishment_id=mtp,
                                               roles=["clinician"], specialty=specialty)
            for n, name, specialty in ((5, "Faure", "urologie"), (6, "Lopez", "anesthésie-réanimation"),
                                       (7, "Simon", "immunologie"))
        }
        for pid in (requester, coordinator):
            Credentials(pool).set_password(pid, PASSWORD)
        pool.close()
        did = relais.create_dossier(actor_id=requester, workflow="kidney_transplant_mdt", question=QUESTION,
                                    urgency="routine", consent="given", imaging_source="none", **PATIENT)
        relais.address_recipient(dossier_id=did, actor_id=requester, establishment_id=mtp, service_id=team)
        relais.send_dossier(dossier_id=did, actor_id=requester)
        for name in ("directory", "inbox"):
            catch_up(name, settings.eventsourcing_env(), relais)
        try:
            yield {"env": env, "relais": relais, "settings": settings, "dossier_id": did, "coordinator": coordinator,
                   "colleagues": colleagues}
        finally:
            relais.close()



def shot(page, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def present(page, pid: str, status: str = "present") -> None:
    page.check(f"input[name='status-{pid}'][value={status}]")


def test_mdt_session_from_registration_to_decision(world):
    expect = playwright.expect
    env, port = world["env"], int(world["env"]["RELAIS_HTTP_PORT"])
    catch = lambda *names: [catch_up(n, world["settings"].eventsourcing_env(), world["relais"]) for n in names]  # noqa: E731
    server = RelaisProcess(["serve"], env)
    timings: dict[str, float] = {}
    try:
        wait_port(port, timeout=60, proc=server.process)
        with playwright.sync_playwright() as p:
            browser = launch(p)
            try:
                base = f"http://127.0.0.1:{port}"
                _, page = sign_in(browser, base, rpps(2), PASSWORD)
                # schedule a session
                page.goto("/mdt")
                expect(page.locator("h1")).to_have_text("Séances de RCP")
                page.click("text=Programmer une séance")
                page.fill("#date", (date.today() + timedelta(days=2)).isoformat())
                page.fill("#time", "14:00")
                page.fill("#place", "Salle de staff de transplantation")
                for pid in world["colleagues"].values():
                    page.check(f"input[name=participants][value='{pid}']")
                shot(page, "mdt-01-new-session")
                started = time.monotonic()
                page.click("button:has-text('Programmer la séance')")
                expect(page.locator(".alert-success")).to_have_text("Séance programmée.")
                timings["schedule"] = time.monotonic() - started
                session_url = page.url.split("?")[0]
                expect(page.locator("a:has-text('Ajouter à mon agenda')")).to_have_attribute(
                    "href", session_url.removeprefix(base) + ".ics")

                # register the dossier from its page
                catch("directory", "mdt")
                page.goto(f"/dossiers/{world['dossier_id']}")
                register = page.locator("button:has-text('Inscrire à une séance')")
                expect(register).to_be_visible(timeout=10_000)
                started = time.monotonic()
                register.click()
                expect(page.locator(".mdt-item h3")).to_contain_text("DUPONT")
                timings["register"] = time.monotonic() - started
                expect(page.locator(".mdt-item .question")).to_have_text(QUESTION)

                # two specialties present: no quorum
                quorum = page.locator("#quorum")
                expect(quorum).to_contain_text("Quorum non atteint")
                present(page, world["coordinator"])
                present(page, world["colleagues"]["urologie"], "remote")
                page.click("button:has-text('Enregistrer les présences')")
                expect(quorum).to_contain_text("manque : anesthésie-réanimation, immunologie")
                page.fill(f"#decision-{world['dossier_id']}", "Inscription sur liste d'attente")
                page.fill(f"#proposal-{world['dossier_id']}", "Inscription sur liste nationale, donneur vivant à explorer")
                page.fill(f"#follow_up-{world['dossier_id']}", "Réévaluation à 6 mois")
                page.click("button:has-text('Enregistrer la décision')")
                error = page.locator(f"#error-{world['dossier_id']}")
                expect(error).to_have_text("quorum non atteint : 2 spécialités présentes sur 3 requises "
                                           "(manquent : anesthésie-réanimation, immunologie)")
                expect(page.locator(f"#decision-{world['dossier_id']}")).to_have_value("Inscription sur liste d'attente")
                shot(page, "mdt-02-quorum-refused")

                # a third specialty: quorum met, the decision is recorded
                present(page, world["colleagues"]["anesthésie-réanimation"])
                page.click("button:has-text('Enregistrer les présences')")
                expect(quorum).to_contain_text("Quorum atteint")
                started = time.monotonic()
                page.click("button:has-text('Enregistrer la décision')")
                expect(page.locator(".alert-success")).to_contain_text("Décision enregistrée")
                timings["decision"] = time.monotonic() - started
                expect(page.locator(".mdt-decision .conclusion")).to_have_text("Inscription sur liste d'attente")
                shot(page, "mdt-03-decision")
                with page.expect_popup() as popup:
                    page.click("text=Fiche RCP imprimable")
                fiche = popup.value
                expect(fiche.locator("h1")).to_contain_text("Fiche RCP")
                expect(fiche.locator("table")).to_contain_text(rpps(6))
                shot(fiche, "mdt-04-fiche")

                # on the dossier page: the session's decision; for the requester, the opinion
                catch("mdt")
                page.goto(f"/dossiers/{world['dossier_id']}")
                expect(page.locator("#mdt-part")).to_contain_text("Décision de la RCP : Inscription sur liste d'attente",
                                                                  timeout=10_000)
                shot(page, "mdt-05-dossier")
                _, requester = sign_in(browser, base, rpps(1), PASSWORD)
                requester.goto(f"/dossiers/{world['dossier_id']}")
                expect(requester.locator("body")).to_contain_text("Inscription sur liste d'attente")
                expect(requester.locator("#mdt-part")).to_contain_text("Décision de la RCP", timeout=10_000)
                print("\nMDT journey (s): " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
            finally:
                browser.close()
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
