"""/admin/mails: administrators only; the outbox's files, the deliveries pending or failed,
« Réessayer » (CSRF); others refused."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from html import unescape

import pytest
from litestar.testing import TestClient

from adapters.credentials import Credentials
from adapters.mail.senders import OutboxSender
from application import Relais
from entrypoints.bootstrap import build_pool
from tests.conftest import rpps
from tests.web.conftest import PASSWORD, csrf_from, login


@pytest.fixture()
def pool(settings):
    p = build_pool(settings, max_size=2)
    yield p
    p.close()


@pytest.fixture()
def admin(relais: Relais, passwords: dict, credentials: Credentials, settle) -> str:
    pid = relais.add_practitioner(rpps=rpps(8), family_name="Admin", given_name="Alix",
                                  establishment_id=passwords["montpellier"], roles=["admin"])
    credentials.set_password(pid, PASSWORD)
    settle()
    return rpps(8)


def mail_row(pool, practitioner: str, state: str, error: str | None = None, address: str = "x@chu.example") -> str:
    nid = str(uuid.uuid4())
    with pool.connection() as conn, conn.transaction():
        conn.execute(
            "INSERT INTO notifications (id, practitioner_id, dossier_id, number, kind, workflow, urgency, detail, occurred_at) "
            "VALUES (%s, %s, %s, %s, 'received', 'stroke_opinion', 'stat', %s, %s)",
            (nid, practitioner, str(uuid.uuid4()), "TD-" + nid[:10].upper().replace("-", "X"), json.dumps({}),
             datetime(2026, 12, 8, tzinfo=UTC)),
        )
        conn.execute(
            "INSERT INTO notification_mails (id, practitioner_id, address, state, attempts, last_error) "
            "VALUES (%s, %s, %s, %s, %s, %s)", (nid, practitioner, address, state, 8 if state == "failed" else 1, error),
        )
    return nid


def state_of(pool, nid: str) -> tuple[str, int]:
    with pool.connection() as conn:
        r = conn.execute("SELECT state, attempts FROM notification_mails WHERE id = %s", (nid,)).fetchone()
    return r["state"], r["attempts"]


def test_admin_sees_outbox_and_failed_deliveries_and_retries(
    client: TestClient, admin: str, passwords: dict, pool, settings,
) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "relais@localhost", "paul@chu.example", "[Relais] TD-X — Avis rendu (Normale)"
    message["Message-ID"] = "<0d6f1f0e-aaaa-4bbb-8ccc-000000000001@localhost>"
    message.set_content("Ouvrir le télédossier : http://127.0.0.1:8000/dossiers/1\n")
    eml = OutboxSender(settings.outbox).write(message)
    failed = mail_row(pool, passwords["recipient"], "failed", "451 <b>essayez plus tard</b>", "paul.durand@chu.example")
    pending = mail_row(pool, passwords["recipient"], "pending")
    elsewhere = mail_row(pool, passwords["requester"], "failed", "550 inconnu", "claire.martin@chu.example")

    assert login(client, admin).status_code == 303
    assert 'href="/admin/mails"' in client.get("/").text
    page = client.get("/admin/mails")
    assert page.status_code == 200
    html = page.text
    assert "451 &lt;b&gt;essayez plus tard&lt;/b&gt;" in html  # escaped
    text = unescape(html)
    assert "paul.durand@chu.example" in text and "En échec" in text and "En attente" in text
    assert "claire.martin@chu.example" in text  # the platform's: another establishment's member too
    assert eml.name in text and f"/admin/mails/{failed}/retry" in html and f"/admin/mails/{pending}/retry" not in html

    opened = client.get(f"/admin/mails/outbox/{eml.name}")
    assert opened.status_code == 200
    assert "paul@chu.example" in unescape(opened.text) and "Ouvrir le télédossier" in unescape(opened.text)
    assert client.get("/admin/mails/outbox/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert client.get("/admin/mails/outbox/nope.eml").status_code == 404

    token = csrf_from(html)
    assert client.post(f"/admin/mails/{failed}/retry", data={}).status_code == 403  # no CSRF token
    assert state_of(pool, failed) == ("failed", 8)
    done = client.post(f"/admin/mails/{failed}/retry", data={"_csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/admin/mails?relance=1"
    assert state_of(pool, failed) == ("pending", 0)
    sent = mail_row(pool, passwords["recipient"], "sent")
    assert client.post(f"/admin/mails/{sent}/retry", data={"_csrf_token": token}).status_code == 404
    assert state_of(pool, sent) == ("sent", 1)
    assert client.post(f"/admin/mails/{elsewhere}/retry", data={"_csrf_token": token}, follow_redirects=False).status_code == 303
    assert state_of(pool, elsewhere) == ("pending", 0)
    assert client.post(f"/admin/mails/{pending}/retry", data={"_csrf_token": token}).status_code == 404
    assert client.post("/admin/mails/pas-un-id/retry", data={"_csrf_token": token}).status_code == 404


def test_other_roles_refused(client: TestClient, admin: str, passwords: dict, pool) -> None:
    failed = mail_row(pool, passwords["recipient"], "failed", "550")
    assert client.get("/admin/mails", follow_redirects=False).status_code in (302, 303)
    for who in (rpps(2), rpps(4)):  # a clinician, an auditor
        client.cookies.clear()
        assert login(client, who).status_code == 303
        assert client.get("/admin/mails").status_code == 403
        token = csrf_from(client.get("/").text)
        assert client.post(f"/admin/mails/{failed}/retry", data={"_csrf_token": token}).status_code == 403
    assert state_of(pool, failed) == ("failed", 8)
