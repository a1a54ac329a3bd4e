"""/stats: the deadline figures (table, charts, download) for analysts, not for clinicians."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from html import unescape

import pytest
from litestar.testing import TestClient

from adapters.credentials import Credentials
from application import Relais
from domain.values import PARIS
from entrypoints.bootstrap import install_process_fixes
from projections import statistics_report
from projections.statistics_report import TABLES
from tests.conftest import rpps
from tests.projections.test_statistics_deadlines import T0, Clock, build_world, small_world
from tests.web.conftest import PASSWORD, login

YEAR = "from=2025-01-01&to=2025-12-31"


@pytest.fixture()
def deadlines_world(settings, credentials: Credentials) -> Iterator[dict]:
    install_process_fixes()
    clock = Clock(T0)
    relais = Relais(env=settings.eventsourcing_env(), clock=clock)
    try:
        w = build_world(relais)
        small_world(relais, w, clock, settings.eventsourcing_env(), catch_up_between=False)
        analyst = relais.add_practitioner(rpps=rpps(9), family_name="Garcia", given_name="Inès",
                                          establishment_id=w["toulouse"], roles=["analyst"])
        for pid in (analyst, w["requester"]):
            credentials.set_password(pid, PASSWORD)
        yield w
    finally:
        relais.close()


def test_an_analyst_sees_the_deadline_figures_and_charts(client: TestClient, deadlines_world: dict):
    assert login(client, rpps(9)).status_code == 303
    page = client.get(f"/stats?{YEAR}")
    assert page.status_code == 200
    html = unescape(page.text)
    section = html[html.index('<section class="card" id="deadlines">'):]
    section = section[: section.index("</section>")]
    assert "Respect des délais par workflow et année" in section
    assert "<strong>8</strong> envois avec délai" in section and "<strong>2</strong> sans délai" in section
    assert "<strong>1</strong> escalade (1 envoi escaladé)" in section
    # the chart an analyst looks at: shares within the deadline per workflow, as bars (server-side SVG)
    assert "Part des envois traités dans le délai, par workflow" in section
    assert "Demande d'avis AVC aigu — Avis rendus dans le délai : 50\u202f%" in section
    assert "Devenir des envois face à leur délai, par workflow" in section
    assert section.count("<svg") == 2
    for label in ("Sans délai", "Avis dans le délai", "Avis en retard", "Sans avis, délai dépassé", "Refusés",
                  "Retirés avant l'échéance", "En cours, délai non échu", "Part des avis dans le délai",
                  "Part des prises en charge dans le délai", "Escalades"):
        assert label in section, label
    row = section[section.index("<tr><th scope=\"row\">Demande d'avis AVC aigu"):]
    row = row[: row.index("</tr>")]
    cells = [c.split(">", 1)[1].split("<", 1)[0] for c in row.split("<td")[1:]]
    assert cells[:3] == ["2025", "10", "2"]
    assert "50,00\xa0%" in row and "14 h 14" in row and "30 min" in row
    csv = client.get(f"/stats/export.csv?{YEAR}&table=deadlines").text.splitlines()
    assert csv[0].startswith("workflow,year,sends,without_deadline,with_deadline,")
    assert "stroke_opinion,2025,10,2,8,3,1,1,1,2,0,50,3,6,50,1,1,32.5,853.5,30" in csv
    assert client.get(f"/stats/export.json?{YEAR}").json()["deadlines"][0]["escalations"] == 1


def test_the_filters_apply_to_the_deadline_section(client: TestClient, deadlines_world: dict):
    login(client, rpps(9))
    html = unescape(client.get(f"/stats?{YEAR}&workflow=generic_opinion", headers={"HX-Request": "true"}).text)
    section = html[html.index('id="deadlines"'):]
    assert "<strong>0</strong> envois avec délai" in section and "Aucun envoi." in section
    assert "<svg" not in section[: section.index("</section>")]


def test_a_clinician_does_not_see_them(client: TestClient, deadlines_world: dict):
    login(client, rpps(11))
    for path in (f"/stats?{YEAR}", f"/stats/export.csv?{YEAR}&table=deadlines", f"/stats/export.json?{YEAR}"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "Respect des délais" not in response.text


def test_a_deadline_passing_without_any_event_shows_at_the_next_minute(client: TestClient, deadlines_world: dict,
                                                                         monkeypatch):
    """G, a generic opinion sent an hour ago (answer within 7 days), is running; 8 days later, with no new
    event, it is unanswered past its deadline (the page's cached report is not reused)."""
    login(client, rpps(9))
    year = datetime.now(PARIS).year
    period = f"from={year}-01-01&to={year + 1}-12-31&workflow=generic_opinion"

    def generic_row() -> list[str]:
        html = unescape(client.get(f"/stats/export.csv?{period}&table=deadlines").text)
        (line,) = [r for r in html.splitlines() if r.startswith("generic_opinion,")]
        return line.split(",")

    columns = TABLES["deadlines"]
    running = dict(zip(columns, generic_row(), strict=True))
    assert (running["open"], running["unanswered"], running["within_deadline_pct"]) == ("1", "0", "")
    assert "En cours, délai non échu" in unescape(client.get(f"/stats?{period}").text)
    later = datetime.now(PARIS) + timedelta(days=8)
    monkeypatch.setattr(statistics_report, "now", lambda: later)
    passed = dict(zip(columns, generic_row(), strict=True))
    assert (passed["open"], passed["unanswered"], passed["within_deadline_pct"], passed["within_accept_pct"]) == (
        "0", "1", "0", "0")
