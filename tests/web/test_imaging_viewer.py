"""At the recipient: thumbnails, viewer with CT presets, ZIP with DICOMDIR, export to their PACS (Orthanc), DICOMweb."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.fileset import FileSet

from adapters.dicom.export import Exporter
from adapters.dicom.receive import describe
from adapters.dicom.recording import recorder
from adapters.dicom.storage import InstanceStore
from domain.imaging import received_study_id
from projections.runner import catch_up
from tests.conftest import rpps
from tests.peers import ORTHANC, PEER_ENV, Orthanc, free_port, stop, wait_port
from tests.web.conftest import csrf_from, login

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_bundled  # noqa: E402

HX = {"HX-Request": "true"}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def shared(relais, settings, world, passwords, sent_dossier, tmp_path):
    """A study of every bundled transfer syntax, received for Toulouse and attached to the sent dossier."""
    data = write_bundled(tmp_path / "mix")
    store = InstanceStore(settings.dicom_root)
    items = []
    for f in data["files"].values():
        ds = dcmread(f)
        store.put(world["toulouse"], data["study_uid"], ds.SOPInstanceUID, f.read_bytes())
        items.append(describe(ds, transfer_syntax=str(ds.file_meta.TransferSyntaxUID), size=f.stat().st_size))
    (update,) = recorder(relais)(world["toulouse"], items, {"kind": "dicom_store"})
    relais.attach_received_study(dossier_id=sent_dossier["dossier_id"], actor_id=world["requester"], study_id=update.study_id,
                                 confirm_identity=True)  # the bundled files name another patient: confirmed
    catch_up("imaging", settings.eventsourcing_env(), relais)
    return {"did": sent_dossier["dossier_id"], "uid": data["study_uid"], "study_id": update.study_id, "files": data["files"]}


def test_recipient_sees_thumbnails_and_scrolls_the_viewer_with_presets(client, relais, world, shared):
    login(client, rpps(2))
    base = f"/dossiers/{shared['did']}/dicom/studies/{shared['uid']}"
    v = client.get(base + "/viewer", headers=HX)
    assert v.status_code == 200 and "series-strip" in v.text and "Cerveau" in v.text and "Télécharger" in v.text
    study = relais.repository.get(received_study_id(world["toulouse"], shared["uid"]))
    for series_uid in study.series:  # every transfer syntax decodes (pylibjpeg for JPEG, JPEG-LS, J2K; RLE)
        t = client.get(f"{base}/series/{series_uid}/thumbnail.png")
        assert t.status_code == 200 and t.content.startswith(PNG), series_uid
    ct = dcmread(shared["files"]["explicit"])
    f = client.get(f"{base}/series/{ct.SeriesInstanceUID}", params={"i": 0, "preset": "bone"}, headers=HX)
    assert f.status_code == 200 and f"instances/{ct.SOPInstanceUID}/image.png?preset=bone" in f.text
    brain = client.get(f"{base}/instances/{ct.SOPInstanceUID}/image.png", params={"preset": "brain"})
    bone = client.get(f"{base}/instances/{ct.SOPInstanceUID}/image.png", params={"preset": "bone"})
    assert brain.content.startswith(PNG) and bone.content.startswith(PNG) and brain.content != bone.content
    assert client.get(f"{base}/instances/1.2.3.4/image.png").status_code == 404


def test_outsiders_see_nothing(client, shared):
    login(client, rpps(3))  # Montpellier, not in the neuroradiology service addressed
    base = f"/dossiers/{shared['did']}/dicom/studies/{shared['uid']}"
    assert client.get(base + "/viewer", headers=HX).status_code == 403
    assert client.get(base + "/download.zip").status_code == 403
    assert client.get(f"/dicomweb/dossiers/{shared['did']}/studies").status_code == 403


def test_download_is_a_zip_with_a_dicomdir_and_is_recorded(client, relais, world, shared):
    login(client, rpps(2))
    r = client.get(f"/dossiers/{shared['did']}/dicom/studies/{shared['uid']}/download.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        names = z.namelist()
        assert "DICOMDIR" in names and len(names) == 1 + len(shared["files"])
        folder = Path(z.filename or "x").parent
    sid = received_study_id(world["toulouse"], shared["uid"])
    (download,) = [e for e in relais.events.get(sid) if type(e).__name__ == "Downloaded"]
    assert download.actor["practitioner_id"] == world["recipient"] and download.dossier_id == shared["did"]
    del folder


def test_dicomdir_of_the_zip_reads_back_with_pydicom(shared, tmp_path):
    from adapters.dicom.dicomdir import zip_with_dicomdir

    archive = zip_with_dicomdir(list(shared["files"].values()), tmp_path)
    out = tmp_path / "unzipped"
    zipfile.ZipFile(archive).extractall(out)
    fs = FileSet(dcmread(out / "DICOMDIR"))
    assert len(fs) == len(shared["files"])
    sent = {dcmread(f).SOPInstanceUID: f.read_bytes() for f in shared["files"].values()}
    for instance in fs:  # each file is the stored one, byte for byte
        assert Path(instance.path).read_bytes() == sent[instance.SOPInstanceUID]


def test_dicomweb_qido_and_wado_scoped_to_the_dossier(client, shared):
    login(client, rpps(2))
    dw = f"/dicomweb/dossiers/{shared['did']}"
    studies = client.get(dw + "/studies").json()
    assert [s["0020000D"]["Value"][0] for s in studies] == [shared["uid"]]
    assert studies[0]["00201208"]["Value"] == [len(shared["files"])]
    assert client.get(dw + "/studies", params={"StudyInstanceUID": shared["uid"]}).json() == studies
    assert client.get(dw + "/studies", params={"StudyInstanceUID": "1.2.3"}).json() == []
    series = client.get(f"{dw}/studies/{shared['uid']}/series").json()
    assert len(series) == len(shared["files"])
    ct = dcmread(shared["files"]["explicit"])
    inst = client.get(f"{dw}/studies/{shared['uid']}/series/{ct.SeriesInstanceUID}/instances").json()
    assert inst[0]["00080018"]["Value"] == [ct.SOPInstanceUID]
    meta = client.get(f"{dw}/studies/{shared['uid']}/metadata").json()
    assert len(meta) == len(shared["files"]) and all("7FE00010" not in m or "Value" not in m["7FE00010"] for m in meta)
    w = client.get(f"{dw}/studies/{shared['uid']}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}")
    assert w.status_code == 200 and w.headers["content-type"].startswith("multipart/related")
    assert b"DICM" in w.content and b"application/dicom" in w.content
    wrong = client.get(f"{dw}/studies/{shared['uid']}/series/1.2.3/instances/{ct.SOPInstanceUID}")
    assert wrong.status_code == 404


@pytest.mark.skipif(ORTHANC is None, reason="Orthanc not installed")
def test_export_to_the_recipient_pacs_with_per_instance_status(client, relais, settings, world, shared, tmp_path):
    with Orthanc(tmp_path / "mtp-pacs", aet="MTP_PACS") as o:
        relais.add_node(aet="MTP_PACS", host="127.0.0.1", port=o.dicom_port, establishment_id=world["montpellier"], kind="pacs")
        relais.add_node(aet="TLSE_PACS", host="127.0.0.1", port=104, establishment_id=world["toulouse"], kind="pacs")
        catch_up("directory", settings.eventsourcing_env(), relais)
        login(client, rpps(2))
        base = f"/dossiers/{shared['did']}/dicom/studies/{shared['uid']}"
        v = client.get(base + "/viewer", headers=HX)
        assert "MTP_PACS" in v.text and "TLSE_PACS" not in v.text
        h = HX | {"x-csrftoken": csrf_from(client.get(f"/dossiers/{shared['did']}").text)}
        bad = client.post(base + "/export", data={"node": "TLSE_PACS"}, headers=h)
        assert bad.status_code == 403, bad.text
        r = client.post(base + "/export", data={"node": "MTP_PACS"}, headers=h)
        assert r.status_code == 200 and "every 1s" in r.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = client.get(base + "/export", params={"node": "MTP_PACS"}, headers=HX)
            if "every 1s" not in p.text:
                break
            time.sleep(0.3)
        assert f"Exporté vers MTP_PACS : {len(shared['files'])} / {len(shared['files'])}" in p.text, p.text
        assert o.instance_count() == len(shared["files"])
        sid = received_study_id(world["toulouse"], shared["uid"])
        statuses = [e.status for e in relais.events.get(sid) if type(e).__name__ == "ExportRecorded"]
        assert statuses[0] == "started" and statuses[-1] == "completed" and set(statuses[1:-1]) <= {"running"}


def test_export_to_an_unreachable_node_fails_with_every_instance_listed(relais, settings, world, shared):
    relais.add_node(aet="DOWN_PACS", host="127.0.0.1", port=free_port(), establishment_id=world["montpellier"], kind="pacs")
    ex = Exporter(app=relais, store=InstanceStore(settings.dicom_root), our_aet="RELAIS", timeout=5, associations=2)
    out = ex.export(dossier_id=shared["did"], study_id=shared["study_id"], node_aet="DOWN_PACS", actor={"practitioner_id": "x"})
    assert out.status == "failed" and out.sent == 0 and len(out.failures) == len(shared["files"])
    assert all("injoignable" in f["reason"] for f in out.failures)


def _imaging_accesses(relais, did: str) -> list[tuple[str, str, str]]:
    """(outcome, target, practitioner) of the Access events of kind "imaging" on a dossier, in order."""
    out = []
    for n in relais.recorder.select_notifications(1, 1_000_000, topics=["relais:Access.Created"]):
        e = relais.mapper.to_domain_event(n)
        if e.kind == "imaging" and e.dossier_id == did:
            out.append((e.outcome, e.target, e.actor["practitioner_id"]))
    return out


def test_image_reads_are_traced_once_per_user_study_and_kind_of_read_per_window(client, relais, world, shared):
    login(client, rpps(2))
    base = f"/dossiers/{shared['did']}/dicom/studies/{shared['uid']}"
    dw = f"/dicomweb/dossiers/{shared['did']}"
    ct = dcmread(shared["files"]["explicit"])
    assert client.get(base + "/viewer", headers=HX).status_code == 200
    for i in range(3):  # a scroll: frames, images, thumbnails
        assert client.get(f"{base}/series/{ct.SeriesInstanceUID}", params={"i": i}, headers=HX).status_code == 200
        assert client.get(f"{base}/instances/{ct.SOPInstanceUID}/image.png").status_code == 200
        assert client.get(f"{base}/series/{ct.SeriesInstanceUID}/thumbnail.png").status_code == 200
    for _ in range(2):  # an external viewer through DICOMweb
        assert client.get(dw + "/studies").status_code == 200
        assert client.get(f"{dw}/studies/{shared['uid']}/series").status_code == 200
        assert client.get(f"{dw}/studies/{shared['uid']}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}").status_code == 200
    reader = client.app.state.services.relais
    log = _imaging_accesses(relais, shared["did"])
    assert [(o, t) for o, t, _ in log] == [("granted", f"viewer:{shared['uid']}"), ("granted", f"dicomweb:{shared['uid']}")]
    assert {p for _, _, p in log} == {world["recipient"]}
    reader.imaging_read_window = 0.0  # the window has passed: the next read is traced again
    try:
        client.get(f"{base}/instances/{ct.SOPInstanceUID}/image.png")
    finally:
        del reader.imaging_read_window
    assert _imaging_accesses(relais, shared["did"])[-1][:2] == ("granted", f"viewer:{shared['uid']}")

    client.post("/logout", data={"_csrf_token": csrf_from(client.get("/inbox/received").text)})
    login(client, rpps(3))  # an outsider: every attempt is traced as denied, none throttled
    before = len(_imaging_accesses(relais, shared["did"]))
    assert client.get(f"{base}/instances/{ct.SOPInstanceUID}/image.png").status_code == 403
    assert client.get(f"{base}/series/{ct.SeriesInstanceUID}/thumbnail.png").status_code == 403
    assert client.get(f"{dw}/studies/{shared['uid']}/metadata").status_code == 403
    assert client.get(dw + "/studies").status_code == 403
    denied = _imaging_accesses(relais, shared["did"])[before:]
    assert [(o, t) for o, t, _ in denied] == [
        ("denied", f"viewer:{shared['uid']}"), ("denied", f"viewer:{shared['uid']}"),
        ("denied", f"dicomweb:{shared['uid']}"), ("denied", "dicomweb:studies"),
    ]


@pytest.mark.skipif(ORTHANC is None, reason="Orthanc not installed")
def test_export_progress_is_polled_while_running_and_every_instance_has_a_status_at_the_end(
    client, relais, settings, world, shared, tmp_path,
):
    total = len(shared["files"])
    with Orthanc(tmp_path / "mtp-pacs", aet="MTP_PACS") as o:
        relais.add_node(aet="MTP_PACS", host="127.0.0.1", port=o.dicom_port, establishment_id=world["montpellier"], kind="pacs")
        login(client, rpps(2))
        base = f"/dossiers/{shared['did']}/dicom/studies/{shared['uid']}"
        actor = {"practitioner_id": world["recipient"]}
        # while it runs: the count sent so far, and the fragment keeps polling
        relais.record_export(study_id=shared["study_id"], dossier_id=shared["did"], node_aet="MTP_PACS", status="running",
                             sent=2, total=total, failures=[], actor=actor)
        p = client.get(base + "/export", params={"node": "MTP_PACS"}, headers=HX)
        assert p.status_code == 200 and "every 1s" in p.text and f"2 / {total}" in p.text and "<progress" in p.text
        assert "Détail par image" not in p.text
        # the exporter records its progress as it goes (here after every instance)
        ex = Exporter(app=relais, store=InstanceStore(settings.dicom_root), our_aet="RELAIS", timeout=10, progress_every=0)
        out = ex.export(dossier_id=shared["did"], study_id=shared["study_id"], node_aet="MTP_PACS", actor=actor)
        assert out.status == "completed" and out.sent == total and o.instance_count() == total
        sid = received_study_id(world["toulouse"], shared["uid"])
        last_run = [e for e in relais.events.get(sid) if type(e).__name__ == "ExportRecorded"][1:]  # after the fake
        assert [e.status for e in last_run] == ["started"] + ["running"] * (total - 1) + ["completed"]
        assert [e.sent for e in last_run] == list(range(total)) + [total]
        # at the end: no more polling, and the status of every instance
        p = client.get(base + "/export", params={"node": "MTP_PACS"}, headers=HX)
        assert "every 1s" not in p.text and f"Exporté vers MTP_PACS : {total} / {total}" in p.text
        study = relais.repository.get(sid)
        assert all(sop in p.text for sop in study.instances) and p.text.count("stockée") == total


def test_export_state_lists_refused_and_stored_instances(client, relais, world, shared):
    login(client, rpps(2))
    study = relais.repository.get(received_study_id(world["toulouse"], shared["uid"]))
    refused = sorted(study.instances)[0]
    relais.record_export(
        study_id=shared["study_id"], dossier_id=shared["did"], node_aet="MTP_PACS", status="partial",
        sent=len(study.instances) - 1, total=len(study.instances),
        failures=[{"sop": refused, "status": "0xA700", "reason": "refusé par le nœud"}], actor={"practitioner_id": "x"},
    )
    p = client.get(f"/dossiers/{shared['did']}/dicom/studies/{shared['uid']}/export", params={"node": "MTP_PACS"}, headers=HX)
    assert "Export partiel" in p.text and "every 1s" not in p.text
    assert "refusé par le nœud (0xA700)" in p.text and p.text.count("stockée") == len(study.instances) - 1


def _parts(r) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part of a multipart/related answer."""
    boundary = r.headers["content-type"].split("boundary=")[1].strip('"')
    out = []
    for chunk in r.content.split(f"--{boundary}".encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, body = chunk.partition(b"\r\n\r\n")
        out.append((head.decode().strip().split(":", 1)[1].strip(), body[:-2]))
    return out


def test_dicomweb_series_and_instance_metadata_study_and_series_retrieve_and_frames(client, shared):
    """What OHIF asks for: series metadata, then frames; also study/series retrieve and instance metadata."""
    login(client, rpps(2))
    dw = f"/dicomweb/dossiers/{shared['did']}/studies/{shared['uid']}"
    ct = dcmread(shared["files"]["explicit"])
    meta = client.get(f"{dw}/series/{ct.SeriesInstanceUID}/metadata").json()
    assert [m["00080018"]["Value"] for m in meta] == [[ct.SOPInstanceUID]]
    one = client.get(f"{dw}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}/metadata").json()
    assert one == meta
    assert client.get(f"{dw}/series/1.2.3/metadata").status_code == 404
    study = _parts(client.get(dw))
    assert len(study) == len(shared["files"])
    assert all(t.startswith("application/dicom; transfer-syntax=") and b"DICM" in b for t, b in study)
    (series,) = _parts(client.get(f"{dw}/series/{ct.SeriesInstanceUID}"))
    assert series[1] == shared["files"]["explicit"].read_bytes()
    # native frame: the pixel bytes as stored
    (frame,) = _parts(client.get(f"{dw}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}/frames/1"))
    assert frame[0] == f"application/octet-stream; transfer-syntax={ct.file_meta.TransferSyntaxUID}"
    assert frame[1] == ct.PixelData
    # encapsulated frame asked "as stored" (transfer-syntax=*, as OHIF asks): the compressed bytes, with their transfer syntax
    as_stored = {"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
    for key, f in shared["files"].items():
        ds = dcmread(f)
        if ds.file_meta.TransferSyntaxUID.is_encapsulated:
            r = client.get(f"{dw}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames/1", headers=as_stored)
            ((ctype, body),) = _parts(r)
            assert ctype.endswith(f"transfer-syntax={ds.file_meta.TransferSyntaxUID}") and len(body) > 100, key
            assert body in ds.PixelData, key
    assert client.get(f"{dw}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}/frames/2").status_code == 404
    login(client, rpps(3))  # an outsider
    assert client.get(f"{dw}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}/frames/1").status_code == 403
    assert client.get(dw).status_code == 403


def test_export_to_a_node_that_dies_mid_transfer_says_so_at_once(relais, settings, world, shared, tmp_path):
    """A destination whose connection closes during the export (dcmtk storescp killing itself once it
    has stored the first instance) is reported as an interrupted connection, at once: a release on
    the dead association waited for the whole ACSE timeout (30 s) first."""
    folder = tmp_path / "dying"
    folder.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        ["storescp", "-aet", "DYING", "-od", str(folder), "+xa", "--exec-on-reception", "kill -9 $PPID", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=PEER_ENV,
    )
    try:
        wait_port(port, 20, proc)
        relais.add_node(aet="DYING", host="127.0.0.1", port=port, establishment_id=world["montpellier"], kind="pacs")
        ex = Exporter(app=relais, store=InstanceStore(settings.dicom_root), our_aet="RELAIS", timeout=30, associations=2)
        started = time.monotonic()
        out = ex.export(dossier_id=shared["did"], study_id=shared["study_id"], node_aet="DYING", actor={"practitioner_id": "x"})
        took = time.monotonic() - started
    finally:
        stop(proc)
    assert out.status in ("partial", "failed") and out.sent < len(shared["files"])
    assert out.reason.startswith("connexion interrompue par le nœud DYING, puis nœud DYING injoignable"), out.reason
    assert all(f["reason"] == out.reason for f in out.failures)
    assert took < 15, f"{took:.1f} s: the export waited for a timeout"  # the ACSE timeout is 30 s
