"""An expired session: the login page says so, the user comes back to the page they were on (a
same-origin path only), htmx is sent to the login page as a whole page, the page warns before the
idle expiry and can keep the session alive; the drafts script is served and set up on every page."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from litestar.testing import TestClient

from tests.conftest import rpps
from tests.web.conftest import csrf_from, login
from web.session import COOKIE_NAME, IDLE_TIMEOUT

EXPIRED = "Votre session a expiré : reconnectez-vous, votre saisie a été conservée."


def forget_session(client: TestClient) -> None:
    """What the store does to a session left idle for IDLE_TIMEOUT: it is gone, the cookie stays."""
    session_id = client.cookies.get(COOKIE_NAME)
    assert session_id
    store = client.app.state.services.session_store
    with client.portal() as portal:
        portal.call(store.delete, session_id)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


EVIL = ["//evil.example/", "https://evil.example/", "/\\evil.example", "\\\\evil.example", "/\\/evil.example",
        "http:/evil.example", " //evil.example", "/\t/evil.example", "javascript:alert(1)", "evil.example"]


def test_next_never_leaves_the_site(client: TestClient, passwords: dict):
    for evil in EVIL:
        assert login(client, rpps(1), next=evil).headers["location"] == "/", evil
        client.post("/logout", data={"_csrf_token": csrf_from(client.get("/login").text)})
        assert f'value="{evil}"' not in client.get("/login", params={"next": evil}).text


def test_a_local_next_is_kept(client: TestClient, passwords: dict):
    assert login(client, rpps(1), next="/inbox/sent?q=dupont").headers["location"] == "/inbox/sent?q=dupont"


def test_an_idle_expired_session_says_so_and_comes_back_to_the_page(client: TestClient, passwords: dict):
    login(client, rpps(1))
    assert client.get("/inbox/sent").status_code == 200
    forget_session(client)
    response = client.get("/inbox/sent?q=x", follow_redirects=False)
    assert response.status_code == 303
    assert query_of(response.headers["location"]) == {"expiree": "1", "next": "/inbox/sent?q=x"}
    page = client.get(response.headers["location"])
    assert EXPIRED in page.text and 'data-session="expired"' in page.text
    signed_in = client.post("/login", data={"login": rpps(1), "password": "correct horse battery",
                                            "next": "/inbox/sent?q=x", "_csrf_token": csrf_from(page.text)},
                            follow_redirects=False)
    assert signed_in.headers["location"] == "/inbox/sent?q=x"


def test_a_signed_out_browser_is_not_told_its_session_expired(client: TestClient, passwords: dict):
    response = client.get("/inbox/sent", follow_redirects=False)
    assert "expiree" not in response.headers["location"]


def test_a_form_sent_after_expiry_comes_back_to_the_page_that_showed_it(client: TestClient, passwords: dict,
                                                                       sent_dossier: dict):
    login(client, rpps(2))
    page = f"/dossiers/{sent_dossier['dossier_id']}"
    token = csrf_from(client.get(page).text)
    forget_session(client)
    response = client.post(f"{page}/actions/give_opinion", data={"conclusion": "x", "_csrf_token": token},
                           headers={"Referer": f"http://testserver.local{page}"}, follow_redirects=False)
    assert response.status_code == 303
    assert query_of(response.headers["location"]) == {"expiree": "1", "next": page}


def test_a_page_shown_in_answer_to_a_form_comes_back_to_the_start_of_that_form(client: TestClient, passwords: dict):
    login(client, rpps(1))
    token = csrf_from(client.get("/dossiers/new").text)
    forget_session(client)
    response = client.post("/dossiers/new", data={"question": "Thrombectomie ?", "_csrf_token": token},
                           headers={"Referer": "http://testserver.local/dossiers/new/question"}, follow_redirects=False)
    assert query_of(response.headers["location"]) == {"expiree": "1", "next": "/dossiers/new"}


def test_a_referer_from_another_site_is_not_followed(client: TestClient, passwords: dict, sent_dossier: dict):
    login(client, rpps(2))
    page = f"/dossiers/{sent_dossier['dossier_id']}"
    token = csrf_from(client.get(page).text)
    forget_session(client)
    response = client.post(f"{page}/actions/give_opinion", data={"conclusion": "x", "_csrf_token": token},
                           headers={"Referer": f"https://evil.example{page}"}, follow_redirects=False)
    assert query_of(response.headers["location"]) == {"expiree": "1"}


def test_htmx_after_expiry_goes_to_the_login_page_as_a_whole_page(client: TestClient, passwords: dict, sent_dossier: dict):
    login(client, rpps(2))
    page = f"/dossiers/{sent_dossier['dossier_id']}"
    token = csrf_from(client.get(page).text)
    forget_session(client)
    response = client.post(
        f"{page}/actions/give_opinion", data={"conclusion": "x", "_csrf_token": token},
        headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver.local{page}", "x-csrftoken": token},
        follow_redirects=False,
    )
    assert response.status_code == 401 and response.text == ""
    assert query_of(response.headers["HX-Redirect"]) == {"expiree": "1", "next": page}


def test_the_keepalive_ping_renews_a_live_session_and_reports_a_gone_one(client: TestClient, passwords: dict):
    login(client, rpps(1))
    assert client.get("/session/ping").status_code == 204
    forget_session(client)
    gone = client.get("/session/ping", headers={"Accept": "application/json"})
    assert gone.status_code == 401 and gone.json()["expired"] is True


def test_pages_carry_the_warning_and_the_drafts_script(client: TestClient, passwords: dict):
    login(client, rpps(1))
    page = client.get("/dossiers/new").text
    assert f'data-idle-timeout="{IDLE_TIMEOUT}"' in page
    assert re.search(r'data-user="[0-9a-f-]{36}"', page)
    assert "Votre session expire dans 5 minutes" in page and "Rester connecté" in page
    assert '<script src="/static/drafts.js' in page
    assert "data-no-draft" in client.get("/login").text  # the password never goes to a draft
    script = client.get("/static/drafts.js")
    assert script.status_code == 200 and "sessionStorage" in script.text and "localStorage.setItem" not in script.text
