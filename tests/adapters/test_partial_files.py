"""Temporary `.part` files a crash left mid-write are removed at recovery; a write in progress is not
touched (they stayed for ever before, in the patient data folder)."""

from __future__ import annotations

import os
import time

from adapters.dicom.receive import recover
from adapters.dicom.storage import PARTIAL_AGE, InstanceStore

EST = "2f1c6a52-6a53-4d1e-9a8b-3f8a2b1c0d9e"
STUDY = "1.2.826.0.1.3680043.8.498.1"


def test_recovery_removes_what_a_crash_left_mid_write_and_only_that(tmp_path):
    store = InstanceStore(tmp_path / "dicom")
    assert store.put(EST, STUDY, "1.2.826.0.1.3680043.8.498.1.1", b"DICM")
    folder = store.study_dir(EST, STUDY)
    left = folder / ".1.2.826.0.1.3680043.8.498.1.2.dcm.0a1b2c3d.part"  # a worker killed mid-write, long ago
    left.write_bytes(b"half an instance")
    old = time.time() - PARTIAL_AGE - 60
    os.utime(left, (old, old))
    writing = folder / ".1.2.826.0.1.3680043.8.498.1.3.dcm.4e5f6a7b.part"  # another process writing right now
    writing.write_bytes(b"being written")
    recorded: list = []
    recover(store, lambda est, instances, source: recorded.append(len(instances)), lambda est, study: set())
    assert not left.exists()
    assert writing.exists()
    assert (folder / "1.2.826.0.1.3680043.8.498.1.1.dcm").exists()
