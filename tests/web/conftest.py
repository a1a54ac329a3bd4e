"""Web test fixtures: the app on the test database, a client, passwords, a login helper."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from adapters.credentials import Credentials
from adapters.settings import Settings
from application import Relais
from entrypoints.bootstrap import build_pool, build_web_app
from projections.runner import catch_up

PASSWORD = "correct horse battery"
CSRF_INPUT = re.compile(r'name="_csrf_token" value="([^"]+)"')


@pytest.fixture()
def app(settings: Settings) -> Litestar:
    return build_web_app(settings)


@pytest.fixture()
def client(app: Litestar) -> Iterator[TestClient]:
    with TestClient(app=app) as c:
        yield c


@pytest.fixture()
def credentials(settings: Settings) -> Iterator[Credentials]:
    pool = build_pool(settings, max_size=2)
    yield Credentials(pool)
    pool.close()


@pytest.fixture()
def passwords(world: dict, credentials: Credentials) -> dict:
    """Every practitioner of the world gets PASSWORD."""
    for key in ("requester", "recipient", "outsider", "auditor"):
        credentials.set_password(world[key], PASSWORD)
    return world


def csrf_from(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "no CSRF input in the page"
    return match.group(1)


def login(client: TestClient, login: str, password: str = PASSWORD, next: str = ""):
    """Fills the login form as a browser would (token from the page), without following redirects."""
    page = client.get("/login")
    data = {"login": login, "password": password, "_csrf_token": csrf_from(page.text)}
    if next:
        data["next"] = next
    return client.post("/login", data=data, follow_redirects=False)


@pytest.fixture()
def settle(relais: Relais, settings: Settings):
    """Brings the directory, inbox and access read models up to date with the log (no runner in tests)."""
    env = settings.eventsourcing_env()

    def run() -> None:
        for name in ("directory", "inbox", "access"):
            catch_up(name, env, relais)

    return run
