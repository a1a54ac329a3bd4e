"""The DICOM node stores what dcmtk storescu sends: durably, deduplicated, recorded per study, auto-attached."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom import AE, _config
from pynetdicom.dsutils import encode_file_meta

from adapters.dicom.receive import recover
from adapters.dicom.storage import InstanceStore
from domain.imaging import ReceivedStudy, received_study_id
from entrypoints.dicom_node import node_server
from projections.runner import catch_up, open_view
from tests.conftest import PATIENT
from tests.peers import free_port

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_bundled, write_study  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk not installed (scripts/system-packages.sh)")

ENV = dict(os.environ, TCP_NODELAY="1")


@pytest.fixture()
def node(relais, world, settings):
    relais.add_node(aet="TLSE_GW", host="127.0.0.1", port=104, establishment_id=world["toulouse"], kind="gateway")
    env = settings.eventsourcing_env()
    catch_up("directory", env, relais)
    s = replace(settings, dicom_port=free_port())
    directory, imaging = open_view("directory", env), open_view("imaging", env)
    stop = threading.Event()
    with node_server(s, relais, directory, imaging) as n:
        t = threading.Thread(target=n.serve, args=(stop,), daemon=True)
        t.start()
        yield {"node": n, "port": s.dicom_port, "settings": s, "imaging": imaging, "env": env}
        stop.set()
        t.join(timeout=10)
    directory.datastore.close()
    imaging.datastore.close()


# storescu's option proposing each compressed transfer syntax (sent as they are, never converted)
PROPOSE = {"jpeg2000": "-xw", "jpeg_baseline_rgb": "-xy", "deflate": "-xd", "rle": "-xr", "jpeg_ls": "-xt"}


def storescu(port: int, paths: list[Path], calling: str = "TLSE_GW", *options: str) -> subprocess.CompletedProcess:
    cmd = ["storescu", "-aet", calling, "-aec", "RELAIS", *options, "-to", "10", "127.0.0.1", str(port), *map(str, paths)]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=60)


def study(relais, world, study_uid) -> ReceivedStudy:
    return relais.repository.get(received_study_id(world["toulouse"], study_uid))


def test_a_study_is_stored_as_received_and_recorded_in_one_event_per_batch(node, relais, world, tmp_path):
    data = write_study(tmp_path / "in", series=2, per_series=4)
    r = storescu(node["port"], data["files"])
    assert r.returncode == 0, r.stderr
    node["node"].receiver.flush_all()
    s = study(relais, world, data["study_uid"])
    assert set(s.instances) == set(data["sops"])
    assert len(s.series) == 2 and s.modalities == ["CT"]
    assert s.patient["id"] == "PAT001" and s.study["accession_number"] == "ACC0001"
    received = [e for e in relais.events.get(s.id) if type(e).__name__ == "InstancesReceived"]
    assert 1 <= len(received) <= 2  # batched per association, not one event per instance
    store = InstanceStore(node["settings"].dicom_root)
    for f, sop in zip(data["files"], data["sops"], strict=True):
        kept = dcmread(store.path(world["toulouse"], data["study_uid"], sop))
        assert kept.PixelData == dcmread(f).PixelData and kept.SOPInstanceUID == sop


def test_every_common_transfer_syntax_is_accepted_and_kept_as_is(node, relais, world, tmp_path):
    data = write_bundled(tmp_path / "mix")
    for key, path in data["files"].items():
        r = storescu(node["port"], [path], "TLSE_GW", *([PROPOSE[key]] if key in PROPOSE else []))
        assert r.returncode == 0, key + r.stdout + r.stderr
    node["node"].receiver.flush_all()
    s = study(relais, world, data["study_uid"])
    assert set(s.instances) == set(data["sops"])
    store = InstanceStore(node["settings"].dicom_root)
    for f in data["files"].values():
        sent = dcmread(f)
        kept = dcmread(store.path(world["toulouse"], data["study_uid"], sent.SOPInstanceUID))
        assert kept.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID  # never transcoded
        assert kept.PixelData == sent.PixelData
        meta = kept.file_meta  # written by the node: PS3.10 group, the sender kept as source
        assert meta.MediaStorageSOPInstanceUID == sent.SOPInstanceUID
        assert meta.MediaStorageSOPClassUID == sent.SOPClassUID
        assert meta.SourceApplicationEntityTitle == "TLSE_GW"
        assert meta.FileMetaInformationVersion == b"\x00\x01"
        assert meta.FileMetaInformationGroupLength == len(encode_file_meta(meta)) - 12


def test_a_resend_is_accepted_and_changes_nothing(node, relais, world, tmp_path):
    data = write_study(tmp_path / "in", series=1, per_series=3)
    assert storescu(node["port"], data["files"]).returncode == 0
    node["node"].receiver.flush_all()
    version = study(relais, world, data["study_uid"]).version
    stored = InstanceStore(node["settings"].dicom_root).path(world["toulouse"], data["study_uid"], data["sops"][0])
    mtime = stored.stat().st_mtime_ns
    r = storescu(node["port"], data["files"])
    assert r.returncode == 0, r.stderr
    node["node"].receiver.flush_all()
    assert study(relais, world, data["study_uid"]).version == version
    assert stored.stat().st_mtime_ns == mtime


def test_an_instance_whose_uid_differs_from_its_c_store_command_is_refused(
    node, relais, world, tmp_path, caplog, monkeypatch,
):
    data = write_study(tmp_path / "in", series=1, per_series=2)
    forged = dcmread(data["files"][0])
    forged.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    # sending a file in chunks, pynetdicom takes the command's UIDs from its file meta
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    forged.preamble = b"\x00" * 128
    forged.save_as(data["files"][0])  # as given: enforcing the file format would fix the meta
    assert dcmread(data["files"][0]).file_meta.MediaStorageSOPInstanceUID != data["sops"][0]
    ae = AE(ae_title="TLSE_GW")
    ae.add_requested_context(forged.SOPClassUID, forged.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", node["port"], ae_title="RELAIS")
    assert assoc.is_established
    try:
        with caplog.at_level(logging.WARNING, logger="relais.dicom"):
            refused = assoc.send_c_store(data["files"][0])
        accepted = assoc.send_c_store(dcmread(data["files"][1]))
    finally:
        assoc.release()
    assert refused.Status == 0xC000 and "dans la commande C-STORE" in caplog.text
    assert accepted.Status == 0x0000
    node["node"].receiver.flush_all()
    assert set(study(relais, world, data["study_uid"]).instances) == {data["sops"][1]}
    store = InstanceStore(node["settings"].dicom_root)
    assert not store.exists(world["toulouse"], data["study_uid"], data["sops"][0])


def test_a_data_set_cut_inside_its_pixel_data_is_refused_and_nothing_recorded(
    node, relais, world, tmp_path, caplog, monkeypatch,
):
    data = write_study(tmp_path / "in", series=1, per_series=2)
    cut = data["files"][0]
    raw = cut.read_bytes()
    cut.write_bytes(raw[: len(raw) - 1000])  # the last 1,000 bytes of its pixel data missing
    # sending a file in chunks, pynetdicom sends its data set bytes as they are
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    ae = AE(ae_title="TLSE_GW")
    ae.add_requested_context(dcmread(data["files"][1]).SOPClassUID, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", node["port"], ae_title="RELAIS")
    assert assoc.is_established
    try:
        with caplog.at_level(logging.WARNING, logger="relais.dicom"):
            refused = assoc.send_c_store(cut)
        accepted = assoc.send_c_store(data["files"][1])
    finally:
        assoc.release()
    assert refused.Status == 0xC000 and "incomplète" in caplog.text
    assert accepted.Status == 0x0000
    node["node"].receiver.flush_all()
    assert set(study(relais, world, data["study_uid"]).instances) == {data["sops"][1]}
    store = InstanceStore(node["settings"].dicom_root)
    assert not store.exists(world["toulouse"], data["study_uid"], data["sops"][0])


def test_unknown_calling_ae_is_rejected_and_logged(node, relais, world, tmp_path, caplog):
    data = write_study(tmp_path / "in", series=1, per_series=1)
    with caplog.at_level(logging.WARNING, logger="relais.dicom"):
        r = storescu(node["port"], data["files"], calling="INTRUDER")
    assert r.returncode != 0
    assert "INTRUDER" in caplog.text
    assert received_study_id(world["toulouse"], data["study_uid"]) not in relais.repository
    assert not any(InstanceStore(node["settings"].dicom_root).studies())


def test_the_read_model_lists_studies_received_per_establishment(node, relais, world, tmp_path):
    a = write_study(tmp_path / "a", accession="A1", series=2, per_series=2)
    b = write_study(tmp_path / "b", accession="B1", series=1, per_series=1, source="MR_small.dcm")
    assert storescu(node["port"], a["files"] + b["files"]).returncode == 0
    node["node"].receiver.flush_all()
    catch_up("imaging", node["env"], relais)
    rows = node["imaging"].studies_for(world["toulouse"])
    by_acc = {r.accession_number: r for r in rows}
    assert by_acc["A1"].instance_count == 4 and by_acc["A1"].series_count == 2 and by_acc["A1"].modalities == ("CT",)
    assert by_acc["B1"].modalities == ("MR",) and by_acc["B1"].sources == ("dicom_store",)
    assert node["imaging"].studies_for(world["montpellier"]) == []
    assert len(node["imaging"].instances_of(by_acc["A1"].id)) == 4


def test_a_study_with_the_awaited_accession_number_attaches_itself(node, relais, world, tmp_path):
    did = relais.create_dossier(
        actor_id=world["requester"], workflow="stroke_opinion", question="Thrombectomie ?", urgency="stat",
        consent="given", imaging_source="dicom_store", **PATIENT,
    )
    relais.await_imaging(dossier_id=did, actor_id=world["requester"], accession_number="STROKE42")
    catch_up("imaging", node["env"], relais)
    data = write_study(tmp_path / "in", accession="STROKE42", series=1, per_series=2)
    other = write_study(tmp_path / "other", accession="OTHER", series=1, per_series=1)
    assert storescu(node["port"], data["files"] + other["files"]).returncode == 0
    node["node"].receiver.flush_all()
    d = relais.get_dossier(dossier_id=did, actor_id=world["requester"])
    (attached,) = d.imaging
    assert attached["study_instance_uid"] == data["study_uid"]
    assert attached["instance_count"] == 2 and attached["source"] == "dicom_store"


def test_files_stored_but_not_recorded_before_a_crash_are_recorded_at_start(relais, world, tmp_path):
    store = InstanceStore(tmp_path / "dicom")
    data = write_study(tmp_path / "in", series=1, per_series=3)
    for f, sop in zip(data["files"], data["sops"], strict=True):
        store.put(world["toulouse"], data["study_uid"], sop, f.read_bytes())
    from adapters.dicom.recording import recorded_sops, recorder

    assert recover(store, recorder(relais), recorded_sops(relais)) == 3
    assert set(study(relais, world, data["study_uid"]).instances) == set(data["sops"])
    assert recover(store, recorder(relais), recorded_sops(relais)) == 0


def test_uids_that_are_not_uids_never_name_a_file(tmp_path):
    store = InstanceStore(tmp_path)
    with pytest.raises(ValueError):
        store.put("e", "../../etc", "1.2.3", b"x")
    with pytest.raises(ValueError):
        store.put("e", "1.2.3", "1.2/../../x", b"x")
