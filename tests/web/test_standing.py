"""Role or account changes in the directory take effect on the next request, not at the next login."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from adapters.settings import Settings
from application import Relais
from projections.runner import catch_up
from tests.conftest import rpps
from tests.web.conftest import csrf_from, login

HX = {"HX-Request": "true"}


@pytest.fixture()
def directory(relais: Relais, settings: Settings, client: TestClient):
    """Brings the directory read model up to date; the web's 5-second cache of standings is emptied, as if
    those seconds had passed (the cache itself is tested below)."""
    env = settings.eventsourcing_env()
    view = client.app.state.services.imaging.directory

    def settle() -> None:
        for name in ("directory", "inbox", "access"):
            catch_up(name, env, relais)
        view.forget_standings()

    return settle


def test_a_deactivated_practitioner_is_signed_out_at_the_next_request(client, passwords, relais, sent_dossier, directory):
    directory()
    login(client, rpps(2))
    assert client.get("/inbox/received").status_code == 200
    relais.deactivate_practitioner(practitioner_id=passwords["recipient"])
    directory()
    gone = client.get(f"/dossiers/{sent_dossier['dossier_id']}", follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"] == "/login?motif=desactive"
    page = client.get(gone.headers["location"])
    assert "Votre compte a été désactivé" in page.text
    again = client.get("/inbox/received", follow_redirects=False)  # the session is over, not only refused
    assert again.status_code == 303 and again.headers["location"].startswith("/login")
    assert "desactive" not in again.headers["location"]
    fragment = client.get("/inbox/received", headers=HX, follow_redirects=False)
    assert fragment.status_code == 401 and fragment.headers["HX-Redirect"].startswith("/login")


def test_a_withdrawn_role_is_refused_at_the_next_request_and_the_chooser_offers_the_others(
    client, passwords, relais, sent_dossier, directory,
):
    did = sent_dossier["dossier_id"]
    montpellier, neuro = passwords["montpellier"], passwords["neuro"]
    relais.set_membership(practitioner_id=passwords["recipient"], establishment_id=montpellier,
                          roles=["auditor", "clinician"], service_ids=[neuro])
    directory()
    login(client, rpps(2))  # clinician of Montpellier by default
    assert client.get(f"/dossiers/{did}").status_code == 200
    relais.set_membership(practitioner_id=passwords["recipient"], establishment_id=montpellier, roles=["auditor"],
                          service_ids=[neuro])
    directory()
    refused = client.get(f"/dossiers/{did}")
    assert refused.status_code == 403 and "ne vous est plus attribué" in refused.text
    assert client.get("/inbox/received").status_code == 403
    home = client.get("/")  # the context chooser stays open, saying why
    assert home.status_code == 200 and "ne vous est plus attribué" in home.text and f"{montpellier}|auditor" in home.text
    switched = client.post("/context", data={"context": f"{montpellier}|auditor", "_csrf_token": csrf_from(home.text)},
                           follow_redirects=False)
    assert switched.status_code == 303
    assert client.get(f"/audit/dossiers/{did}").status_code == 200
    directory()
    denied = [(a.practitioner_id, a.role, a.outcome) for a in client.app.state.services.access_log.for_dossier(did)]
    assert (passwords["recipient"], "clinician", "denied") in denied  # the refused page is traced


def test_an_ended_membership_is_refused_at_the_next_request(client, passwords, relais, sent_dossier, directory):
    directory()
    login(client, rpps(3))
    assert client.get("/dossiers/new").status_code == 200
    relais.end_membership(practitioner_id=passwords["outsider"], establishment_id=passwords["montpellier"])
    directory()
    refused = client.get("/dossiers/new")  # a page that asks nothing of the application: only the guard checks
    assert refused.status_code == 403 and "ne vous est plus attribué" in refused.text


def test_standings_are_read_once_per_five_seconds_at_most(client, passwords, relais, directory):
    directory()
    view = client.app.state.services.imaging.directory
    assert view.standing_ttl == 5.0
    before = view.standing(passwords["requester"])
    assert before is not None and before.active and before.holds(passwords["toulouse"], "clinician")
    relais.deactivate_practitioner(practitioner_id=passwords["requester"])
    catch_up("directory", client.app.state.services.settings.eventsourcing_env(), relais)
    assert view.standing(passwords["requester"]) == before  # within the five seconds: the cached standing
    view.forget_standings()
    assert view.standing(passwords["requester"]).active is False
    assert view.standing("00000000-0000-0000-0000-000000000000") is None  # not (yet) in the read model
