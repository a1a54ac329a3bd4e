"""Login throttling through HTTP: the warning before the last attempt, the temporary lock of one
address, the per-address 429, and, on a live server with real sockets, an attacker's address
locking only itself while the clinician signs in from another one, X-Forwarded-For ignored
unless its sender is a trusted proxy."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest
from litestar import Request
from litestar.testing import TestClient

from tests.conftest import rpps
from tests.live import PASSWORD as LIVE_PASSWORD
from tests.live import live_server
from tests.web.conftest import PASSWORD, login
from web.authentication import BAD_CREDENTIALS
from web.client_address import client_address

WARNING = "Attention : il vous reste une tentative avant le blocage temporaire"
BLOCKED = "Connexion temporairement bloquée"
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


def test_the_user_is_told_before_the_last_attempt(client: TestClient, passwords: dict):
    first = login(client, rpps(1), "wrong password!!")
    assert first.status_code == 401 and BAD_CREDENTIALS in first.text and WARNING not in first.text
    second = login(client, rpps(1), "wrong password!!")
    assert second.status_code == 401 and WARNING in second.text
    third = login(client, rpps(1), "wrong password!!")
    assert third.status_code == 401 and BLOCKED in third.text and "dans 30 secondes" in third.text
    refused = login(client, rpps(1), PASSWORD)  # the right password waits too, from this address
    assert refused.status_code == 401 and BLOCKED in refused.text


def test_an_unknown_account_answers_like_a_real_one(client: TestClient, passwords: dict):
    real = [login(client, rpps(1), "wrong password!!") for _ in range(3)]
    unknown = [login(client, rpps(99), "wrong password!!") for _ in range(3)]
    for a, b in zip(real, unknown, strict=True):
        assert a.status_code == b.status_code
        for text in (BAD_CREDENTIALS, WARNING, BLOCKED):
            assert (text in a.text) == (text in b.text)


def test_too_many_attempts_from_one_address_get_429_in_french(client: TestClient, passwords: dict):
    services = client.app.state.services
    frozen = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    services.credentials.clock = lambda: frozen  # every attempt at the same instant: no refill
    burst = int(services.credentials.policy.address_burst)
    for i in range(burst):  # many accounts, one address
        assert login(client, rpps(100 + i), "wrong password!!").status_code == 401
    refused = login(client, rpps(1), PASSWORD)
    assert refused.status_code == 429
    assert "Trop de tentatives de connexion depuis cette adresse" in refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert 'name="login"' in refused.text  # the form stays, to try again later
    assert client.get("/", follow_redirects=False).status_code == 303  # not signed in


def _request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 1234),
                    "query_string": b"", "root_path": "", "path_params": {}})


def test_the_client_address_believes_forwarded_for_only_from_trusted_proxies():
    assert client_address(_request("203.0.113.5", "1.2.3.4"), ()) == "203.0.113.5"
    assert client_address(_request("127.0.0.1", "1.2.3.4"), ()) == "127.0.0.1"  # none trusted by default
    assert client_address(_request("203.0.113.5", "1.2.3.4"), ("10.0.0.0/8",)) == "203.0.113.5"
    proxies = ("10.0.0.0/8",)
    assert client_address(_request("10.0.0.2", "1.2.3.4"), proxies) == "1.2.3.4"
    # a client cannot choose its address by adding hops: the last untrusted hop counts
    assert client_address(_request("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.9"), proxies) == "1.2.3.4"
    assert client_address(_request("10.0.0.2", "garbage, 10.0.0.9"), proxies) == "10.0.0.9"
    assert client_address(_request("2001:db8:1:2::5"), ()) == "2001:db8:1:2::/64"
    assert client_address(_request("::ffff:192.0.2.1"), ()) == "192.0.2.1"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("throttle")) as server:
        yield server


def _client(live, source: str) -> httpx.Client:
    return httpx.Client(base_url=live.base, transport=httpx.HTTPTransport(local_address=source), timeout=30)


def _post_login(http: httpx.Client, login: str, password: str, forwarded: str | None = None) -> httpx.Response:
    token = CSRF.search(http.get("/login").text)
    assert token
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return http.post("/login", data={"login": login, "password": password, "_csrf_token": token.group(1)},
                     headers=headers, follow_redirects=False)


def test_live_an_attacker_address_locks_only_itself(live):
    with _client(live, "127.0.0.2") as attacker, _client(live, "127.0.0.3") as clinician:
        for _ in range(6):  # more than the old account-wide lock (5 failures) needed
            _post_login(attacker, rpps(2), "wrong password!!")
        signed_in = _post_login(clinician, rpps(2), LIVE_PASSWORD)  # from their own workstation
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
        assert "Paul DURAND" in clinician.get("/").text
        assert BLOCKED in _post_login(attacker, rpps(2), LIVE_PASSWORD).text  # the attacker still waits


def test_live_forwarded_for_is_ignored_without_trusted_proxies(live):
    with _client(live, "127.0.0.1") as attacker:  # loopback, where uvicorn would believe X-Forwarded-For
        for i in range(3):
            _post_login(attacker, rpps(1), "wrong password!!", forwarded=f"192.0.2.{i + 1}")
        again = _post_login(attacker, rpps(1), LIVE_PASSWORD, forwarded="192.0.2.99")
        assert again.status_code == 401 and BLOCKED in again.text
