"""/stats: the stroke indicators (median delays per month) as a table, a chart and a CSV download."""

from __future__ import annotations

from html import unescape

import pytest
from litestar.testing import TestClient

from adapters.credentials import Credentials
from application import Relais
from projections.runner import catch_up
from tests.conftest import rpps
from tests.projections.test_milestones import history  # noqa: F401 - the fixture: stroke dossiers with known times
from tests.web.conftest import PASSWORD, login

NOVEMBER = {"from": "2026-11-01", "to": "2026-11-30"}


@pytest.fixture()
def analyst(relais: Relais, world: dict, credentials: Credentials, settings, history: dict) -> str:  # noqa: F811
    pid = relais.add_practitioner(rpps=rpps(9), family_name="Garcia", given_name="Inès", establishment_id=world["toulouse"],
                                  roles=["analyst"])
    credentials.set_password(pid, PASSWORD)
    catch_up("milestones", settings.eventsourcing_env(), relais)
    return rpps(9)


def test_stats_show_the_stroke_medians(client: TestClient, analyst: str):
    assert login(client, analyst).status_code == 303
    html = unescape(client.get("/stats", params=NOVEMBER).text)
    section = html.split('id="stroke"')[1].split("</section>")[0]
    assert "AVC aigu : délais de la prise en charge par mois" in section
    assert "<svg" in section and "délais médians arrivée → avis" in section
    month = section.split("<th scope=\"row\">2026-11</th>")[1].split("</tr>")[0]
    cells = [c.split("</td>")[0] for c in month.split('<td class="num">')[1:]]
    assert cells == ["3", "1 h 10", "2", "1 h 00", "3", "25 min", "2", "10 min", "3"]
    assert "Période entière" in section


def test_the_stroke_table_downloads_as_csv(client: TestClient, analyst: str):
    login(client, analyst)
    answer = client.get("/stats/export.csv", params={**NOVEMBER, "table": "stroke"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.text.splitlines()[1] == "2026-11,3,2,70.0,3,60.0,2,25.0,3,10.0"


def test_another_workflow_hides_them_and_other_filters_are_said(client: TestClient, analyst: str):
    login(client, analyst)
    assert 'id="stroke"' not in client.get("/stats", params={**NOVEMBER, "workflow": "generic_opinion"}).text
    html = unescape(client.get("/stats", params={**NOVEMBER, "department": "34"}).text)
    assert "Non filtré par : département." in html
