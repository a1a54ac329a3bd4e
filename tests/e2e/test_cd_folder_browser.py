"""A CD chosen as a folder in Debian's Chromium (Playwright, webkitdirectory) against a live `relais
serve`: every file keeps its path inside the folder, so the DICOMDIR made by dcmtk's dcmmkdir resolves
(issue 11 item 11: htmx sent bare file names, the review said « DICOMDIR incohérent »)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.adapters.test_file_import import cd_folder
from tests.e2e.test_upload_browser import signed_in
from tests.web.test_body_guard import Live, live  # noqa: F401  (the live server fixture)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("dcmmkdir") is None, reason="dcmtk not installed")]
playwright = pytest.importorskip("playwright.sync_api")


def test_a_cd_folder_chosen_in_the_browser_keeps_its_paths(browser, live: Live, tmp_path: Path):  # noqa: F811
    study = cd_folder(tmp_path)
    context, page = signed_in(browser, live)
    page.goto(f"/dossiers/{live.dossier_id}/edit/imaging")
    form = page.wait_for_selector("form[hx-post$='/dicom/import']", timeout=30_000)
    form.query_selector("input[webkitdirectory]").set_input_files(str(tmp_path / "cd"))
    form.query_selector("button[type=submit]").click()
    review = page.wait_for_selector("#import-review", timeout=60_000)
    text = review.inner_text()
    assert "incohérent" not in text and "DICOMDIR lu : tous les fichiers" in text, text
    assert 'value="' + study["study_uid"] + "/" in review.inner_html()
    context.close()
