"""Exceptions become French pages, htmx fragments or JSON in one place; 500 never leaks."""

from __future__ import annotations

import logging

import pytest
from litestar import Litestar, get
from litestar.params import FromPath
from litestar.testing import TestClient

from application.errors import AlreadyExistsError, ConflictError, ForbiddenError, NotFoundError
from domain.errors import DossierClosedError, InvalidFieldError, NotAllowedError
from tests.conftest import rpps
from tests.web.conftest import login
from web.guards import PUBLIC, requires_role

RAISES = {
    "forbidden": (ForbiddenError("vous n'êtes pas destinataire de ce dossier"), 403),
    "not-allowed": (NotAllowedError("réponse réservée au destinataire"), 403),
    "not-found": (NotFoundError("dossier introuvable : 42"), 404),
    "conflict": (ConflictError("le dossier a changé depuis votre lecture"), 409),
    "exists": (AlreadyExistsError("le professionnel existe déjà"), 409),
    "state": (DossierClosedError("le dossier est clos"), 409),
    "invalid": (InvalidFieldError("question", "champ obligatoire"), 422),
}


@get("/test/raise/{kind:str}", opt={PUBLIC: True})
async def raise_kind(kind: FromPath[str]) -> str:
    raise RAISES[kind][0]


@get("/test/boom", opt={PUBLIC: True})
async def boom() -> str:
    raise RuntimeError("secret detail: password=hunter2 at /srv/relais")


@get("/api/test/boom", opt={PUBLIC: True})
async def api_boom() -> str:
    raise RuntimeError("secret detail: password=hunter2")


@get("/test/admin-only", guards=[requires_role("admin")])
async def admin_only() -> str:
    return "ok"


@pytest.fixture()
def client(app: Litestar):
    for handler in (raise_kind, boom, api_boom, admin_only):
        app.register(handler)
    with TestClient(app=app) as c:
        yield c


@pytest.mark.parametrize("kind", sorted(RAISES))
def test_errors_become_french_pages_with_their_status(client: TestClient, kind: str):
    exc, status = RAISES[kind]
    response = client.get(f"/test/raise/{kind}")
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert '<html lang="fr">' in response.text
    message = exc.message if isinstance(exc, InvalidFieldError) else str(exc)
    assert message.replace("'", "&#39;") in response.text


def test_htmx_requests_get_a_fragment_aimed_at_messages(client: TestClient):
    response = client.get("/test/raise/conflict", headers={"HX-Request": "true"})
    assert response.status_code == 409
    assert "<html" not in response.text
    assert 'role="alert"' in response.text and "Conflit" in response.text
    assert response.headers["HX-Retarget"] == "#messages"
    assert response.headers["HX-Reswap"] == "innerHTML"


def test_json_for_api_paths_and_json_clients(client: TestClient):
    response = client.get("/test/raise/not-found", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.json() == {"error": "Page ou élément introuvable", "message": "dossier introuvable : 42", "status": 404}


def test_unknown_route_is_a_french_404(client: TestClient):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "Page ou élément introuvable" in response.text


def test_internal_error_is_generic_logged_and_never_leaked(client: TestClient, caplog):
    with caplog.at_level(logging.ERROR, logger="relais.web.errors"):
        response = client.get("/test/boom")
    assert response.status_code == 500
    assert "Une erreur inattendue s'est produite".replace("'", "&#39;") in response.text
    assert "hunter2" not in response.text and "Traceback" not in response.text and "RuntimeError" not in response.text
    assert any(r.exc_info and "hunter2" in str(r.exc_info[1]) for r in caplog.records)
    api = client.get("/api/test/boom")
    assert api.status_code == 500 and "hunter2" not in api.text
    assert api.json()["status"] == 500


def test_requires_role_refuses_other_roles(client: TestClient, passwords: dict):
    assert client.get("/test/admin-only", follow_redirects=False).status_code == 303  # not logged in
    login(client, rpps(1))
    response = client.get("/test/admin-only")
    assert response.status_code == 403
    assert "Administrateur" in response.text


def test_method_not_allowed_is_french(client: TestClient):
    response = client.put("/health")
    assert response.status_code == 405
    assert response.json()["error"] == "Action non permise"
    page = client.request("DELETE", "/login")
    assert page.status_code == 405
    assert "Action non permise" in page.text
    assert "GET" in page.headers["allow"]
