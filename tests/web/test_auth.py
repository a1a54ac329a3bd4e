"""Login, logout, lockout, CSRF and the login guard, through HTTP on a real database."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from litestar.testing import TestClient

from adapters.credentials import Credentials
from tests.conftest import rpps
from tests.web.conftest import PASSWORD, csrf_from, login
from web.authentication import BAD_CREDENTIALS

BAD = "Identifiant ou mot de passe incorrect."


def test_login_page_is_french_form_with_csrf_token(client: TestClient):
    page = client.get("/login")
    assert page.status_code == 200
    assert '<html lang="fr">' in page.text
    assert "Numéro RPPS" in page.text and "Mot de passe" in page.text
    assert csrf_from(page.text)
    assert "csrftoken" in page.cookies


def test_login_success_opens_a_session_and_shows_home(client: TestClient, passwords: dict):
    response = login(client, rpps(1))
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookie if c.startswith("relais_session="))
    assert "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie.replace("Lax", "lax")
    home = client.get("/")
    assert home.status_code == 200
    assert "Bonjour Claire MARTIN" in home.text
    assert "CHU de Toulouse" in home.text
    assert "Clinicien" in home.text
    assert "Boîte de réception" in home.text  # clinicians land on their inbox


def test_login_goes_back_to_a_local_next_only(client: TestClient, passwords: dict):
    assert login(client, rpps(1), next="/?x=1").headers["location"] == "/?x=1"
    client.post("/logout", data={"_csrf_token": csrf_from(client.get("/").text)})
    assert login(client, rpps(1), next="//evil.example/").headers["location"] == "/"


def test_wrong_password_and_unknown_user_get_the_same_message(client: TestClient, passwords: dict):
    wrong = login(client, rpps(1), "not the right password")
    unknown = login(client, rpps(99), PASSWORD)
    malformed = login(client, "12345", PASSWORD)
    for response in (wrong, unknown, malformed):
        assert response.status_code == 401
        assert BAD in response.text
        assert BAD == BAD_CREDENTIALS
    assert client.get("/", follow_redirects=False).status_code == 303


def test_repeated_failures_block_this_address_for_a_while(client: TestClient, passwords: dict):
    for _ in range(2):
        assert BAD in login(client, rpps(1), "wrong password!!").text
    third = login(client, rpps(1), "wrong password!!")
    assert third.status_code == 401
    assert "Connexion temporairement bloquée" in third.text
    # even the right password is refused from this address while it waits
    locked = login(client, rpps(1), PASSWORD)
    assert locked.status_code == 401 and "Connexion temporairement bloquée" in locked.text
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_long_delay_names_the_unlock_time_in_paris(client: TestClient, passwords: dict, credentials: Credentials):
    from datetime import UTC, datetime

    app_credentials = client.app.state.services.credentials
    now = [datetime(2026, 7, 1, 21, 59, 30, tzinfo=UTC)]
    app_credentials.clock = lambda: now[0]
    until = None
    for _ in range(5):  # 3rd failure: 30 s, 4th: 1 min, 5th: 2 min (each tried when the last delay ends)
        if until is not None:
            now[0] = until
        login(client, rpps(1), "wrong password!!")
        with credentials.pool.connection() as conn:
            until = conn.execute("SELECT max(locked_until) AS u FROM relais_login_pairs").fetchone()["u"]
    assert until is not None and (until - now[0]).total_seconds() == 120
    local = until.astimezone(ZoneInfo("Europe/Paris"))
    text = login(client, rpps(1), PASSWORD).text
    assert f"après {local:%H} h {local:%M}" in text and "heure de Paris" in text


def test_logout_ends_the_session(client: TestClient, passwords: dict):
    login(client, rpps(1))
    home = client.get("/")
    response = client.post("/logout", data={"_csrf_token": csrf_from(home.text)}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    assert client.get("/", follow_redirects=False).status_code == 303
    assert "Vous êtes déconnecté" in client.get("/login?sortie=1").text


def test_session_id_changes_at_each_login_and_the_old_one_is_forgotten(client: TestClient, passwords: dict):
    login(client, rpps(1))
    first = client.cookies.get("relais_session")
    token = csrf_from(client.get("/").text)
    again = client.post("/login", data={"login": rpps(2), "password": PASSWORD, "_csrf_token": token}, follow_redirects=False)
    assert again.status_code == 303
    second = client.cookies.get("relais_session")
    assert first and second and first != second
    assert "Paul DURAND" in client.get("/").text
    client.cookies.set("relais_session", first, domain="testserver.local")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_anonymous_requests_store_no_session(client: TestClient):
    response = client.get("/login")
    assert "relais_session=" not in " ".join(response.headers.get_list("set-cookie"))


def test_forged_login_post_without_csrf_token_is_refused(client: TestClient, passwords: dict):
    response = client.post(
        "/login", data={"login": rpps(1), "password": PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 403
    assert "jeton de sécurité" in response.text
    assert "relais_session=" not in response.headers.get("set-cookie", "")


def test_forged_login_post_with_a_wrong_token_is_refused(client: TestClient, passwords: dict):
    client.get("/login")  # has a CSRF cookie, but the form carries another token
    response = client.post(
        "/login", data={"login": rpps(1), "password": PASSWORD, "_csrf_token": "0" * 64}, follow_redirects=False
    )
    assert response.status_code == 403


def test_protected_page_redirects_to_login(client: TestClient):
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_htmx_request_without_session_gets_a_client_redirect(client: TestClient):
    response = client.get("/", headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/"}, follow_redirects=False)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login"


def test_expired_session_is_refused(client: TestClient, passwords: dict, monkeypatch):
    login(client, rpps(1))
    import web.session as session_module

    monkeypatch.setattr(session_module, "MAX_AGE", -1)
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?expiree=1"
    monkeypatch.undo()
    assert client.get("/", follow_redirects=False).status_code == 303  # the session was dropped


def test_secure_cookies_over_https(settings, passwords: dict):
    from dataclasses import replace

    from entrypoints.bootstrap import build_web_app

    app = build_web_app(replace(settings, secure_cookies=True, secret_key="s" * 40))
    with TestClient(app=app, base_url="https://testserver.local") as client:
        response = login(client, rpps(1))
        cookies = response.headers.get_list("set-cookie")
        assert all("Secure" in c for c in cookies if c.startswith(("relais_session=", "csrftoken=")))
        assert "Strict-Transport-Security" in client.get("/").headers
        assert client.get("/").status_code == 200


def test_sessions_live_in_redis_when_configured(settings, passwords: dict):
    import socket
    from dataclasses import replace

    import pytest
    import redis

    from entrypoints.bootstrap import build_web_app

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    app = build_web_app(replace(settings, redis_url="redis://127.0.0.1:6379/15"))
    with TestClient(app=app) as client:
        login(client, rpps(1))
        session_id = client.cookies.get("relais_session")
        assert client.get("/").status_code == 200
        keys = redis.Redis.from_url("redis://127.0.0.1:6379/15").keys("relais_sessions*")
        assert any(session_id in k.decode() for k in keys)
        client.post("/logout", data={"_csrf_token": csrf_from(client.get("/").text)})
        keys = redis.Redis.from_url("redis://127.0.0.1:6379/15").keys("relais_sessions*")
        assert not any(session_id in k.decode() for k in keys)
