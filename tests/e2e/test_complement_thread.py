"""A complement loop with a document in Debian's Chromium (Playwright) against `relais serve`: the recipient
asks a complement; the requester sees the question at the top of the dossier page and answers it with a
text and a PDF; the recipient finds the answer and the document in the send's thread and writes back; the
requester reads that message. Screenshots go to test-output/e2e/ (or $RELAIS_TEST_OUTPUT)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
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

PASSWORD = "thread password 2026"
REDIS_URL = os.environ.get("RELAIS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
OUTPUT = Path(os.environ.get("RELAIS_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output")) / "e2e"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n" + b"0" * 2000 + b"\n%%EOF\n"


@pytest.fixture()
def world(tmp_path) -> Iterator[dict]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (scripts/system-packages.sh)")
    secret = "thread-test-secret-key-0123456789abcdef"
    with private_platform("relais_thread", tmp_path / "var", secret, REDIS_URL) as (settings, env):
        relais = build_app(settings)
        pool = build_pool(settings, max_size=1)
        tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
        mtp = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
        neuro = relais.add_service(establishment_id=mtp, code="neuroradio", name="Neuroradiologie")
        requester = relais.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire", establishment_id=tlse,
                                            roles=["clinician"])
        recipient = relais.add_practitioner(rpps=rpps(2), family_name="Durand", given_name="Paul", establishment_id=mtp,
                                            roles=["clinician"], service_ids=[neuro])
        for pid in (requester, recipient):
            Credentials(pool).set_password(pid, PASSWORD)
        pool.close()
        did = relais.create_dossier(actor_id=requester, workflow="stroke_opinion", question="Thrombectomie ?",
                                    urgency="stat", consent="given", imaging_source="none", **PATIENT)
        sid = relais.address_recipient(dossier_id=did, actor_id=requester, establishment_id=mtp, service_id=neuro)
        relais.send_dossier(dossier_id=did, actor_id=requester)
        for name in ("directory", "inbox"):
            catch_up(name, settings.eventsourcing_env(), relais)
        try:
            yield {"env": env, "relais": relais, "requester": requester, "dossier_id": did, "send_id": sid}
        finally:
            relais.close()



def shot(page, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def test_a_complement_answered_with_a_document_and_the_thread_both_ways(world):
    expect = playwright.expect
    env, port = world["env"], int(world["env"]["RELAIS_HTTP_PORT"])
    did, sid = world["dossier_id"], world["send_id"]
    server = RelaisProcess(["serve"], env)
    wait_port(port, timeout=60, proc=server.process)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            # 1. the recipient asks a complement
            recipient = sign_in(browser, f"http://127.0.0.1:{port}", rpps(2), PASSWORD)[1]
            recipient.goto(f"/dossiers/{did}")
            recipient.click("summary:has-text('Demander un complément')")
            recipient.fill(f"#cr-{sid}", "Merci de joindre l'angio-scanner\net la créatinine du jour")
            recipient.click("button:has-text('Envoyer la demande')")
            expect(recipient.locator(".alert-success")).to_have_text("Demande de complément envoyée.")

            # 2. the requester sees the question at the top of the page and answers with a text and a PDF
            requester = sign_in(browser, f"http://127.0.0.1:{port}", rpps(1), PASSWORD)[1]
            requester.goto(f"/dossiers/{did}")
            pending = requester.locator(".complement-pending")
            expect(pending).to_be_visible()
            expect(pending).to_contain_text("Merci de joindre l'angio-scanner")
            assert pending.bounding_box()["y"] < requester.locator(".col-main").bounding_box()["y"]  # above the columns
            shot(requester, "thread-01-complement-asked")
            requester.click(".complement-pending a:has-text('Répondre')")
            requester.fill(f"#cp-{sid}", "Angio-scanner joint ; créatinine 82 µmol/l")
            requester.set_input_files(f"#files-cp-{sid}", files=[
                {"name": "angio-scanner.pdf", "mimeType": "application/pdf", "buffer": PDF}])
            requester.click(f"#answer-{sid} button:has-text('Envoyer le complément')")
            expect(requester.locator(".alert-success")).to_have_text("Complément envoyé au destinataire.")
            expect(requester.locator(".complement-pending")).to_have_count(0)

            # 3. the recipient finds the answer and its document in the send's thread, and writes back
            recipient.goto(f"/dossiers/{did}")
            thread = recipient.locator(f"#thread-{sid}")
            expect(thread.locator(".message-complement_request")).to_contain_text("la créatinine du jour")
            answer = thread.locator(".message-complement_answer")
            expect(answer).to_contain_text("créatinine 82 µmol/l")
            link = answer.locator("a", has_text="angio-scanner.pdf")
            expect(link).to_be_visible()
            assert recipient.request.get(link.get_attribute("href")).body() == PDF
            shot(recipient, "thread-02-answer-seen")
            thread.locator("summary:has-text('Écrire un message')").click()
            recipient.fill(f"#msg-{sid}", "Reçu. Thrombectomie à discuter :\nappelez-moi au 4521.")
            thread.locator("button:has-text('Envoyer le message')").click()
            expect(recipient.locator(".alert-success")).to_have_text("Message envoyé.")
            expect(recipient.locator(f"#thread-{sid} .message-message")).to_contain_text("appelez-moi au 4521.")

            # 4. the requester reads it in the same thread
            requester.goto(f"/dossiers/{did}")
            message = requester.locator(f"#thread-{sid} .message-message")
            expect(message).to_contain_text("Thrombectomie à discuter")
            expect(message).to_contain_text("Paul DURAND")
            shot(requester, "thread-03-message-read")
            kinds = [m["kind"] for m in world["relais"].open_dossier(dossier_id=did, actor_id=world["requester"]).dossier.messages]
            assert kinds == ["complement_request", "complement_answer", "message"]
        finally:
            browser.close()
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
                server.process.wait(timeout=30)
