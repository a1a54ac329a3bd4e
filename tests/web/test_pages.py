"""Home page, role switching, health, escaping and security headers."""

from __future__ import annotations

from litestar.testing import TestClient

from adapters.credentials import Credentials
from application import Relais
from tests.conftest import rpps
from tests.web.conftest import PASSWORD, csrf_from, login


def test_health_reports_database_and_projections_without_login(client: TestClient):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["version"] == "0.1.0"
    names = [p["name"] for p in body["projections"]]
    assert "directory" in names
    for p in body["projections"]:
        assert set(p) == {"name", "position", "head", "lag"}
        assert p["lag"] >= 0 and p["head"] >= p["position"]
    assert response.headers["content-type"].startswith("application/json")


def test_health_counts_unprojected_events_as_lag(client: TestClient, world: dict):
    body = client.get("/health").json()
    directory = next(p for p in body["projections"] if p["name"] == "directory")
    assert directory["head"] > 0
    assert directory["lag"] > 0  # no runner in this test: the directory events wait


def test_health_is_503_when_the_database_does_not_answer(app, client: TestClient):
    app.state.services.pool.close()
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"].startswith("error: ")
    assert body["projections"] == []


def test_security_headers_on_pages_errors_and_static(client: TestClient):
    for path in ("/login", "/health", "/nowhere", "/static/relais.css"):
        headers = client.get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
    assert client.get("/login").headers["cache-control"] == "no-store"


def test_vendored_htmx_is_served_and_loaded_with_the_csrf_header(client: TestClient):
    page = client.get("/login").text
    assert '<script src="/static/vendor/htmx-2.0.11.min.js" defer></script>' in page
    assert "hx-headers='{\"x-csrftoken\": \"" in page
    js = client.get("/static/vendor/htmx-2.0.11.min.js")
    assert js.status_code == 200 and "htmx" in js.text[:200]
    assert client.get("/static/vendor/htmx-ext-sse-2.2.4.min.js").status_code == 200


def test_names_are_escaped_in_pages(client: TestClient, relais: Relais, world: dict, credentials: Credentials):
    pid = relais.add_practitioner(
        rpps=rpps(7), family_name="<script>alert(1)</script>", given_name="<b>Eve</b>",
        establishment_id=world["toulouse"], roles=["clinician"],
    )
    credentials.set_password(pid, PASSWORD)
    login(client, rpps(7))
    page = client.get("/").text
    assert "<script>alert" not in page.lower()
    assert "&lt;SCRIPT&gt;ALERT(1)&lt;/SCRIPT&gt;" in page  # family names are stored upper-case
    assert "&lt;b&gt;Eve&lt;/b&gt;" in page
    assert "<b>Eve</b>" not in page


def test_home_shows_no_switch_with_a_single_role(client: TestClient, passwords: dict):
    login(client, rpps(1))
    page = client.get("/").text
    assert 'name="context"' not in page


def test_switching_to_a_held_role_and_establishment(client: TestClient, relais: Relais, passwords: dict):
    relais.set_membership(practitioner_id=passwords["requester"], establishment_id=passwords["montpellier"], roles=["auditor"])
    login(client, rpps(1))
    page = client.get("/").text
    assert f'value="{passwords["montpellier"]}|auditor"' in page
    response = client.post(
        "/context", data={"context": f'{passwords["montpellier"]}|auditor', "_csrf_token": csrf_from(page)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    page = client.get("/").text
    assert "CHU de Montpellier" in page and "Auditeur" in page


def test_switching_refuses_a_role_not_held(client: TestClient, relais: Relais, passwords: dict):
    relais.set_membership(practitioner_id=passwords["requester"], establishment_id=passwords["montpellier"], roles=["auditor"])
    login(client, rpps(1))
    token = csrf_from(client.get("/").text)
    for forged in (
        f'{passwords["toulouse"]}|admin',
        f'{passwords["montpellier"]}|clinician',
        f'{passwords["montpellier"]}',
        "nonsense",
    ):
        response = client.post("/context", data={"context": forged, "_csrf_token": token}, follow_redirects=False)
        assert response.status_code == 403, forged
        assert "Vous ne détenez pas ce rôle" in response.text
    page = client.get("/").text
    assert "CHU de Toulouse" in page and "Clinicien" in page  # unchanged


def test_switching_needs_a_login(client: TestClient, passwords: dict):
    token = csrf_from(client.get("/login").text)
    response = client.post("/context", data={"context": "x|y", "_csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"


def test_health_and_static_set_no_cookies(client: TestClient):
    for path in ("/health", "/static/relais.css"):
        assert "set-cookie" not in client.get(path).headers, path
