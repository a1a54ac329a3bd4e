"""Every route of the web application that shows patient data leaves an Access event.

The routes are read from the application itself (`app.routes`): a route added without tracing
fails here until it is either called below (and traced) or put in ALLOWED with the reason it
shows no patient data. Each route is called once as a user allowed to read, on dossiers with a
patient, a document and a study, and must have recorded at least one granted Access on that
dossier by that user. Images are traced once per user, study and kind of read per minute
(application/study_reads.py): the window is set to 0 here so that every read counts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from pydicom import dcmread

from adapters.blobs import BlobStore
from adapters.dicom.receive import describe
from adapters.dicom.recording import recorder
from adapters.dicom.storage import InstanceStore
from application import Relais
from projections.runner import catch_up
from tests.conftest import PATIENT, rpps
from tests.peers import free_port
from tests.web.conftest import csrf_from, login

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_study  # noqa: E402

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
HX = {"HX-Request": "true"}
SKIP_METHODS = {"OPTIONS", "HEAD"}

# Routes that show no patient data of a dossier, and why. Deciding: a *list* (inbox, search results)
# is not a read of a dossier — it shows who the rows are about so that the user can choose; opening
# one (its page, report, documents, images, trail) is the read, and is traced.
ALLOWED = {
    ("GET", "/login"): "sign-in form",
    ("POST", "/login"): "sign-in",
    ("POST", "/logout"): "sign-out",
    ("GET", "/"): "home: the establishment/role choice, or a redirect to the inbox or the audit",
    ("POST", "/context"): "switches the session's establishment and role",
    ("GET", "/health"): "liveness and database check, no data",
    ("GET", "/session/ping"): "keeps the session alive, empty answer",
    ("GET", "/static/{file_path:path}"): "CSS, JavaScript, vendored htmx",
    ("GET", "/inbox/{tab:str}"): "the inbox list: names to choose a dossier by, not a read of one (opening it is)",
    ("GET", "/inbox/stream"): "server-sent events saying a dossier changed (ids, versions), no patient data",
    ("GET", "/audit"): "the auditor's search: a result list like the inbox (opening a dossier's trail is traced)",
    ("GET", "/stats"): "statistics: no patient data",
    ("GET", "/stats/export.json"): "statistics: no patient data",
    ("GET", "/stats/export.csv"): "statistics: no patient data",
    ("GET", "/dossiers/new"): "a blank form",
    ("POST", "/dossiers/new/{step:str}"): "the first steps echo what the user typed; nothing stored is shown",
    ("POST", "/dossiers/new"): "creates the draft (its Created event) and redirects to it (that page is traced)",
    ("GET", "/directory/search"): "the directory (establishments, teams, practitioners)",
    ("GET", "/communes"): "the commune and country list (public reference data) for the birthplace field, no patient data",
    ("GET", "/dossiers/{dossier_id:str}/forward-targets"): "the directory, to forward to",
    ("GET", "/dossiers/{dossier_id:str}/edit/version"): "the draft step form's version number, no patient data",
    ("GET", "/dossiers/{dossier_id:str}/dicom/pacs/progress"):
        "a retrieve's counters (images expected/received, a status), polled every second: no patient data",
    ("POST", "/dossiers/{dossier_id:str}/dicom/pacs/retrieve"):
        "starts the retrieve job (recorded as the study's RetrieveRecorded) and answers its counters",
    ("GET", "/live"): "the page's live stream: dossier ids, notification kinds and counts, no patient data",
    ("GET", "/notifications"): "the notification centre: dossier numbers, workflows, urgencies, practitioners' names "
                               "(notifications hold no patient data: tests/projections/test_notifications.py)",
    ("GET", "/notifications/favicon.svg"): "the favicon with the unread count",
    ("GET", "/notifications/{notification_id:str}/open"): "marks one read and redirects to its dossier (that page is traced)",
    ("POST", "/notifications/{notification_id:str}/read"): "marks one's own notification read",
    ("POST", "/notifications/read-all"): "marks one's own notifications read",
    ("GET", "/preferences/notifications"): "one's own notification preferences",
    ("POST", "/preferences/notifications"): "saves one's own notification preferences and absence",
    ("GET", "/admin/mails"): "notification mails' delivery states: addresses, dossier numbers, errors, no patient data",
    ("GET", "/admin/mails/outbox/{name:str}"): "a notification mail as written to the outbox: no health data by "
                                               "construction (tests/adapters/test_mail.py greps every kind)",
    ("POST", "/admin/mails/{mail_id:str}/retry"): "retries a failed notification mail",
    ("POST", "/dossiers/{dossier_id:str}/milestones"):
        "records a milestone's time and redirects to the dossier page (that page is traced; a refused input "
        "shows the page again through the same traced read)",
    ("GET", "/mdt"): "MDT sessions list: dates, places, counts of dossiers, no patient data",
    ("GET", "/mdt/sessions/new"): "a blank form to schedule an MDT session",
    ("POST", "/mdt/sessions"): "schedules an MDT session and redirects to it (that page is traced)",
    ("POST", "/mdt/register"): "registers a dossier to an MDT session and redirects to the session (that page is traced)",
    ("POST", "/mdt/sessions/{session_id:str}/withdraw/{dossier_id:str}"):
        "withdraws a dossier from an MDT session's agenda: the session shown again no longer lists it (the other "
        "dossiers it lists are traced as on the session page)",
}


def accesses(relais: Relais, dossier_id: str, practitioner_id: str) -> int:
    """Granted Access events of this practitioner on this dossier."""
    n = 0
    for note in relais.recorder.select_notifications(1, 10_000_000, topics=["relais:Access.Created"]):
        e = relais.mapper.to_domain_event(note)
        if e.dossier_id == dossier_id and e.outcome == "granted" and e.actor.get("practitioner_id") == practitioner_id:
            n += 1
    return n


def _study(relais: Relais, settings: Any, establishment: str, folder: Path, accession: str) -> dict:
    data = write_study(folder, series=1, per_series=2, accession=accession)
    store = InstanceStore(settings.dicom_root)
    items = []
    for f in data["files"]:
        ds = dcmread(f)
        store.put(establishment, data["study_uid"], ds.SOPInstanceUID, f.read_bytes())
        items.append(describe(ds, transfer_syntax=str(ds.file_meta.TransferSyntaxUID), size=f.stat().st_size))
    (update,) = recorder(relais)(establishment, items, {"kind": "dicom_store"})
    data["study_id"] = update.study_id
    data["series_uid"] = str(dcmread(data["files"][0]).SeriesInstanceUID)
    return data


@pytest.fixture()
def dossiers(relais: Relais, settings, passwords, tmp_path) -> dict:
    """`sent`: Toulouse → Montpellier neuroradiology, with a PDF and a CT study; `draft`: another
    draft of the requester with a study; a PACS and a node (nobody listening) for both sides."""
    w = passwords
    writer = BlobStore(settings.data_dir).writer()
    writer.write(PDF)
    blob = writer.finish()
    out: dict[str, Any] = {}
    for name in ("sent", "draft"):
        did = relais.create_dossier(actor_id=w["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                                    urgency="stat", consent="given", imaging_source="dicom_store", **PATIENT)
        doc = relais.attach_document(dossier_id=did, actor_id=w["requester"], filename="irm.pdf",
                                     media_type=blob.media_type, size=blob.size, sha256=blob.sha256)
        study = _study(relais, settings, w["toulouse"], tmp_path / name, f"ACC{name.upper()}")
        relais.attach_received_study(dossier_id=did, actor_id=w["requester"], study_id=study["study_id"])
        out[name] = {"did": did, "doc": doc, "study": study}
    sent = out["sent"]["did"]
    out["sent"]["send_id"] = relais.address_recipient(dossier_id=sent, actor_id=w["requester"],
                                                      establishment_id=w["montpellier"], service_id=w["neuro"])
    relais.send_dossier(dossier_id=sent, actor_id=w["requester"])
    out["spare"] = _study(relais, settings, w["toulouse"], tmp_path / "spare", "ACCSPARE")  # received, not attached
    port = free_port()
    relais.add_node(aet="TLSE_PACS", host="127.0.0.1", port=port, establishment_id=w["toulouse"], kind="pacs")
    relais.add_node(aet="MTP_PACS", host="127.0.0.1", port=port, establishment_id=w["montpellier"], kind="pacs")
    for name in ("directory", "inbox", "access", "imaging"):
        catch_up(name, settings.eventsourcing_env(), relais)
    return out


Call = Callable[[TestClient, dict], Any]


def _get(path: str, **params: str) -> Call:
    return lambda c, x: c.get(path.format(**x), params={k: v.format(**x) for k, v in params.items()}, headers=HX)


def _post(path: str, version_of: str = "", **data: str) -> Call:
    """A form posted as the browser does: the session's CSRF token, and the version of dossier
    `version_of` read beforehand (not traced) when the form carries one."""
    def call(c: TestClient, x: dict) -> Any:
        form = {k: v.format(**x) for k, v in data.items()} | {"_csrf_token": x["csrf"]}
        if version_of:
            form["expected_version"] = _version(x, version_of)
        return c.post(path.format(**x), data=form, headers=HX)
    return call


def _version(x: dict, dossier: str) -> str:
    """The version of dossier `dossier` the page would show, read from the application (not traced)."""
    relais: Relais = x["relais"]
    return str(relais.get_dossier(dossier_id=x[dossier], actor_id=x["world"]["requester"]).version)


def _upload(path: str, field: str, filename: str, content: Callable[[dict], bytes], media_type: str, version_of: str = "") -> Call:
    def call(c: TestClient, x: dict) -> Any:
        return c.post(path.format(**x), headers=HX | {"x-csrftoken": x["csrf"]}, files={field: (filename, content(x), media_type)},
                      data={"expected_version": _version(x, version_of)} if version_of else None)
    return call


def _import_review(c: TestClient, x: dict) -> dict:
    """Prepares the confirmation: files uploaded, their review page's URL (that upload is traced on its own)."""
    review = _upload("/dossiers/{draft}/dicom/import", "files", "ct.dcm", lambda x: x["import_bytes"], "application/dicom")(c, x)
    return {"review_url": next(p for p in review.text.split('"') if p.startswith(f"/dossiers/{x['draft']}/dicom/import/"))}


def _import_confirm(c: TestClient, x: dict) -> Any:
    return c.post(x["review_url"], headers=HX | {"x-csrftoken": x["csrf"]},
                  data={"study_uids": x["import_uid"], "confirm_identity": "yes", "expected_version": _version(x, "draft")})


def _patient_accesses(c: TestClient, x: dict) -> Any:
    """The accesses to the patient's data, the identity chosen as the page's search offers it."""
    (p,) = c.app.state.services.access_log.patients("dupont")
    return c.get("/audit/patients", params={"q": "dupont", "birth_name": p.birth_name, "first_names": p.first_names,
                                            "birth_date": p.birth_date.isoformat()})


def _remove_recipient(c: TestClient, x: dict) -> Any:
    relais: Relais = x["relais"]
    d = relais.get_dossier(dossier_id=x["draft"], actor_id=x["world"]["requester"])
    pending = next(s["send_id"] for s in d.sends if s["state"] == "pending")
    return _post(f"/dossiers/{{draft}}/recipients/{pending}/remove", "draft")(c, x)


def _message(c: TestClient, x: dict) -> Any:
    """A message of the thread (multipart: files may go with it; none here)."""
    return c.post("/dossiers/{sent}/sends/{send_id}/messages".format(**x), headers=HX | {"x-csrftoken": x["csrf"]},
                  files={"file": ("", b"", "application/octet-stream")},
                  data={"text": "Bonjour", "expected_version": _version(x, "sent")})


def _held(c: TestClient, x: dict) -> dict:
    """A dossier sent, on which the recipient asked a complement (prepared as the application, not traced)."""
    relais: Relais = x["relais"]
    w = x["world"]
    did = relais.create_dossier(actor_id=w["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                                urgency="stat", consent="given", imaging_source="none", **PATIENT)
    sid = relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                                   service_id=w["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])
    relais.request_complement(dossier_id=did, actor_id=w["recipient"], send_id=sid, message="Le scanner ?")
    return {"held": did, "held_send": sid}


def _answered(c: TestClient, x: dict) -> dict:
    """A dossier sent, answered, its report PDF made (prepared as the application, not traced)."""
    from adapters.report.issuer import ReportIssuer
    from web import report_html

    relais: Relais = x["relais"]
    w = x["world"]
    did = relais.create_dossier(actor_id=w["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                                urgency="stat", consent="given", imaging_source="none", **PATIENT)
    sid = relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                                   service_id=w["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])
    relais.accept(dossier_id=did, actor_id=w["recipient"], send_id=sid)
    relais.give_opinion(dossier_id=did, actor_id=w["recipient"], send_id=sid, report="Pas d'indication", conclusion="Non")
    ReportIssuer(relais, c.app.state.services.blobs, report_html.render).issue(did, sid)
    return {"answered": did, "answered_send": sid}


def _mdt(name: str, decided: bool = False) -> Callable[[TestClient, dict], dict]:
    """A kidney-transplant dossier of its own (`kidney_<name>`) registered to an MDT session of its own
    (`mdt_<name>`) the recipient coordinates; with `decided`, three specialties attend and the decision is recorded
    (prepared as the application, not traced)."""
    def prepare(c: TestClient, x: dict) -> dict:
        relais: Relais = x["relais"]
        w = x["world"]
        did = relais.create_dossier(actor_id=w["requester"], workflow="kidney_transplant_mdt", question="Greffe ?",
                                    urgency="routine", consent="given", imaging_source="none", **PATIENT)
        relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                                 service_id=w["neuro"])
        relais.send_dossier(dossier_id=did, actor_id=w["requester"])
        sid = relais.schedule_mdt_session(actor_id=w["recipient"], service_id=w["neuro"], duration_minutes=60,
                                          starts_at=relais.clock(), place="Salle de staff")
        relais.register_mdt_dossier(session_id=sid, dossier_id=did, actor_id=w["recipient"])
        if decided:
            for who, specialty in (("recipient", "néphrologie"), ("outsider", "urologie"), ("requester", "immunologie")):
                relais.record_mdt_attendance(session_id=sid, actor_id=w["recipient"], practitioner_id=w[who],
                                             specialty=specialty, status="present")
            relais.record_mdt_decision(session_id=sid, dossier_id=did, actor_id=w["recipient"], decision="Inscription")
        catch_up("mdt", c.app.state.services.settings.eventsourcing_env(), relais)
        return {f"kidney_{name}": did, f"mdt_{name}": sid}
    return prepare


def _mdt_quorum(c: TestClient, x: dict) -> dict:
    """Three specialties attend the `decide` session, so that its decision can be recorded."""
    relais: Relais = x["relais"]
    w = x["world"]
    for who, specialty in (("recipient", "néphrologie"), ("outsider", "urologie"), ("requester", "immunologie")):
        relais.record_mdt_attendance(session_id=x["mdt_decide"], actor_id=w["recipient"], practitioner_id=w[who],
                                     specialty=specialty, status="present")
    return {}


def _mdt_attend(c: TestClient, x: dict) -> Any:
    me = x["world"]["recipient"]
    return c.post("/mdt/sessions/{mdt_attend}/attendance".format(**x), headers=HX, data={
        "_csrf_token": x["csrf"], "participant": me, f"status-{me}": "present", f"specialty-{me}": "néphrologie"})


def _complement(c: TestClient, x: dict) -> Any:
    return c.post("/dossiers/{held}/sends/{held_send}/complement".format(**x), headers=HX | {"x-csrftoken": x["csrf"]},
                  files={"file": ("scanner.pdf", PDF, "application/pdf")},
                  data={"message": "Le voici", "expected_version": _version(x, "held")})


DW = "/dicomweb/dossiers/{sent}"
ST = DW + "/studies/{uid}"
SE = ST + "/series/{series}"
IN = SE + "/instances/{sop}"
VW = "/dossiers/{sent}/dicom/studies/{uid}"

IN_ROUTE = "/dicomweb/dossiers/{dossier_id:str}/studies/{study_uid:str}/series/{series_uid:str}/instances/{sop:str}"

# (method, route) → (who calls it, which dossier it reads, the call[, what prepares it, not counted])
CALLS: dict[tuple[str, str], tuple[Any, ...]] = {
    ("GET", "/dossiers/{dossier_id:str}"): ("recipient", "sent", _get("/dossiers/{sent}")),
    ("GET", "/dossiers/{dossier_id:str}/report"): ("recipient", "sent", _get("/dossiers/{sent}/report")),
    ("GET", "/dossiers/{dossier_id:str}/sends/{send_id:str}/report.pdf"):
        ("recipient", "answered", _get("/dossiers/{answered}/sends/{answered_send}/report.pdf"), _answered),
    ("GET", "/dossiers/{dossier_id:str}/documents/{document_id:str}"):
        ("recipient", "sent", _get("/dossiers/{sent}/documents/{doc}")),
    ("GET", "/dossiers/{dossier_id:str}/imaging/{study_uid:str}"):
        ("recipient", "sent", _get("/dossiers/{sent}/imaging/{uid}")),
    ("POST", "/dossiers/{dossier_id:str}/actions/{action:str}"):
        ("recipient", "sent", _post("/dossiers/{sent}/actions/accept", "sent", send_id="{send_id}")),
    ("GET", "/dossiers/{dossier_id:str}/dicom/studies/{study_uid:str}/viewer"): ("recipient", "sent", _get(VW + "/viewer")),
    ("GET", "/dossiers/{dossier_id:str}/dicom/studies/{study_uid:str}/series/{series_uid:str}"):
        ("recipient", "sent", _get(VW + "/series/{series}", i="1")),
    ("GET", "/dossiers/{dossier_id:str}/dicom/studies/{study_uid:str}/series/{series_uid:str}/thumbnail.png"):
        ("recipient", "sent", _get(VW + "/series/{series}/thumbnail.png")),
    ("GET", "/dossiers/{dossier_id:str}/dicom/studies/{study_uid:str}/thumbnail.png"):
        ("recipient", "sent", _get(VW + "/thumbnail.png")),
    ("GET", "/dossiers/{dossier_id:str}/dicom/studies/{study_uid:str}/instances/{sop:str}/image.png"):
        ("recipient", "sent", _get(VW + "/instances/{sop}/image.png")),
    ("GET", "/dossiers/{dossier_id:str}/dicom/studies/{study_uid:str}/download.zip"):
        ("recipient", "sent", _get(VW + "/download.zip")),
    ("GET", "/dossiers/{dossier_id:str}/dicom/studies/{study_uid:str}/export"):
        ("recipient", "sent", _get(VW + "/export", node="MTP_PACS")),
    ("POST", "/dossiers/{dossier_id:str}/dicom/studies/{study_uid:str}/export"):
        ("recipient", "sent", _post(VW + "/export", node="MTP_PACS")),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/studies"): ("recipient", "sent", _get(DW + "/studies")),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/series"): ("recipient", "sent", _get(DW + "/series")),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/instances"): ("recipient", "sent", _get(DW + "/instances")),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/studies/{study_uid:str}/series"): ("recipient", "sent", _get(ST + "/series")),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/studies/{study_uid:str}/instances"):
        ("recipient", "sent", _get(ST + "/instances")),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/studies/{study_uid:str}/series/{series_uid:str}/instances"):
        ("recipient", "sent", _get(SE + "/instances")),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/studies/{study_uid:str}/metadata"): ("recipient", "sent", _get(ST + "/metadata")),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/studies/{study_uid:str}/series/{series_uid:str}/metadata"):
        ("recipient", "sent", _get(SE + "/metadata")),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/studies/{study_uid:str}/series/{series_uid:str}/instances/{sop:str}/metadata"):
        ("recipient", "sent", _get(IN + "/metadata")),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/studies/{study_uid:str}"): ("recipient", "sent", _get(ST)),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/studies/{study_uid:str}/series/{series_uid:str}"):
        ("recipient", "sent", _get(SE)),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/studies/{study_uid:str}/series/{series_uid:str}/instances/{sop:str}"):
        ("recipient", "sent", _get(IN)),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/studies/{study_uid:str}/series/{series_uid:str}/instances/{sop:str}/frames/{frames:str}"):
        ("recipient", "sent", _get(IN + "/frames/1")),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/studies/{study_uid:str}/series/{series_uid:str}/instances/{sop:str}/rendered"):
        ("recipient", "sent", _get(IN + "/rendered")),
    ("GET", IN_ROUTE + "/frames/{frames:str}/rendered"):
        ("recipient", "sent", _get(IN + "/frames/1/rendered")),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/studies/{study_uid:str}/series/{series_uid:str}/instances/{sop:str}/thumbnail"):
        ("recipient", "sent", _get(IN + "/thumbnail")),
    ("GET", "/dicomweb/dossiers/{dossier_id:str}/studies/{study_uid:str}/series/{series_uid:str}/thumbnail"):
        ("recipient", "sent", _get(SE + "/thumbnail")),
    # the requester's draft: compose steps, documents, recipients, the imaging slot, PACS, file import
    ("GET", "/dossiers/{dossier_id:str}/edit/{step:str}"): ("requester", "draft", _get("/dossiers/{draft}/edit/patient")),
    ("POST", "/dossiers/{dossier_id:str}/edit/{step:str}"):
        ("requester", "draft", _post("/dossiers/{draft}/edit/workflow", "draft", workflow="stroke_opinion",
                                     urgency="urgent")),
    ("POST", "/dossiers/{dossier_id:str}/documents"):
        ("requester", "draft", _upload("/dossiers/{draft}/documents", "file", "cr.pdf", lambda x: PDF, "application/pdf",
                                       "draft")),
    ("POST", "/dossiers/{dossier_id:str}/documents/{document_id:str}/remove"):
        ("requester", "draft", _post("/dossiers/{draft}/documents/{draft_doc}/remove", "draft")),
    ("POST", "/dossiers/{dossier_id:str}/sends/{send_id:str}/messages"): ("requester", "sent", _message),
    ("POST", "/dossiers/{dossier_id:str}/sends/{send_id:str}/complement"): ("requester", "held", _complement, _held),
    ("POST", "/dossiers/{dossier_id:str}/attachments"):
        ("requester", "sent", _upload("/dossiers/{sent}/attachments", "file", "bilan.pdf", lambda x: PDF, "application/pdf",
                                       "sent")),
    ("POST", "/dossiers/{dossier_id:str}/recipients"):
        ("requester", "draft", _post("/dossiers/{draft}/recipients", "draft", establishment_id="{montpellier}",
                                     service_id="{neuro}")),
    ("POST", "/dossiers/{dossier_id:str}/recipients/{send_id:str}/remove"):
        ("requester", "draft", _remove_recipient),
    ("GET", "/dossiers/{dossier_id:str}/dicom"): ("requester", "draft", _get("/dossiers/{draft}/dicom")),
    ("GET", "/dossiers/{dossier_id:str}/dicom/received"): ("requester", "draft", _get("/dossiers/{draft}/dicom/received")),
    ("POST", "/dossiers/{dossier_id:str}/dicom/received/{study_id:str}/attach"):
        ("requester", "draft", _post("/dossiers/{draft}/dicom/received/{spare_id}/attach", "draft")),
    ("POST", "/dossiers/{dossier_id:str}/dicom/await"):
        ("requester", "draft", _post("/dossiers/{draft}/dicom/await", "draft", accession_number="ACCLATER")),
    ("GET", "/dossiers/{dossier_id:str}/dicom/pacs/search"):
        ("requester", "draft", _get("/dossiers/{draft}/dicom/pacs/search", node="TLSE_PACS", patient_name="DUPONT")),
    ("GET", "/dossiers/{dossier_id:str}/dicom/pacs/series"):
        ("requester", "draft", _get("/dossiers/{draft}/dicom/pacs/series", node="TLSE_PACS", study_uid="{uid}")),
    ("POST", "/dossiers/{dossier_id:str}/dicom/import"):
        ("requester", "draft", _upload("/dossiers/{draft}/dicom/import", "files", "ct.dcm",
                                       lambda x: x["import_bytes"], "application/dicom")),
    ("POST", "/dossiers/{dossier_id:str}/dicom/import/{import_id:str}"): ("requester", "draft", _import_confirm, _import_review),
    # MDT sessions (each call on a session and a kidney-transplant dossier of its own)
    ("GET", "/mdt/sessions/{session_id:str}"): ("recipient", "kidney_page", _get("/mdt/sessions/{mdt_page}"), _mdt("page")),
    ("POST", "/mdt/sessions/{session_id:str}/attendance"):
        ("recipient", "kidney_attend", _mdt_attend, _mdt("attend")),
    ("POST", "/mdt/sessions/{session_id:str}/decisions/{dossier_id:str}"):
        ("recipient", "kidney_decide", _post("/mdt/sessions/{mdt_decide}/decisions/{kidney_decide}", decision="Inscription"),
         _mdt("decide"), _mdt_quorum),
    ("POST", "/mdt/sessions/{session_id:str}/cancel"):
        ("recipient", "kidney_cancel", _post("/mdt/sessions/{mdt_cancel}/cancel"), _mdt("cancel")),
    ("POST", "/mdt/sessions/{session_id:str}/reschedule"):
        ("recipient", "kidney_move", _post("/mdt/sessions/{mdt_move}/reschedule", date="2031-01-02", time="10:00",
                                           duration_minutes="30", place="Salle B"), _mdt("move")),
    ("GET", "/mdt/sessions/{session_id:str}/fiche/{dossier_id:str}"):
        ("recipient", "kidney_fiche", _get("/mdt/sessions/{mdt_fiche}/fiche/{kidney_fiche}"), _mdt("fiche", decided=True)),
    ("GET", "/mdt/dossiers/{dossier_id:str}"): ("recipient", "kidney_part", _get("/mdt/dossiers/{kidney_part}"), _mdt("part")),
    # the auditor
    ("GET", "/audit/dossiers/{dossier_id:str}"): ("auditor", "sent", _get("/audit/dossiers/{sent}")),
    ("GET", "/audit/dossiers/{dossier_id:str}/replay"): ("auditor", "sent", _get("/audit/dossiers/{sent}/replay", version="2")),
    ("GET", "/audit/dossiers/{dossier_id:str}/export.json"): ("auditor", "sent", _get("/audit/dossiers/{sent}/export.json")),
    ("GET", "/audit/dossiers/{dossier_id:str}/print"): ("auditor", "sent", _get("/audit/dossiers/{sent}/print")),
    ("GET", "/audit/patients"): ("auditor", "sent", lambda c, x: _patient_accesses(c, x)),
}

WHO = {"requester": 1, "recipient": 2, "auditor": 4}


def routes_of(app: Any) -> set[tuple[str, str]]:
    return {(m, r.path) for r in app.routes for h in r.route_handlers for m in h.http_methods if m not in SKIP_METHODS}


def test_every_route_is_called_below_or_allowed_with_a_reason(app):
    routes = routes_of(app)
    assert routes - set(CALLS) - set(ALLOWED) == set(), "a route neither traced below nor allowed"
    assert (set(CALLS) | set(ALLOWED)) - routes == set(), "an entry for a route that no longer exists"
    assert set(CALLS) & set(ALLOWED) == set()


def test_every_route_showing_patient_data_records_an_access(client, relais, settings, passwords, dossiers, tmp_path):
    loose = write_study(tmp_path / "import", series=1, per_series=1, accession="ACCIMPORT", patient_name="DUPONT^JEANNE")
    sent, draft = dossiers["sent"], dossiers["draft"]
    study = sent["study"]
    x = {
        "relais": relais, "world": passwords, "sent": sent["did"], "draft": draft["did"], "doc": sent["doc"],
        "draft_doc": draft["doc"], "send_id": sent["send_id"], "uid": study["study_uid"], "series": study["series_uid"],
        "sop": study["sops"][0], "spare_id": dossiers["spare"]["study_id"], "montpellier": passwords["montpellier"],
        "neuro": passwords["neuro"], "import_bytes": loose["files"][0].read_bytes(), "import_uid": loose["study_uid"],
    }
    reader = client.app.state.services.relais
    reader.imaging_read_window = 0.0  # every read of images counts here (see application/study_reads.py)
    untraced, failed = [], []
    try:
        current = None
        for (method, route), (who, dossier, call, *prepare) in sorted(CALLS.items(), key=lambda kv: (WHO[kv[1][0]], kv[0])):
            if who != current:
                client.cookies.clear()
                if who == "auditor":  # the patients' page reads the access projection
                    catch_up("access", settings.eventsourcing_env(), relais)
                assert login(client, rpps(WHO[who])).status_code == 303
                x["csrf"] = csrf_from(client.get("/login").text)
                current = who
            person = passwords[who]
            for step in prepare:
                x |= step(client, x)
            before = accesses(relais, x[dossier], person)
            try:
                r = call(client, x)
            except Exception as e:  # noqa: BLE001 - reported with the route
                failed.append(f"{method} {route}: {e!r}")
                continue
            if r.status_code >= 400:
                failed.append(f"{method} {route}: {r.status_code} {r.text[:300]}")
            elif accesses(relais, x[dossier], person) <= before:
                untraced.append(f"{method} {route}")
    finally:
        del reader.imaging_read_window
    assert failed == [], "\n".join(failed)
    assert untraced == [], "\n".join(untraced)
