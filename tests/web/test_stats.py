"""/stats: analysts only, htmx filters, charts, downloads of what is shown, no patient data."""

from __future__ import annotations

import json
from html import unescape

import pytest
from litestar.testing import TestClient

from adapters.credentials import Credentials
from adapters.history_import import import_file, parse_legacy_text
from application import Relais
from projections.runner import catch_up
from tests.conftest import PATIENT, rpps
from tests.history import EXPECTED, csv_text, live_dossiers
from tests.web.conftest import PASSWORD, login

PERIOD = "from=2022-01-01&to=2024-05-31"
# Everything that identifies the patients or tells their story, in the history's live dossiers.
PATIENT_DATA = ("DUPONT", "Dupont", "Jeanne", "1950-03-02", "02/03/1950", "31555", "Avis ?", "Pas d'indication")


@pytest.fixture()
def history(relais: Relais, world: dict, settings) -> dict:
    report = import_file(relais, parse_legacy_text(csv_text(), name="legacy.csv"))
    assert not report.errors
    live_dossiers(relais, world)
    catch_up("statistics", settings.eventsourcing_env(), relais)
    return world


@pytest.fixture()
def analyst(relais: Relais, history: dict, credentials: Credentials) -> str:
    pid = relais.add_practitioner(
        rpps=rpps(9), family_name="Garcia", given_name="Inès", establishment_id=history["toulouse"], roles=["analyst"]
    )
    credentials.set_password(pid, PASSWORD)
    return rpps(9)


def test_the_page_shows_every_table_with_charts(client: TestClient, analyst: str):
    assert login(client, analyst).status_code == 303
    home = client.get("/").text
    assert 'href="/stats"' in home  # the header links analysts to their pages
    page = client.get(f"/stats?{PERIOD}")
    assert page.status_code == 200
    html = unescape(page.text)
    assert "<h1>Statistiques régionales de télé-expertise</h1>" in html
    assert html.count("<svg") >= 6 and 'role="img"' in html
    for title in ("Télédossiers par année", "Envois par département requérant", "Délai de réponse par workflow et année",
                  "Source de l'imagerie par établissement requérant", "Envois inter-régionaux par canal et région",
                  "Acceptations et refus par workflow et année"):
        assert title in html
    assert "+250,00\xa0%" in html and "-25,00\xa0%" in html  # variations, French format
    assert "12</strong> télédossiers et <strong>13</strong> envois" in html
    assert "Réseau national" in html and "Île-de-France" in html
    assert "34 Hérault" in html
    assert "1 h 00" in html and "38 min" in html  # delays
    assert 'hx-get="/stats"' in html and 'hx-push-url="true"' in html


def test_filters_answer_with_the_results_fragment_only(client: TestClient, analyst: str):
    login(client, analyst)
    response = client.get(
        f"/stats?{PERIOD}&workflow=stroke_opinion&department=34&side=requester", headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    html = response.text
    assert html.lstrip().startswith('<div id="stats-results">') and "<html" not in html and "<form" not in html
    assert "<strong>2</strong> télédossiers" in html  # D5 and D11, stroke dossiers sent by Montpellier
    full = client.get(f"/stats?{PERIOD}&workflow=stroke_opinion&department=34&side=requester").text
    assert 'value="stroke_opinion" selected' in full and 'value="34" selected' in full


def test_downloads_are_what_is_shown(client: TestClient, analyst: str):
    login(client, analyst)
    response = client.get(f"/stats/export.json?{PERIOD}")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="relais-statistiques_2022-01-01_2024-05-31.json"'
    report = response.json()
    for key, expected in EXPECTED.items():
        assert report[key] == expected, key
    csv = client.get(f"/stats/export.csv?{PERIOD}&establishment=310781406&side=requester")
    assert csv.headers["content-type"].startswith("text/csv")
    assert "310781406" in csv.headers["content-disposition"]
    assert csv.text.splitlines()[0] == "table,year,workflow,department,finess,imaging_source,channel,region,measure,value"
    assert "period,,,,,,,,establishment,310781406" in csv.text.splitlines()
    one = client.get(f"/stats/export.csv?{PERIOD}&table=dossiers_by_year&excel=1")
    assert one.content.startswith(b"\xef\xbb\xbfyear;dossiers;compared_from;compared_to;compared_dossiers;variation_pct\r\n")
    assert "2023;7;2022-01-01;2022-12-31;2;250\r\n" in one.text
    assert client.get(f"/stats/export.csv?{PERIOD}&table=nope").status_code == 422


def test_as_of_and_invalid_filters(client: TestClient, analyst: str):
    login(client, analyst)
    page = client.get(f"/stats?{PERIOD}&as_of=2020-01-01").text
    assert "Chiffres tels qu'enregistrés à la fin du 01/01/2020" in page
    assert "<strong>0</strong> télédossiers" in page
    for bad, message in (
        ("from=2024-13-01", "Date de début : date invalide « 2024-13-01 »"),
        ("establishment=310781407", "Établissement : FINESS invalide « 310781407 » : clé de contrôle erronée"),
        ("department=20", "Département : code département inconnu « 20 »"), ("workflow=x", "Workflow : valeur inconnue « x »"),
        ("side=both", "En tant que : valeur inconnue « both »"),
        ("from=2024-06-01&to=2024-05-31", "Date de début : période vide"),
    ):
        response = client.get(f"/stats?{bad}", headers={"HX-Request": "true"})
        assert response.status_code == 422, bad
        assert message in unescape(response.text), response.text


@pytest.mark.parametrize("who", ["requester", "auditor"])
def test_other_roles_get_403(client: TestClient, passwords: dict, history: dict, who: str):
    login(client, {"requester": rpps(1), "auditor": rpps(4)}[who])
    for path in ("/stats", "/stats/export.json", "/stats/export.csv"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "réservée au rôle : Analyste" in response.text
    assert 'href="/stats"' not in client.get("/").text


def test_anonymous_users_are_sent_to_the_login_page(client: TestClient):
    response = client.get("/stats", follow_redirects=False)
    assert response.status_code in (302, 303) and response.headers["location"].startswith("/login")


def test_no_patient_data_in_pages_or_exports(client: TestClient, analyst: str):
    login(client, analyst)
    bodies = [
        client.get(f"/stats?{PERIOD}").text,
        client.get(f"/stats?{PERIOD}", headers={"HX-Request": "true"}).text,
        client.get(f"/stats/export.json?{PERIOD}").text,
        client.get(f"/stats/export.csv?{PERIOD}").text,
        client.get(f"/stats/export.csv?{PERIOD}&excel=1").text,
    ]
    assert PATIENT["patient_birth_name"] == "Dupont"
    for body in bodies:
        for secret in PATIENT_DATA:
            assert secret not in body, secret
    assert json.loads(bodies[2])["totals"]["dossiers"] == 12
