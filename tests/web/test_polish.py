"""Clinician-facing polish found by a user walk: words, dates, plurals, study previews, landing pages,
skip link, the dossier page's h1, contrast of completed steps, errors at the field, imported history."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest
from litestar.testing import TestClient
from pydicom import dcmread

from adapters.credentials import Credentials
from adapters.dicom.receive import describe
from adapters.dicom.recording import recorder
from adapters.dicom.storage import InstanceStore
from adapters.history_import import import_file, parse_legacy_text
from application import Relais
from projections.runner import catch_up
from tests.conftest import PATIENT, rpps
from tests.dicomdata import write_study
from tests.history import csv_text
from tests.web.conftest import PASSWORD, csrf_from, login
from web.dicom_format import dicom_date, dicom_time, series_title, study_title
from web.present import timeline_line

CSS = Path(__file__).resolve().parents[2] / "web" / "static" / "relais.css"
HX = {"HX-Request": "true"}


def settle(relais: Relais, settings) -> None:
    for name in ("directory", "inbox", "access", "imaging"):
        catch_up(name, settings.eventsourcing_env(), relais)


def attach_study(relais: Relais, settings, world: dict, dossier_id: str, folder: Path, description: str) -> dict:
    """A CT study (CT_small.dcm: StudyDate 20040119) of one series of 3 images, received and attached."""
    data = write_study(folder, series=1, per_series=3, description=description)
    store = InstanceStore(settings.dicom_root)
    items = []
    for f in data["files"]:
        ds = dcmread(f)
        store.put(world["toulouse"], data["study_uid"], ds.SOPInstanceUID, f.read_bytes())
        items.append(describe(ds, transfer_syntax=str(ds.file_meta.TransferSyntaxUID), size=f.stat().st_size))
    (update,) = recorder(relais)(world["toulouse"], items, {"kind": "dicom_store"})
    relais.attach_received_study(dossier_id=dossier_id, actor_id=world["requester"], study_id=update.study_id)
    return data


@pytest.fixture()
def sent(relais: Relais, settings, passwords: dict, tmp_path: Path) -> dict:
    """A stroke dossier Toulouse → Montpellier neuroradiology with one study without a description."""
    w = passwords
    did = relais.create_dossier(actor_id=w["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                                urgency="stat", consent="given", imaging_source="dicom_store", **PATIENT)
    study = attach_study(relais, settings, w, did, tmp_path / "ct", description="")
    relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                             service_id=w["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])
    settle(relais, settings)
    return {"did": did, "study": study, **w}


# ------------------------------------------------------------------ words


def test_dicom_dates_and_times_are_french():
    assert dicom_date("20040119") == "19/01/2004"
    assert dicom_date("2004.01.19") == "19/01/2004"
    assert dicom_date("20040101-20040131") == "du 01/01/2004 au 31/01/2004"
    assert dicom_date("20041319") == "20041319"  # not a date: shown as received, never hidden
    assert dicom_date(None) == dicom_date("") == ""
    assert dicom_time("143205.123") == "14:32" and dicom_time("09") == "09:00" and dicom_time("14:32:05") == "14:32"


def test_studies_and_series_have_meaningful_names():
    assert study_title({"description": "", "study_date": "20040119"}) == "Examen du 19/01/2004"
    assert study_title({"description": "e+1", "study_date": "20040119", "modalities": ["CT"]}) == "Examen CT du 19/01/2004 — e+1"
    assert study_title({"description": "SCANNER CEREBRAL"}) == "SCANNER CEREBRAL"
    assert study_title({}) == "Examen d'imagerie"
    assert series_title({"number": 3, "description": "e+1", "modality": "CT", "count": 33}) == "Série n° 3 — e+1 (CT, 33 images)"
    assert series_title({"number": 2, "description": "", "modality": "MR", "count": 1}) == "Série n° 2 (MR, 1 image)"


def test_timeline_says_the_fields_edited_in_french():
    title, detail = timeline_line("DraftEdited", {"changes": {"imaging_source": "none", "workflow": "x"}}, None)  # type: ignore[arg-type]
    assert title == "Brouillon modifié" and detail == "parcours, source de l'imagerie"


def test_dossier_page_shows_french_dates_plurals_and_a_study_preview(client: TestClient, sent: dict):
    assert login(client, rpps(2)).status_code == 303
    html = unescape(client.get(f"/dossiers/{sent['did']}").text)
    assert "20040119" not in html
    assert "1 série" in html and "3 images" in html and "1 séries" not in html
    uid = sent["study"]["study_uid"]
    link = re.search(rf'<a href="/dossiers/{sent["did"]}/imaging/{uid}">([^<]+)</a>', html)
    assert link and link.group(1) == "Examen CT du 19/01/2004"  # not a bare « Examen », nor a cryptic description
    thumb = f'src="/dossiers/{sent["did"]}/dicom/studies/{uid}/thumbnail.png"'
    assert thumb in html and re.search(rf'<img {re.escape(thumb)}[^>]*loading="lazy"', html)
    assert "recueilli" in html
    assert "given" not in re.sub(r'value="given"', "", html)
    # the study's page: its date in French, counts with plurals
    page = unescape(client.get(f"/dossiers/{sent['did']}/imaging/{uid}").text)
    assert "19/01/2004" in page and "20040119" not in page and "3 images" in page


def test_the_study_preview_is_a_png_read_checked_and_traced(client: TestClient, sent: dict, relais: Relais):
    uid = sent["study"]["study_uid"]
    url = f"/dossiers/{sent['did']}/dicom/studies/{uid}/thumbnail.png"
    assert login(client, rpps(3)).status_code == 303  # Montpellier, not of neuroradiology: not a reader
    assert client.get(url).status_code == 403
    client.cookies.clear()
    assert login(client, rpps(2)).status_code == 303
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    seen = []
    for note in relais.recorder.select_notifications(1, 10_000_000, topics=["relais:Access.Created"]):
        e = relais.mapper.to_domain_event(note)
        if e.dossier_id == sent["did"] and e.kind == "imaging":
            seen.append((e.actor.get("practitioner_id"), e.outcome))
    assert (sent["recipient"], "granted") in seen and (sent["outsider"], "denied") in seen


# ------------------------------------------------------------------ landing, skip link, h1, contrast


def test_the_analyst_lands_on_the_statistics(client: TestClient, relais: Relais, world: dict, credentials: Credentials):
    pid = relais.add_practitioner(rpps=rpps(9), family_name="Garcia", given_name="Inès", establishment_id=world["toulouse"],
                                  roles=["analyst"])
    credentials.set_password(pid, PASSWORD)
    assert login(client, rpps(9)).status_code == 303
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/stats"
    assert "placeholder" not in client.get("/stats").text


def test_every_page_has_a_skip_link_to_its_content_and_the_dossier_page_an_h1(client: TestClient, sent: dict):
    assert login(client, rpps(1)).status_code == 303
    for url in ("/inbox/received", f"/dossiers/{sent['did']}"):
        html = client.get(url).text
        skip = html.index('<a class="skip-link" href="#content">Aller au contenu</a>')
        assert skip < html.index("<header") and '<main id="content"' in html
    html = unescape(client.get(f"/dossiers/{sent['did']}").text)
    h1 = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    assert h1, "no h1 on the dossier page"
    text = " ".join(re.sub(r"<[^>]+>", " ", h1.group(1)).split())
    assert "DUPONT" in text.upper() and "Jeanne" in text and re.search(r"TD-[0-9A-Z]+", text)


def _hex(colour: str) -> tuple[float, float, float]:
    colour = colour.strip().lstrip("#")
    if len(colour) == 3:
        colour = "".join(c * 2 for c in colour)
    return tuple(int(colour[i:i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def _luminance(rgb: tuple[float, float, float]) -> float:
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(_hex(a)), _luminance(_hex(b))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_contrast_is_computed_as_wcag_says():
    assert round(contrast("#000", "#fff"), 1) == 21.0
    assert round(contrast("#fff", "#86b7ea"), 2) < 4.5  # the completed steps' colours before


def test_completed_step_numbers_have_aa_contrast():
    css = CSS.read_text()
    rules = re.findall(r"\.stepper li\.done \.step-n\s*\{([^}]*)\}", css)
    assert rules, "no rule for completed step numbers"
    last = {k.strip(): v.strip() for k, v in (d.split(":", 1) for d in rules[-1].split(";") if ":" in d)}
    assert contrast(last["color"], last["background"]) >= 4.5, last


# ------------------------------------------------------------------ errors at the field


def test_an_action_refused_names_its_field_for_the_page_to_mark(client: TestClient, relais: Relais, passwords: dict,
                                                                settings):
    w = passwords
    did = relais.create_dossier(actor_id=w["requester"], workflow="generic_opinion", question="Avis ?", consent="given",
                                **PATIENT)
    relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"])
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])
    settle(relais, settings)
    assert login(client, rpps(1)).status_code == 303
    page = client.get(f"/dossiers/{did}").text
    version = re.search(r'id="dossier-version" value="(\d+)"', page).group(1)
    token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
    r = client.post(f"/dossiers/{did}/actions/cancel", headers=HX, data={
        "_csrf_token": csrf_from(page), "expected_version": version, "form_token": token, "reason": "   "})
    assert r.status_code == 422
    assert 'data-field="reason"' in r.text and r.headers["hx-retarget"] == "#messages"
    js = (CSS.parent / "relais.js").read_text()
    for needed in ("data-field", "aria-describedby", "aria-invalid", ".focus()"):
        assert needed in js


# ------------------------------------------------------------------ imported history


def test_imported_history_does_not_flood_inboxes_and_says_what_it_is(client: TestClient, relais: Relais, passwords: dict,
                                                                      settings):
    report = import_file(relais, parse_legacy_text(csv_text(), name="legacy.csv"))
    assert not report.errors
    settle(relais, settings)
    for who in (rpps(1), rpps(2)):  # Toulouse requests and receives legacy dossiers, Montpellier receives them
        client.cookies.clear()
        assert login(client, who).status_code == 303
        for tab in ("received", "sent"):
            html = unescape(client.get(f"/inbox/{tab}").text)
            assert 'data-dossier="' not in html, f"{who} {tab}: imported history listed as work"
            assert "non lu" not in html
        closed = unescape(client.get("/inbox/closed").text)
        assert closed.count('data-dossier="') >= 3  # the history is there, closed
        assert "Dossier historique importé" in closed
        assert re.search(r'class="row [^"]*unread', closed) is None
    one = re.search(r'data-dossier="([0-9a-f-]+)"', closed).group(1)
    html = unescape(client.get(f"/dossiers/{one}").text)
    assert "dossier historique importé — identité non transmise" in html.lower()
    assert "Né le" not in html and "Née le" not in html and "()" not in html.split("<main", 1)[1].split("</section>", 1)[0]
    # searchable: by its dossier number
    number = re.search(r"TD-[0-9A-Z]+", html).group(0)
    found = unescape(client.get("/inbox/closed", params={"q": number}).text)
    assert found.count('data-dossier="') == 1
    # by its legacy number too (D4 is Toulouse → Montpellier and Paris)
    found = unescape(client.get("/inbox/closed", params={"q": "d4"}).text)
    assert found.count('data-dossier="') == 1 and "(n° D4)" in unescape(client.get(
        "/dossiers/" + re.search(r'data-dossier="([0-9a-f-]+)"', found).group(1)).text)
    # D1 was not closed on the legacy platform: closed at import, and its history says so
    d1 = unescape(client.get("/inbox/closed", params={"q": "d1"}).text)
    page = unescape(client.get("/dossiers/" + re.search(r'data-dossier="([0-9a-f-]+)"', d1).group(1)).text)
    assert "clôturé à l'import" in page and "Clôturé" in page
    every = unescape(client.get("/inbox/closed", params={"q": "historique importé"}).text)
    assert every.count('data-dossier="') == closed.count('data-dossier="')
