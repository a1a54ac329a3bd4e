"""The dossier page's conversation: a send's thread from both sides, the complement request shown where the
requester acts and answered with a document, documents added after sending, an imaging transfer's receipt."""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest
from litestar.testing import TestClient
from pydicom import dcmread

from adapters.blobs import BlobStore
from adapters.dicom.receive import describe
from adapters.dicom.recording import recorder
from adapters.dicom.storage import InstanceStore
from application import Relais
from tests.conftest import PATIENT, rpps
from tests.dicomdata import write_study
from tests.peers import free_port
from tests.web.conftest import csrf_from, login

HX = {"HX-Request": "true"}
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def as_user(client: TestClient, n: int) -> str:
    """Signs in practitioner n (1 requester, 2 recipient, 3 outsider); the CSRF token of the session."""
    client.cookies.clear()
    assert login(client, rpps(n)).status_code == 303
    return csrf_from(client.get("/login").text)


def version(relais: Relais, did: str, who: str) -> int:
    return relais.get_dossier(dossier_id=did, actor_id=who).version


def multipart(
    client: TestClient, csrf: str | None, url: str, fields: dict[str, Any], files: tuple[tuple[str, bytes], ...] = (),
) -> Any:
    """A multipart form as htmx sends it (the CSRF token in its header); an empty file part when no file."""
    headers = HX | ({"x-csrftoken": csrf} if csrf else {})
    parts = [("file", (name, body, "application/pdf")) for name, body in files] or [("file", ("", b"", "application/octet-stream"))]
    return client.post(url, headers=headers, data={k: str(v) for k, v in fields.items()}, files=parts)


def thread(relais: Relais, did: str, who: str) -> list[dict]:
    ws = relais.open_dossier(dossier_id=did, actor_id=who)
    return list(ws.dossier.messages)


@pytest.fixture()
def dossier(relais: Relais, passwords: dict, settings) -> dict:
    """A stroke dossier with one document, sent from Toulouse to Montpellier's neuroradiology."""
    did = relais.create_dossier(actor_id=passwords["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                                urgency="stat", consent="given", imaging_source="none", **PATIENT)
    writer = BlobStore(settings.data_dir).writer()
    writer.write(PDF)
    blob = writer.finish()
    doc = relais.attach_document(dossier_id=did, actor_id=passwords["requester"], filename="irm.pdf",
                                 media_type=blob.media_type, size=blob.size, sha256=blob.sha256)
    sid = relais.address_recipient(dossier_id=did, actor_id=passwords["requester"], establishment_id=passwords["montpellier"],
                                   service_id=passwords["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=passwords["requester"])
    return {"did": did, "sid": sid, "doc": doc}


def test_the_complement_request_is_shown_where_the_requester_acts_and_answered_with_a_document(client, relais, passwords, dossier):
    """Regression: the specialist's question was only a line of the history sidebar, answered by text alone."""
    did, sid, w = dossier["did"], dossier["sid"], passwords
    relais.request_complement(dossier_id=did, actor_id=w["recipient"], send_id=sid,
                              message="Merci de joindre le scanner\net la créatinine <b>récente</b>")
    csrf = as_user(client, 1)
    page = client.get(f"/dossiers/{did}").text
    workspace = page[page.index('id="workspace"'):page.index('class="card timeline-card"')]  # not the history
    top = workspace[:workspace.index('class="columns"')]
    assert "complement-pending" in top and "Merci de joindre le scanner<br>et la créatinine &lt;b&gt;récente&lt;/b&gt;" in top
    answer = workspace[workspace.index(f'id="answer-{sid}"'):]
    assert f'action="/dossiers/{did}/sends/{sid}/complement"' in answer and 'type="file"' in answer
    r = multipart(client, csrf, f"/dossiers/{did}/sends/{sid}/complement",
                  {"message": "Voici le scanner", "form_token": secrets.token_urlsafe(12),
                   "expected_version": version(relais, did, w["requester"])}, (("scanner.pdf", PDF),))
    assert r.status_code == 200, r.text
    assert "Complément envoyé au destinataire." in r.text and "complement-pending" not in r.text
    d = relais.get_dossier(dossier_id=did, actor_id=w["requester"])
    assert d.sends[0]["state"] == "in_progress"
    new_doc = next(x for x in d.documents if x["filename"] == "scanner.pdf")
    answer_msg = thread(relais, did, w["requester"])[-1]
    assert answer_msg["kind"] == "complement_answer" and answer_msg["document_ids"] == [new_doc["document_id"]]
    # the recipient sees the answer and its document in the send's thread
    as_user(client, 2)
    page = client.get(f"/dossiers/{did}").text
    part = page[page.index(f'id="thread-{sid}"'):]
    assert "Réponse au complément" in part and "Voici le scanner" in part
    assert f'href="/dossiers/{did}/documents/{new_doc["document_id"]}"' in part and "scanner.pdf" in part
    assert client.get(f"/dossiers/{did}/documents/{new_doc['document_id']}").content == PDF


def test_both_sides_write_in_the_thread_with_files_and_documents(client, relais, passwords, dossier):
    did, sid, w = dossier["did"], dossier["sid"], passwords
    csrf = as_user(client, 1)
    r = multipart(client, csrf, f"/dossiers/{did}/sends/{sid}/messages",
                  {"text": "Bilan joint.\nÀ voir <script>x</script>", "form_token": secrets.token_urlsafe(12),
                   "expected_version": version(relais, did, w["requester"])}, (("bilan.pdf", PDF),))
    assert r.status_code == 200, r.text
    assert "Message envoyé." in r.text and "Bilan joint.<br>À voir &lt;script&gt;x&lt;/script&gt;" in r.text
    (m,) = thread(relais, did, w["requester"])
    bilan = next(x for x in relais.get_dossier(dossier_id=did, actor_id=w["requester"]).documents if x["filename"] == "bilan.pdf")
    assert m["kind"] == "message" and m["document_ids"] == [bilan["document_id"]] and m["actor"]["practitioner_id"] == w["requester"]
    # the recipient answers, pointing to a document of the dossier (no upload on its side)
    csrf = as_user(client, 2)
    page = client.get(f"/dossiers/{did}").text
    assert "bilan.pdf" in page[page.index(f'id="thread-{sid}"'):]
    assert f'name="document:{dossier["doc"]}"' in page
    r = multipart(client, csrf, f"/dossiers/{did}/sends/{sid}/messages",
                  {"text": "Vu, merci.", f"document:{dossier['doc']}": "1", "form_token": secrets.token_urlsafe(12),
                   "expected_version": version(relais, did, w["requester"])})
    assert r.status_code == 200, r.text
    last = thread(relais, did, w["requester"])[-1]
    assert last["text"] == "Vu, merci." and last["document_ids"] == [dossier["doc"]] and last["actor"]["practitioner_id"] == w["recipient"]


def test_a_third_party_is_refused_and_traced(client, relais, passwords, dossier, settle):
    did, sid, w = dossier["did"], dossier["sid"], passwords
    before = version(relais, did, w["requester"])
    csrf = as_user(client, 3)
    r = multipart(client, csrf, f"/dossiers/{did}/sends/{sid}/messages",
                  {"text": "Je m'invite", "form_token": secrets.token_urlsafe(12), "expected_version": before}, (("x.pdf", PDF),))
    assert r.status_code == 403, r.text
    assert version(relais, did, w["requester"]) == before
    settle()
    denied = [(a.kind, a.target) for a in client.app.state.services.access_log.for_dossier(did) if a.outcome == "denied"]
    assert ("command", "post_message") in denied


def test_without_the_csrf_token_nothing_is_posted(client, relais, passwords, dossier):
    did, sid, w = dossier["did"], dossier["sid"], passwords
    before = version(relais, did, w["requester"])
    as_user(client, 1)
    r = multipart(client, None, f"/dossiers/{did}/sends/{sid}/messages",
                  {"text": "Bonjour", "form_token": secrets.token_urlsafe(12), "expected_version": before})
    assert r.status_code == 403
    assert version(relais, did, w["requester"]) == before


def test_the_same_message_sent_twice_is_posted_once(client, relais, passwords, dossier):
    """A double click: the second request carries the same form token (files included)."""
    did, sid, w = dossier["did"], dossier["sid"], passwords
    csrf = as_user(client, 1)
    form = {"text": "Une fois", "form_token": secrets.token_urlsafe(12), "expected_version": version(relais, did, w["requester"])}
    for _ in range(2):
        r = multipart(client, csrf, f"/dossiers/{did}/sends/{sid}/messages", form, (("cr.pdf", PDF),))
        assert r.status_code == 200, r.text
    assert [m["text"] for m in thread(relais, did, w["requester"])] == ["Une fois"]
    assert [x["filename"] for x in relais.get_dossier(dossier_id=did, actor_id=w["requester"]).documents] == ["irm.pdf", "cr.pdf"]


def test_a_message_points_only_to_the_dossiers_documents(client, relais, passwords, dossier):
    did, sid, w = dossier["did"], dossier["sid"], passwords
    csrf = as_user(client, 1)
    before = version(relais, did, w["requester"])
    foreign = "00000000-0000-4000-8000-000000000001"
    r = multipart(client, csrf, f"/dossiers/{did}/sends/{sid}/messages",
                  {"text": "Voir", f"document:{foreign}": "1", "form_token": secrets.token_urlsafe(12), "expected_version": before})
    assert r.status_code == 400, r.text
    assert "document inconnu" in r.text
    r = multipart(client, csrf, f"/dossiers/{did}/sends/{sid}/messages",
                  {"text": "", "form_token": secrets.token_urlsafe(12), "expected_version": before})
    assert r.status_code == 422 and "message vide" in r.text
    assert version(relais, did, w["requester"]) == before and thread(relais, did, w["requester"]) == []


def test_a_stale_message_is_not_posted_and_its_text_is_kept(client, relais, passwords, dossier):
    did, sid, w = dossier["did"], dossier["sid"], passwords
    csrf = as_user(client, 1)
    shown = version(relais, did, w["requester"])
    relais.accept(dossier_id=did, actor_id=w["recipient"], send_id=sid)  # meanwhile
    r = multipart(client, csrf, f"/dossiers/{did}/sends/{sid}/messages",
                  {"text": "Texte à garder", "form_token": secrets.token_urlsafe(12), "expected_version": shown})
    assert r.status_code == 409
    assert "Texte à garder</textarea>" in r.text and "Ce dossier a changé" in r.text
    assert thread(relais, did, w["requester"]) == []


def test_documents_added_after_sending_reach_the_recipient(client, relais, passwords, dossier):
    did, w = dossier["did"], passwords
    csrf = as_user(client, 1)
    page = client.get(f"/dossiers/{did}").text
    assert f'action="/dossiers/{did}/attachments"' in page
    r = multipart(client, csrf, f"/dossiers/{did}/attachments",
                  {"description": "Biologie du jour", "form_token": secrets.token_urlsafe(12),
                   "expected_version": version(relais, did, w["requester"])},
                  (("biologie.pdf", PDF),))
    assert r.status_code == 200, r.text
    as_user(client, 2)
    page = client.get(f"/dossiers/{did}").text
    assert "biologie.pdf" in page and "Biologie du jour" in page
    assert f'action="/dossiers/{did}/attachments"' not in page  # the recipient adds none
    history = relais.open_dossier(dossier_id=did, actor_id=w["recipient"]).history
    assert history[-1].event == "DocumentAttached" and history[-1].data["document"]["filename"] == "biologie.pdf"


def post_action(client: TestClient, csrf: str, relais: Relais, did: str, action: str, reader: str, **data: str) -> Any:
    form = {"expected_version": str(version(relais, did, reader)), "_csrf_token": csrf} | data
    return client.post(f"/dossiers/{did}/actions/{action}", data=form, headers=HX)


def test_an_imaging_transfer_is_acknowledged_by_its_recipient_and_closes(client, relais, passwords, dossier):
    w = passwords
    did = relais.create_dossier(actor_id=w["requester"], workflow="imaging_transfer", question="Pour le dossier du patient",
                                consent="given", imaging_source="none", **PATIENT)
    sid = relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                                   service_id=w["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])
    csrf = as_user(client, 1)
    refused = post_action(client, csrf, relais, did, "acknowledge_receipt", w["requester"], send_id=sid)
    assert refused.status_code == 403, refused.text
    csrf = as_user(client, 2)
    page = client.get(f"/dossiers/{did}").text
    assert "Accuser réception" in page and "Rendre l'avis" not in page and "Prendre en charge</button>" not in page
    # an opinion workflow's recipient is not offered the receipt, and cannot record one
    other = client.get(f"/dossiers/{dossier['did']}").text
    assert "Accuser réception" not in other and "Rendre l'avis" in other
    wrong = post_action(client, csrf, relais, dossier["did"], "acknowledge_receipt", w["requester"], send_id=dossier["sid"])
    assert wrong.status_code in (409, 422) and relais.get_dossier(dossier_id=dossier["did"], actor_id=w["requester"]).state != "closed"
    done = post_action(client, csrf, relais, did, "acknowledge_receipt", w["requester"], send_id=sid, note="Importé au PACS")
    assert done.status_code == 200, done.text
    assert "Réception accusée" in done.text
    d = relais.get_dossier(dossier_id=did, actor_id=w["requester"])
    assert d.state == "closed" and d.sends[0]["state"] == "answered" and d.sends[0]["receipt"]["note"] == "Importé au PACS"
    assert "Accuser réception" not in done.text
    # the receipt and its report are on the page of both sides (the report was only shown under an opinion)
    for reader in (2, 1):
        as_user(client, reader)
        page = client.get(f"/dossiers/{did}").text
        assert "Réception accusée par" in page and "Importé au PACS" in page
        assert f"/dossiers/{did}/sends/{sid}/report.pdf" in page


def test_the_complement_answer_form_is_only_the_requesters(client, relais, passwords, dossier):
    did, sid, w = dossier["did"], dossier["sid"], passwords
    relais.request_complement(dossier_id=did, actor_id=w["recipient"], send_id=sid, message="Le scanner ?")
    csrf = as_user(client, 2)
    page = client.get(f"/dossiers/{did}").text
    assert "complement-pending" not in page and f'id="answer-{sid}"' not in page
    assert re.search(r"Demande de complément</strong>", page)  # the recipient sees its request in the thread
    r = multipart(client, csrf, f"/dossiers/{did}/sends/{sid}/complement",
                  {"message": "Moi-même", "form_token": secrets.token_urlsafe(12),
                   "expected_version": version(relais, did, w["requester"])})
    assert r.status_code == 403


def test_the_receipt_offers_the_export_to_the_recipients_pacs(client, relais, passwords, settings, settle, tmp_path):
    """With a PACS configured for its establishment, the recipient of an imaging transfer may export each study
    before acknowledging receipt; without one, only the receipt is offered."""
    w = passwords
    data = write_study(tmp_path / "ct", series=1, per_series=1, accession="ACCTRANSFER")
    store, items = InstanceStore(settings.dicom_root), []
    for f in data["files"]:
        ds = dcmread(f)
        store.put(w["toulouse"], data["study_uid"], ds.SOPInstanceUID, f.read_bytes())
        items.append(describe(ds, transfer_syntax=str(ds.file_meta.TransferSyntaxUID), size=f.stat().st_size))
    (update,) = recorder(relais)(w["toulouse"], items, {"kind": "dicom_store"})
    did = relais.create_dossier(actor_id=w["requester"], workflow="imaging_transfer", question="Suite de soins",
                                consent="given", imaging_source="dicom_store", **PATIENT)
    relais.attach_received_study(dossier_id=did, actor_id=w["requester"], study_id=update.study_id)
    relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"], service_id=w["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])
    as_user(client, 2)
    page = client.get(f"/dossiers/{did}").text
    assert "Accuser réception" in page and "Exporter vers le PACS" not in page
    relais.add_node(aet="MTP_PACS", host="127.0.0.1", port=free_port(), establishment_id=w["montpellier"], kind="pacs")
    settle()  # the directory read model knows the node
    page = client.get(f"/dossiers/{did}").text
    assert "Exporter vers le PACS" in page and "<option>MTP_PACS</option>" in page
    assert f'hx-post="/dossiers/{did}/dicom/studies/{data["study_uid"]}/export"' in page
