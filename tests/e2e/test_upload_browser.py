"""Uploads in Debian's Chromium (Playwright) against a live `relais serve`: the forms' htmx requests carry
the CSRF token in the X-CSRFToken header (the body guard refuses a multipart body without it), a
document and a ZIP of DICOM files go through, and an upload whose session has ended is refused
before its body and sends the browser to the login page."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.conftest import rpps
from tests.dicomdata import write_study
from tests.web.test_body_guard import PASSWORD, Live, live  # noqa: F401  (the live server fixture)

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")

def signed_in(browser, server: Live):
    context = browser.new_context(base_url=server.base, locale="fr-FR")
    page = context.new_page()
    page.goto("/login")
    page.fill("#login", rpps(1))
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    return context, page


def test_uploads_from_the_browser_carry_the_csrf_header(browser, live: Live, tmp_path: Path):  # noqa: F811
    context, page = signed_in(browser, live)
    headers: list[dict[str, str]] = []
    page.on("request", lambda r: headers.append(r.headers) if r.method == "POST" and "multipart" in r.headers.get(
        "content-type", "") else None)
    page.goto(f"/dossiers/{live.dossier_id}/edit/documents")
    page.set_input_files("#file", files=[{"name": "compte-rendu-navigateur.pdf", "mimeType": "application/pdf",
                                          "buffer": b"%PDF-1.4\n" + b"0" * 4000}])
    page.click("form.upload button[type=submit]")
    page.wait_for_selector("#documents >> text=compte-rendu-navigateur.pdf", timeout=30_000)

    study = write_study(tmp_path / "ct", series=1, per_series=2)
    archive = tmp_path / "cd.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i, f in enumerate(study["files"]):
            z.write(f, f"DICOM/IM{i}")
    page.goto(f"/dossiers/{live.dossier_id}/edit/imaging")
    form = page.wait_for_selector("form[hx-post$='/dicom/import']", timeout=30_000)
    form.query_selector("input[name=files]").set_input_files(str(archive))
    form.query_selector("button[type=submit]").click()
    page.wait_for_selector("#import-area form[hx-post*='/dicom/import/']", timeout=60_000)
    assert len(headers) == 2 and all(h.get("x-csrftoken") for h in headers), headers
    context.close()


def test_an_upload_after_the_session_ended_goes_to_the_login_page(browser, live: Live, tmp_path: Path):  # noqa: F811
    context, page = signed_in(browser, live)
    page.goto(f"/dossiers/{live.dossier_id}/edit/imaging")
    form = page.wait_for_selector("form[hx-post$='/dicom/import']", timeout=30_000)
    other = context.new_page()  # signs out in another tab: the server forgets the session
    other.goto("/")
    other.click("form.js-logout button")
    other.wait_for_url("**/login**")
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(64 * 1024 * 1024)
    form.query_selector("input[name=files]").set_input_files(str(big))
    form.query_selector("button[type=submit]").click()
    page.wait_for_url("**/login**", timeout=60_000)  # htmx followed the refusal's HX-Redirect
    context.close()
