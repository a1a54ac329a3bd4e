"""Who may read a dossier: a recipient only through a send that was sent, on every read path.

Every state a send can end in, for the clinician it is (or was) addressed to: a send never sent
(cancelled or closed with its draft, or with a dossier sent to others; removed) never opens the
dossier; a send that was sent does (declined, cancelled, closed after sending), until it is
forwarded away. The page, the report, a document, the imaging page, the viewer and its images,
DICOMweb, the inbox tabs and the name search all follow that one rule.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread

from adapters.blobs import BlobStore
from adapters.dicom.receive import describe
from adapters.dicom.recording import recorder
from adapters.dicom.storage import InstanceStore
from application import Relais
from domain.dossier import Dossier
from domain.values import Actor
from projections.inbox_queries import TABS
from projections.runner import catch_up
from tests.conftest import PATIENT, rpps
from tests.web.conftest import PASSWORD, login

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_study  # noqa: E402

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
HX = {"HX-Request": "true"}
NAME = "Zébulon"  # the patient's birth name, shown upper case: ZÉBULON


def _to_neuro(relais: Relais, w: dict, did: str) -> str:
    """Addresses the recipient's team (Montpellier neuroradiology), the send the clinician rpps(2) reads through."""
    return relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                                    service_id=w["neuro"])


def _to_colleague(relais: Relais, w: dict, did: str) -> str:
    """Addresses another clinician of Montpellier by name (rpps(2) is not that recipient)."""
    return relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                                    practitioner_id=w["outsider"])


def _send(relais: Relais, w: dict, did: str) -> None:
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])


def _cancel(relais: Relais, w: dict, did: str) -> None:
    relais.cancel_dossier(dossier_id=did, actor_id=w["requester"], reason="Erreur de patient")


def cancelled_before_sending(relais: Relais, w: dict, did: str) -> None:
    _to_neuro(relais, w, did)
    _cancel(relais, w, did)


def addressed_never_sent(relais: Relais, w: dict, did: str) -> None:
    _to_neuro(relais, w, did)


def removed_before_sending(relais: Relais, w: dict, did: str) -> None:
    sid = _to_neuro(relais, w, did)
    relais.remove_recipient(dossier_id=did, actor_id=w["requester"], send_id=sid)
    _to_colleague(relais, w, did)
    _send(relais, w, did)


def cancelled_with_a_later_recipient_never_sent(relais: Relais, w: dict, did: str) -> None:
    _to_colleague(relais, w, did)
    _send(relais, w, did)
    _to_neuro(relais, w, did)  # added after sending, never sent
    _cancel(relais, w, did)


def closed_with_a_later_recipient_never_sent(relais: Relais, w: dict, did: str) -> None:
    sid = _to_colleague(relais, w, did)
    _send(relais, w, did)
    _to_neuro(relais, w, did)  # added after sending, never sent
    relais.give_opinion(dossier_id=did, actor_id=w["outsider"], send_id=sid, report="Pas de thrombectomie.")
    relais.close_dossier(dossier_id=did, actor_id=w["requester"], note="Merci")


def sent(relais: Relais, w: dict, did: str) -> None:
    _to_neuro(relais, w, did)
    _send(relais, w, did)


def declined(relais: Relais, w: dict, did: str) -> None:
    sid = _to_neuro(relais, w, did)
    _send(relais, w, did)
    relais.decline(dossier_id=did, actor_id=w["recipient"], send_id=sid, reason_code="unavailable")


def cancelled_after_sending(relais: Relais, w: dict, did: str) -> None:
    sent(relais, w, did)
    _to_colleague(relais, w, did)  # never sent: its recipient is not shown to rpps(2) either
    _cancel(relais, w, did)


def closed_after_answering(relais: Relais, w: dict, did: str) -> None:
    sid = _to_neuro(relais, w, did)
    _send(relais, w, did)
    relais.give_opinion(dossier_id=did, actor_id=w["recipient"], send_id=sid, report="Thrombectomie indiquée.")
    relais.close_dossier(dossier_id=did, actor_id=w["requester"], note="Merci")


def forwarded_away(relais: Relais, w: dict, did: str) -> None:
    sid = _to_neuro(relais, w, did)
    _send(relais, w, did)
    relais.forward(dossier_id=did, actor_id=w["recipient"], send_id=sid, to_practitioner_id=w["outsider"])


SCENARIOS: dict[str, tuple[Callable[[Relais, dict, str], None], bool]] = {
    "cancelled_before_sending": (cancelled_before_sending, False),
    "addressed_never_sent": (addressed_never_sent, False),
    "removed_before_sending": (removed_before_sending, False),
    "cancelled_with_a_later_recipient_never_sent": (cancelled_with_a_later_recipient_never_sent, False),
    "closed_with_a_later_recipient_never_sent": (closed_with_a_later_recipient_never_sent, False),
    "forwarded_away": (forwarded_away, False),
    "sent": (sent, True),
    "declined": (declined, True),
    "cancelled_after_sending": (cancelled_after_sending, True),
    "closed_after_answering": (closed_after_answering, True),
}


@pytest.fixture()
def dossier_with_data(relais: Relais, settings, passwords, tmp_path) -> dict:
    """A draft from Toulouse with a PDF document and a CT study attached (nothing addressed yet)."""
    w = passwords
    did = relais.create_dossier(
        actor_id=w["requester"], workflow="stroke_opinion", question="Thrombectomie ?", urgency="stat",
        consent="given", **(PATIENT | {"patient_birth_name": NAME}),
    )
    writer = BlobStore(settings.data_dir).writer()
    writer.write(PDF)
    blob = writer.finish()
    doc = relais.attach_document(dossier_id=did, actor_id=w["requester"], filename="irm.pdf",
                                 media_type=blob.media_type, size=blob.size, sha256=blob.sha256)
    study = write_study(tmp_path / "ct", series=1, per_series=1)
    store = InstanceStore(settings.dicom_root)
    items = []
    for f in study["files"]:
        ds = dcmread(f)
        store.put(w["toulouse"], study["study_uid"], ds.SOPInstanceUID, f.read_bytes())
        items.append(describe(ds, transfer_syntax=str(ds.file_meta.TransferSyntaxUID), size=f.stat().st_size))
    (update,) = recorder(relais)(w["toulouse"], items, {"kind": "dicom_store"})
    relais.attach_received_study(dossier_id=did, actor_id=w["requester"], study_id=update.study_id,
                                 confirm_identity=True)  # a study of another name: the requester confirms
    series_uid = str(dcmread(study["files"][0]).SeriesInstanceUID)
    return {"did": did, "doc": doc, "uid": study["study_uid"], "series": series_uid, "sop": study["sops"][0]}


def read_paths(d: dict) -> dict[str, str]:
    did, uid = d["did"], d["uid"]
    viewer = f"/dossiers/{did}/dicom/studies/{uid}"
    web = f"/dicomweb/dossiers/{did}/studies/{uid}"
    return {
        "page": f"/dossiers/{did}",
        "report": f"/dossiers/{did}/report",
        "document": f"/dossiers/{did}/documents/{d['doc']}",
        "imaging page": f"/dossiers/{did}/imaging/{uid}",
        "viewer": viewer + "/viewer",
        "thumbnail": f"{viewer}/series/{d['series']}/thumbnail.png",
        "image": f"{viewer}/instances/{d['sop']}/image.png",
        "download": viewer + "/download.zip",
        "qido studies": f"/dicomweb/dossiers/{did}/studies",
        "wado metadata": web + "/metadata",
        "wado instance": f"{web}/series/{d['series']}/instances/{d['sop']}",
        "wado rendered": f"{web}/series/{d['series']}/instances/{d['sop']}/rendered",
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_recipient_reads_only_through_a_send_that_was_sent(client, relais, settings, passwords, dossier_with_data,
                                                             scenario):
    w, did = passwords, dossier_with_data["did"]
    setup, readable = SCENARIOS[scenario]
    setup(relais, w, did)
    recipient = relais.actors.actor_for(practitioner_id=w["recipient"], role="clinician")
    dossier = relais.repository.get(__import__("uuid").UUID(did))
    assert isinstance(dossier, Dossier) and isinstance(recipient, Actor)
    assert dossier.may_read(recipient) is readable
    for name in ("directory", "inbox", "access"):
        catch_up(name, settings.eventsourcing_env(), relais)

    login(client, rpps(2))
    for path_name, path in read_paths(dossier_with_data).items():
        status = client.get(path, headers=HX if path_name == "viewer" else None).status_code
        assert (status == 200) is readable and status in (200, 403), (path_name, status)
    if readable:  # the page shows the recipient only sends that were sent
        sends = [s for s in relais.get_dossier(dossier_id=did, actor_id=w["requester"]).sends if s["sent_on"]]
        assert client.get(f"/dossiers/{did}").text.count('<section class="card send ') == len(sends)
    listed = {tab: "ZÉBULON" in client.get(f"/inbox/{tab}", headers=HX).text for tab in TABS}
    assert any(listed.values()) is readable, listed
    found = {tab: "ZÉBULON" in client.get(f"/inbox/{tab}?q=zebulon", headers=HX).text for tab in TABS}
    assert any(found.values()) is readable, found
    if not readable:  # not even the number of the dossier gives it away
        number = dossier.number
        assert all(number not in client.get(f"/inbox/{tab}?q={number}", headers=HX).text for tab in TABS)


# ------------------------------------------------------------------------------------ escalation

def _escalation_world(relais: Relais, credentials, w: dict) -> dict:
    """Montpellier's neuroradiology escalates to its on-call pool (one member, rpps(5)); a cardiologist
    (rpps(6)) is a member of another service of the same establishment."""
    pool = relais.add_service(establishment_id=w["montpellier"], code="astreinte-nrx", name="Astreinte neuroradiologie",
                              kind="on_call_pool")
    cardio = relais.add_service(establishment_id=w["montpellier"], code="cardio", name="Cardiologie")
    relais.set_service_escalation(establishment_id=w["montpellier"], service_code="neuroradio", to_service_code="astreinte-nrx")
    on_call = relais.add_practitioner(rpps=rpps(5), family_name="Roux", given_name="Inès", establishment_id=w["montpellier"],
                                      roles=["clinician"], service_ids=[pool])
    cardiologist = relais.add_practitioner(rpps=rpps(6), family_name="Blanc", given_name="Marc",
                                           establishment_id=w["montpellier"], roles=["clinician"], service_ids=[cardio])
    for pid in (on_call, cardiologist):
        credentials.set_password(pid, PASSWORD)
    return {"on_call": on_call, "cardiologist": cardiologist}


def _escalate(settings, did: str, sid: str) -> None:
    """The platform escalates the send, its accept deadline passed (a Relais whose clock is 3 h later)."""
    from datetime import UTC, datetime, timedelta

    later = Relais(env=settings.eventsourcing_env(), clock=lambda: datetime.now(UTC) + timedelta(hours=3))
    try:
        assert later.escalate_overdue(dossier_id=did, send_id=sid).to is not None
    finally:
        later.close()


ESCALATION_CASES = {  # scenario: {who: readable}; "…_later": the inbox written between each step (its UPDATE path)
    "escalated": {rpps(5): True, rpps(6): False, rpps(2): True},
    "escalated_later": {rpps(5): True, rpps(6): False, rpps(2): True},
    "escalated_then_forwarded": {rpps(5): False, rpps(6): False, rpps(2): False},
    "escalated_then_forwarded_later": {rpps(5): False, rpps(6): False, rpps(2): False},
}


@pytest.mark.parametrize("scenario", ESCALATION_CASES)
def test_the_escalation_target_reads_and_acts_like_a_recipient(client, relais, settings, passwords, credentials,
                                                              dossier_with_data, scenario):
    """One rule, Dossier.is_recipient: the on-call pool a send was escalated to sees it in its received tab
    and may act on it; a member of another service does not; after a forward the pool no longer sees it."""
    w, did = passwords, dossier_with_data["did"]
    people = _escalation_world(relais, credentials, w)
    sid = _to_neuro(relais, w, did)
    _send(relais, w, did)
    if scenario.endswith("_later"):
        catch_up("inbox", settings.eventsourcing_env(), relais)
    _escalate(settings, did, sid)
    if scenario.endswith("_later"):
        catch_up("inbox", settings.eventsourcing_env(), relais)
    if scenario.startswith("escalated_then_forwarded"):
        relais.forward(dossier_id=did, actor_id=w["recipient"], send_id=sid, to_practitioner_id=w["outsider"])
    dossier = relais.repository.get(__import__("uuid").UUID(did))
    assert isinstance(dossier, Dossier)
    ids = {rpps(5): people["on_call"], rpps(6): people["cardiologist"], rpps(2): w["recipient"]}
    for name in ("directory", "inbox", "access"):
        catch_up(name, settings.eventsourcing_env(), relais)

    for login_name, readable in ESCALATION_CASES[scenario].items():
        actor = relais.actors.actor_for(practitioner_id=ids[login_name], role="clinician")
        assert dossier.is_recipient(actor, sid) is readable, login_name
        client.cookies.clear()
        login(client, login_name)
        page = client.get(f"/dossiers/{did}")
        assert page.status_code == (200 if readable else 403), (login_name, page.status_code)
        received = client.get("/inbox/received", headers=HX).text
        assert ("ZÉBULON" in received) is readable, login_name
        if readable:
            assert "Prendre en charge" in page.text  # may act: the accept form is offered
            assert "escaladé" in received
