"""The DICOM node's memory bounds: PDUs read only up to a bound, large data sets written to disk as
they arrive, deflated data sets inflated within a bound, a few associations at a time per peer."""

from __future__ import annotations

import logging
import socket
import struct
import time
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from adapters.dicom import reactor
from adapters.dicom.storage import INCOMING, InstanceStore
from domain.imaging import received_study_id
from projections.runner import catch_up
from tests.adapters import test_store_scp
from tests.adapters.test_store_scp import PROPOSE, storescu, study
from tests.dicomdata import write_multiframe
from tests.peers import free_port, wait_port

node = test_store_scp.node  # the node fixture: a DicomNodeServer in this process, storescu's TLSE_GW known

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _data_set(path: Path) -> bytes:
    """A Part 10 file's data set bytes (after its file meta)."""
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM" and raw[132:136] == b"\x02\x00\x00\x00"
    group_length = struct.unpack("<I", raw[140:144])[0]  # (0002,0000) UL, explicit VR LE, after preamble+DICM
    return raw[144 + group_length:]


def test_a_large_instance_is_written_to_disk_as_it_arrives_and_stored_byte_identical(
    node, relais, world, tmp_path, monkeypatch,
):
    spilled: list[int] = []
    to_file = reactor.SpillingBuffer._to_file

    def counted(self):
        spilled.append(self.tell())
        to_file(self)

    monkeypatch.setattr(reactor.SpillingBuffer, "_to_file", counted)
    study_uid = generate_uid()
    frames = np.random.default_rng(7).integers(0, 4096, size=(48, 512, 512), dtype=np.uint16)  # 24 MiB
    path = tmp_path / "large.dcm"
    sop = write_multiframe(path, study_uid=study_uid, series_number=1, bits=16, frames=frames)
    r = storescu(node["port"], [path])
    assert r.returncode == 0, r.stderr
    assert spilled and spilled[0] <= (16 << 20) + (1 << 20)  # left memory at the threshold, not at the end
    node["node"].receiver.flush_all()
    assert set(study(relais, world, study_uid).instances) == {sop}
    stored = InstanceStore(node["settings"].dicom_root).path(world["toulouse"], study_uid, sop)
    assert _data_set(stored) == _data_set(path)
    assert not list((node["settings"].dicom_root / INCOMING).iterdir())  # renamed into place, nothing left


def test_a_large_instance_cut_short_is_refused_and_its_file_removed(node, relais, world, tmp_path, caplog):
    study_uid = generate_uid()
    frames = np.zeros((40, 512, 512), dtype=np.uint16)
    path = tmp_path / "large.dcm"
    sop = write_multiframe(path, study_uid=study_uid, series_number=1, bits=16, frames=frames)
    from pynetdicom import _config

    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 4096])
    ae = AE(ae_title="TLSE_GW")
    ae.add_requested_context(dcmread(path, stop_before_pixels=True).SOPClassUID, "1.2.840.10008.1.2.1")
    old, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    try:
        assoc = ae.associate("127.0.0.1", node["port"], ae_title="RELAIS")
        assert assoc.is_established
        with caplog.at_level(logging.WARNING, logger="relais.dicom"):
            status = assoc.send_c_store(path)
        assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
    assert status.Status == 0xC000 and "incomplètes" in caplog.text
    node["node"].receiver.flush_all()
    assert received_study_id(world["toulouse"], study_uid) not in relais.repository
    store = InstanceStore(node["settings"].dicom_root)
    assert not store.exists(world["toulouse"], study_uid, sop)
    assert not list((node["settings"].dicom_root / INCOMING).iterdir())


def test_a_deflate_bomb_is_refused_and_nothing_recorded(node, relais, world, tmp_path, caplog):
    node["node"].receiver.inflate_limit = 8 << 20
    study_uid = generate_uid()
    path = tmp_path / "bomb.dcm"
    frames = np.zeros((64, 512, 512), dtype=np.uint16)  # 32 MiB of zeros
    sop = write_multiframe(path, study_uid=study_uid, series_number=1, bits=16, frames=frames)
    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    assert path.stat().st_size < 200_000
    with caplog.at_level(logging.WARNING, logger="relais.dicom"):
        r = storescu(node["port"], [path], "TLSE_GW", PROPOSE["deflate"])
    assert "0xc000" in (r.stdout + r.stderr).lower() or r.returncode != 0, r.stderr
    assert "décompressées" in caplog.text
    node["node"].receiver.flush_all()
    assert received_study_id(world["toulouse"], study_uid) not in relais.repository
    assert not InstanceStore(node["settings"].dicom_root).exists(world["toulouse"], study_uid, sop)


def _serving(node) -> None:
    """Until the node fixture's server (started in a thread) listens."""
    deadline = time.monotonic() + 30
    while node["node"].server is None and time.monotonic() < deadline:
        time.sleep(0.05)
    wait_port(node["port"], 30)


def test_a_pdu_longer_than_the_bound_is_not_read_before_the_peer_is_known(node, caplog):
    _serving(node)
    with caplog.at_level(logging.WARNING, logger="relais.dicom"):
        with socket.create_connection(("127.0.0.1", node["port"]), timeout=20) as s:
            # an A-ASSOCIATE-RQ announcing 100 MB: pynetdicom would wait to read all of it
            s.sendall(struct.pack(">BBL", 0x01, 0, 100_000_000) + b"\0" * 1024)
            answer = b""
            try:
                while chunk := s.recv(4096):
                    answer += chunk
            except ConnectionResetError:  # closed with what we sent unread: a reset, at once
                pass
    assert answer[:1] in (b"\x07", b"")  # an A-ABORT, then the connection closed (not a timeout)
    assert "avant identification du pair" in caplog.text


def _associate(port: int) -> object:
    ae = AE(ae_title="TLSE_GW")
    ae.add_requested_context(SECONDARY_CAPTURE, "1.2.840.10008.1.2.1")
    ae.add_requested_context("1.2.840.10008.1.1")
    return ae.associate("127.0.0.1", port, ae_title="RELAIS")


def test_associations_from_one_address_beyond_the_cap_are_refused(node, caplog):
    _serving(node)
    node["node"].server.per_peer = 2
    held = [_associate(node["port"]) for _ in range(2)]
    try:
        assert all(a.is_established for a in held)
        with caplog.at_level(logging.WARNING, logger="relais.dicom"):
            third = _associate(node["port"])
        assert not third.is_established
        assert "limite par pair" in caplog.text and "127.0.0.1" in caplog.text
        held.pop().release()
        deadline = time.monotonic() + 30
        while True:  # the released association's thread ends: a place is free again
            again = _associate(node["port"])
            if again.is_established or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert again.is_established
        again.release()
    finally:
        for a in held:
            a.release()


def test_the_accepting_process_caps_associations_per_address_across_its_workers(relais, world, settings, monkeypatch):
    from tests.adapters.test_dicom_workers import Node

    relais.add_node(aet="TLSE_GW", host="127.0.0.1", port=104, establishment_id=world["toulouse"], kind="gateway")
    catch_up("directory", settings.eventsourcing_env(), relais)
    monkeypatch.setenv("RELAIS_DICOM_MAX_ASSOCIATIONS_PER_PEER", "3")
    n = Node(settings, free_port())
    held: list = []
    try:
        wait_port(n.port, 60, n.process)
        n.wait_for(r"processus \d/2 prêt", count=2)
        held = [_associate(n.port) for _ in range(3)]  # spread over both workers
        assert all(a.is_established for a in held)
        assert not _associate(n.port).is_established
        n.wait_for(r"connexion de 127\.0\.0\.1 refusée : déjà 3 associations ouvertes")
        held.pop().release()
        deadline = time.monotonic() + 30
        while True:  # the worker tells the acceptor the association is over: a place is free again
            again = _associate(n.port)
            if again.is_established or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert again.is_established
        held.append(again)
    finally:
        for a in held:
            a.release()
        assert n.stop() == 0, n.output


def test_recovery_removes_data_sets_left_half_received_by_a_crash(tmp_path):
    import os

    from adapters.dicom.storage import PARTIAL_AGE

    store = InstanceStore(tmp_path / "dicom")
    fd, left = store.incoming()  # a worker killed while a large data set arrived, long ago
    os.close(fd)
    old = time.time() - PARTIAL_AGE - 60
    os.utime(left, (old, old))
    fd, arriving = store.incoming()  # arriving right now
    os.close(fd)
    assert store.remove_partial() == 1
    assert not left.exists() and arriving.exists()
    assert list(store.studies()) == []  # the folder of arriving data sets is not a study
