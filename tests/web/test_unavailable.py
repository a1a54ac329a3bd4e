"""A part the web depends on is out (Redis holding the sessions, the job queue): the user gets a
clear French 503 saying to retry, never a 500 « erreur interne »."""

from __future__ import annotations

from dataclasses import replace

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from adapters.jobs import JobsUnavailableError
from adapters.settings import Settings
from entrypoints.bootstrap import build_web_app
from tests.conftest import rpps
from tests.faults.servers import PrivateRedis
from tests.web.conftest import login
from web.errors import EXCEPTION_HANDLERS


def test_pages_answer_503_while_the_session_store_is_out(settings: Settings, passwords, tmp_path):
    redis = PrivateRedis(tmp_path / "redis").start()
    try:
        app = build_web_app(replace(settings, redis_url=redis.url))
        with TestClient(app=app) as client:
            assert login(client, rpps(1)).status_code == 303
            assert client.get("/inbox/received").status_code == 200
            redis.stop()
            page = client.get("/inbox/received", follow_redirects=False)
            assert page.status_code == 503, page.text[:300]
            assert "momentanément indisponible" in page.text
            assert page.headers.get("retry-after") == "5"
            fragment = client.get("/inbox/received", headers={"HX-Request": "true"}, follow_redirects=False)
            assert fragment.status_code == 503
            assert "momentanément indisponible" in fragment.text
            redis.start()  # back, empty: the session is gone, the user signs in again
            again = client.get("/inbox/received", follow_redirects=False)
            assert again.status_code == 303 and again.headers["location"].startswith("/login")
    finally:
        redis.stop()


@pytest.mark.parametrize("error", [JobsUnavailableError("file de tâches injoignable"), ConnectionRefusedError(111, "refused")])
def test_an_unavailable_dependency_is_a_503_not_an_internal_error(error: Exception):
    @get("/api/boom", sync_to_thread=False)
    def boom() -> None:
        raise error

    app = Litestar(route_handlers=[boom], exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app=app) as client:
        answer = client.get("/api/boom")
    assert answer.status_code == 503
    assert answer.json()["message"].startswith("Le service est momentanément indisponible")
    assert answer.headers.get("retry-after") == "5"
