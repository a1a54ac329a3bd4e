"""The draft's imaging step in Debian's Chromium (Playwright) against a live `relais serve`: importing a study
from files, then « Continuer », goes on to the recipients (it answered « Ce brouillon a été modifié
ailleurs »: the step form kept the version it was shown at while the import attached the study)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.conftest import rpps
from tests.dicomdata import write_study
from tests.web.test_body_guard import PASSWORD, Live, live  # noqa: F401  (the live server fixture)

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")

def test_importing_a_study_then_continuing_is_no_conflict(browser, live: Live, tmp_path: Path):  # noqa: F811
    expect = playwright.expect
    context = browser.new_context(base_url=live.base, locale="fr-FR")
    page = context.new_page()
    page.goto("/login")
    page.fill("#login", rpps(1))
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")

    study = write_study(tmp_path / "ct", series=1, per_series=2)  # the dossier's patient: no identity to confirm
    archive = tmp_path / "cd.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i, f in enumerate(study["files"]):
            z.write(f, f"DICOM/IM{i}")
    page.goto(f"/dossiers/{live.dossier_id}/edit/imaging")
    shown = page.locator("#expected-version").input_value()
    form = page.wait_for_selector("form[hx-post$='/dicom/import']", timeout=30_000)
    form.query_selector("input[name=files]").set_input_files(str(archive))
    form.query_selector("button[type=submit]").click()
    page.wait_for_selector("#import-area form[hx-post*='/dicom/import/']", timeout=60_000)
    page.click("#import-area button:has-text('Importer les examens cochés')")
    expect(page.get_by_text("importé(s) et joint(s)")).to_be_visible(timeout=60_000)
    expect(page.locator("#expected-version")).not_to_have_value(shown, timeout=30_000)  # the page heard its own change
    page.check("input[name=imaging_source][value=file_import]")
    page.click(".form-actions button:has-text('Continuer')")
    expect(page.locator("h1")).to_have_text("Destinataires", timeout=30_000)
    expect(page.locator("body")).not_to_contain_text("modifié ailleurs")
    context.close()


def test_item_controls_send_the_version_their_page_follows(browser, live: Live):  # noqa: F811
    """In the browser every control that adds or removes one item sends the version its page shows, and that
    version follows the user's own changes: two documents one after the other then one removed, two exams
    awaited one after the other, then « Continuer », all without « version » nor « modifié ailleurs »."""
    expect = playwright.expect
    context = browser.new_context(base_url=live.base, locale="fr-FR")
    page = context.new_page()
    answers: list[tuple[str, int]] = []
    page.on("response", lambda r: answers.append((r.url, r.status)) if r.request.method == "POST" else None)
    page.goto("/login")
    page.fill("#login", rpps(1))
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")

    page.goto(f"/dossiers/{live.dossier_id}/edit/documents")
    for name in ("premier-document.pdf", "second-document.pdf"):
        page.set_input_files("#file", files=[{"name": name, "mimeType": "application/pdf", "buffer": b"%PDF-1.4\n" + b"1" * 2000}])
        page.click("form.upload button[type=submit]")
        expect(page.locator("#documents")).to_contain_text(name, timeout=30_000)
    page.locator("#documents li", has_text="premier-document.pdf").locator("button:has-text('Retirer')").click()
    expect(page.locator("#documents")).not_to_contain_text("premier-document.pdf", timeout=30_000)
    expect(page.locator("#documents")).to_contain_text("second-document.pdf")

    page.goto(f"/dossiers/{live.dossier_id}/edit/imaging")
    for accession in ("ACCE2E1", "ACCE2E2"):
        shown = page.locator("#expected-version").input_value()
        page.wait_for_selector("#accession", timeout=30_000)
        page.fill("#accession", accession)
        page.click("button:has-text('Attendre cet examen')")
        expect(page.locator("#received-studies")).to_contain_text(f"Examen {accession} attendu", timeout=30_000)
        expect(page.locator("#expected-version")).not_to_have_value(shown, timeout=30_000)  # the page heard its own change
    page.check("input[name=imaging_source][value=pacs_retrieve]")
    page.click(".form-actions button:has-text('Continuer')")
    expect(page.locator("h1")).to_have_text("Destinataires", timeout=30_000)
    refused = [(url, status) for url, status in answers if status >= 400]
    assert refused == [], refused
    context.close()
