"""Relais on a tablet held upright (820 × 1180) in Debian's Chromium (Playwright), against a live `relais serve`.

What a clinician walk found there, measured from the boxes the browser lays out: the wizard's step labels
overlapped, the patient banner stopped being sticky, inbox rows hid the workflow and the dossier number, the
history fell to the bottom of the dossier page. Also the skip link, an action refused at its field, a study's
preview. Screenshots go to test-output/e2e/ (or $RELAIS_TEST_OUTPUT; git-ignored) and to pytest's tmp dir.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from adapters.dicom.receive import describe
from adapters.dicom.recording import recorder
from adapters.dicom.storage import InstanceStore
from adapters.settings import Settings
from entrypoints.bootstrap import build_app
from projections.runner import catch_up
from tests.conftest import PATIENT, rpps
from tests.dicomdata import write_study
from tests.e2e.conftest import CHROMIUM, sign_in
from tests.live import PASSWORD, LiveServer, live_server

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")

TABLET = {"width": 820, "height": 1180}
OUTPUT = Path(os.environ.get("RELAIS_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output")) / "e2e"
WORKFLOWS = ("stroke_opinion", "emergency_opinion", "imaging_transfer", "generic_opinion", "out_of_region_opinion")


@pytest.fixture(scope="module")
def tablet_world(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """Five dossiers sent from Toulouse to Montpellier's neuroradiology; the first one also to four more
    establishments, with a CT study attached and a history of some length."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (scripts/system-packages.sh)")
    tmp = tmp_path_factory.mktemp("tablet")
    with live_server(tmp) as server:
        yield _world(server, tmp)


def _world(server: LiveServer, tmp: Path) -> dict[str, Any]:
    settings = Settings(database_url=server.database_url, data_dir=tmp / "var")
    relais = build_app(settings)
    try:
        req, mtp, neuro = server.users["requester"], server.ids["montpellier"], server.ids["neuro"]
        toulouse = server.ids["toulouse"]
        others = [relais.add_establishment(finess=finess, name=name, department=dep) for finess, name, dep in (
            ("300780038", "CHU de Nîmes", "30"), ("660780180", "CH de Perpignan", "66"),
            ("110780061", "CH de Carcassonne", "11"), ("810000380", "CH d'Albi", "81"))]
        dossiers = []
        for n, workflow in enumerate(WORKFLOWS):
            did = relais.create_dossier(actor_id=req, workflow=workflow, question=f"Avis n° {n + 1} ? " + "Contexte. " * 30,
                                        urgency="urgent", consent="given", imaging_source="dicom_store", **PATIENT)
            if n == 0:
                for q in ("Hémiplégie droite.", "Hémiplégie droite, NIHSS 14.", "Hémiplégie droite, NIHSS 14. Thrombectomie ?"):
                    relais.edit_draft(dossier_id=did, actor_id=req, question=q)
                _attach_study(relais, settings, toulouse, req, did, tmp / "ct")
                for est in others:
                    relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=est)
            relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=mtp, service_id=neuro)
            relais.send_dossier(dossier_id=did, actor_id=req)
            dossiers.append(did)
        for name in ("directory", "inbox", "access", "imaging"):
            catch_up(name, settings.eventsourcing_env(), relais)
    finally:
        relais.close()
    return {"base": server.base, "dossiers": dossiers}


def _attach_study(relais: Any, settings: Settings, establishment: str, actor: str, did: str, folder: Path) -> None:
    data = write_study(folder, series=2, per_series=3, description="")
    store = InstanceStore(settings.dicom_root)
    items = []
    for f in data["files"]:
        ds = dcmread(f)
        store.put(establishment, data["study_uid"], ds.SOPInstanceUID, f.read_bytes())
        items.append(describe(ds, transfer_syntax=str(ds.file_meta.TransferSyntaxUID), size=f.stat().st_size))
    (update,) = recorder(relais)(establishment, items, {"kind": "dicom_store"})
    relais.attach_received_study(dossier_id=did, actor_id=actor, study_id=update.study_id)



def shot(page: Any, name: str, tmp_path: Path) -> None:
    """A tablet screenshot (the viewport, as the clinician sees it) in the artifacts folder and pytest's tmp dir."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for folder in (OUTPUT, tmp_path):
        page.screenshot(path=str(folder / f"tablet-{name}.png"))
    assert (tmp_path / f"tablet-{name}.png").stat().st_size > 1000


def box(locator: Any) -> dict[str, float]:
    b = locator.bounding_box()
    assert b is not None, "not laid out (hidden)"
    return b


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (a["x"] < b["x"] + b["width"] - 0.5 and b["x"] < a["x"] + a["width"] - 0.5
            and a["y"] < b["y"] + b["height"] - 0.5 and b["y"] < a["y"] + a["height"] - 0.5)


def test_inbox_rows_show_the_workflow_and_the_dossier_number(browser, tablet_world, tmp_path):
    context, page = sign_in(browser, tablet_world["base"], rpps(2), PASSWORD, TABLET)
    rows = page.locator("#results .row")
    playwright.expect(rows).to_have_count(len(WORKFLOWS))
    for i in range(rows.count()):
        row = rows.nth(i)
        workflow, number = row.locator(".cell-workflow"), row.locator(".cell-workflow .number")
        playwright.expect(workflow).to_be_visible()
        playwright.expect(number).to_be_visible()
        assert re.fullmatch(r"TD-[0-9A-Z]+", number.inner_text().strip())
        r, w, n = box(row), box(workflow), box(number)
        assert w["width"] > 40 and n["width"] > 40
        assert n["x"] >= r["x"] - 0.5 and n["x"] + n["width"] <= r["x"] + r["width"] + 0.5, "number cut off"
        assert not overlap(n, box(row.locator(".cell-patient"))), "number over the patient"
    shot(page, "inbox", tmp_path)
    context.close()


def test_the_dossier_history_is_reachable_beside_the_dossier(browser, tablet_world, tmp_path):
    context, page = sign_in(browser, tablet_world["base"], rpps(1), PASSWORD, TABLET)
    page.goto(f"/dossiers/{tablet_world['dossiers'][0]}")
    page.wait_for_load_state("networkidle")
    # the history without scrolling through the whole dossier: in the first screen, beside the main column
    history = page.locator(".timeline-card h2")
    playwright.expect(history).to_have_text("Historique")
    h, main = box(history), box(page.locator(".col-main"))
    assert h["y"] + h["height"] <= TABLET["height"], f"history at {h['y']:.0f} px, below the first screen"
    assert main["height"] > TABLET["height"], "the dossier must be longer than a screen for this check to mean anything"
    assert page.locator(".timeline .tl").count() >= 8
    # the study's preview loads (lazily) and is an image
    thumb = page.locator(".study-thumb img")
    thumb.scroll_into_view_if_needed()
    page.wait_for_function("() => { const i = document.querySelector('.study-thumb img'); return i && i.complete && i.naturalWidth > 0; }")
    assert page.locator(".study-text a").first.inner_text().strip() == "Examen CT du 19/01/2004"
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "dossier", tmp_path)
    context.close()


def test_the_patient_banner_stays_on_top_while_scrolling(browser, tablet_world, tmp_path):
    context, page = sign_in(browser, tablet_world["base"], rpps(1), PASSWORD, TABLET)
    page.goto(f"/dossiers/{tablet_world['dossiers'][0]}")
    page.wait_for_load_state("networkidle")
    page.evaluate("window.scrollTo(0, 900)")
    page.wait_for_function("() => window.scrollY >= 800")
    banner = box(page.locator(".banner"))
    assert abs(banner["y"]) <= 1, f"banner at {banner['y']:.0f} px after scrolling: not sticky"
    assert banner["height"] < TABLET["height"] / 5, "the sticky banner takes too much of the screen"
    shot(page, "dossier-scrolled", tmp_path)
    context.close()


def test_the_wizard_step_labels_do_not_overlap(browser, tablet_world, tmp_path):
    context, page = sign_in(browser, tablet_world["base"], rpps(1), PASSWORD, TABLET)
    page.goto("/dossiers/new")
    steps = page.locator(".stepper li")
    assert steps.count() >= 3
    parts = []
    for i in range(steps.count()):
        li = steps.nth(i)
        label, number = box(li.locator(".step-label")), box(li.locator(".step-n"))
        own = box(li)
        for part in (label, number):
            assert part["x"] >= own["x"] - 0.5 and part["x"] + part["width"] <= own["x"] + own["width"] + 0.5, \
                f"step {i + 1} « {li.inner_text()} » spills out of its place"
        parts.append((i, label))
        parts.append((i, number))
    for i, a in parts:
        for j, b in parts:
            if i < j:
                assert not overlap(a, b), f"steps {i + 1} and {j + 1} overlap"
    shot(page, "compose", tmp_path)
    context.close()


def test_skip_link_and_an_action_refused_at_its_field(browser, tablet_world, tmp_path):
    context, page = sign_in(browser, tablet_world["base"], rpps(1), PASSWORD, TABLET)
    page.goto(f"/dossiers/{tablet_world['dossiers'][1]}")
    page.keyboard.press("Tab")
    focused = page.evaluate("() => [document.activeElement.className, document.activeElement.textContent.trim()]")
    assert focused == ["skip-link", "Aller au contenu"]
    playwright.expect(page.locator("h1")).to_contain_text("DUPONT", ignore_case=True)
    page.click("details.danger > summary")
    page.fill("#cancel-reason", "   ")  # not empty for the browser, blank for Relais
    page.click("details.danger button[type=submit]")
    field = page.locator("#cancel-reason")
    playwright.expect(field).to_have_attribute("aria-invalid", "true")
    described = field.get_attribute("aria-describedby")
    assert described
    playwright.expect(page.locator(f"#{described}")).to_contain_text("obligatoire")
    assert page.evaluate("() => document.activeElement.id") == "cancel-reason"
    shot(page, "field-error", tmp_path)
    # corrected, the error goes
    page.fill("#cancel-reason", "Patient transféré ailleurs")
    page.click("details.danger button[type=submit]")
    playwright.expect(page.locator(".banner .state")).to_have_text("Annulé")
    context.close()
