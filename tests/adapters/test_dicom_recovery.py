"""Recovery passes of the DICOM node (adapters/dicom/recovery.py): instances stored but not recorded
(their process killed with the batch in memory) are recorded by the next pass of any process, each
exactly once even when several processes pass at once, and a pass looks only at what changed."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from adapters.dicom.recovery import SLACK, ChangedStudies, Recovery
from adapters.dicom.storage import PARTIAL_AGE, InstanceStore
from domain.imaging import received_study_id
from entrypoints.bootstrap import build_app, open_view_as
from entrypoints.dicom_node import recovery
from projections.imaging import PostgresImagingView

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_study  # noqa: E402


def recorded_times(relais, establishment_id: str, study_uid: str) -> Counter[str]:
    """How many times each SOP Instance UID is in the study's events."""
    sid = received_study_id(establishment_id, study_uid)
    seen: Counter[str] = Counter()
    if sid in relais.repository:
        for e in relais.repository.event_store.get(sid):
            for i in getattr(e, "instances", None) or []:
                seen[i["sop"]] += 1
    return seen


def stored_unrecorded(store: InstanceStore, establishment_id: str, folder: Path, **kwargs) -> dict:  # type: ignore[no-untyped-def]
    """A study written to the store as the node writes it, not recorded (its batch died with its process)."""
    study = write_study(folder, **kwargs)
    for f, sop in zip(study["files"], study["sops"], strict=True):
        store.put(establishment_id, study["study_uid"], sop, f.read_bytes())
    return study


class Process:
    """What one process of the node has: its own application (connections) and imaging view."""

    def __init__(self, settings):  # type: ignore[no-untyped-def]
        self.app = build_app(settings)
        self.imaging = open_view_as(PostgresImagingView, "imaging", settings.small_pool_env())
        self.passes = recovery(settings, self.app, self.imaging)

    def close(self) -> None:
        self.imaging.datastore.close()
        self.app.close()


def test_processes_recovering_at_once_record_each_instance_exactly_once(relais, world, settings, tmp_path):
    store = InstanceStore(settings.dicom_root)
    processes = [Process(settings) for _ in range(3)]
    try:
        for round_ in range(3):  # several rounds: the passes overlap on the same studies each time
            studies = [stored_unrecorded(store, world["toulouse"], tmp_path / f"r{round_}s{k}", series=2, per_series=15)
                       for k in range(3)]
            start = threading.Barrier(len(processes))
            found: list[int] = []
            errors: list[BaseException] = []

            def run(p: Process) -> None:
                try:
                    start.wait(30)
                    found.append(p.passes.run(full=True))
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)

            threads = [threading.Thread(target=run, args=(p,)) for p in processes]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert not errors, errors
            for study in studies:
                times = recorded_times(relais, world["toulouse"], study["study_uid"])
                assert set(times) == set(study["sops"])
                assert set(times.values()) == {1}, [s for s, n in times.items() if n > 1]
            assert sum(found) >= 90  # each recorded by one of them (a pass may count one another recorded meanwhile)
    finally:
        for p in processes:
            p.close()


def test_a_pass_looks_only_at_the_study_folders_changed_since_the_last_complete_pass(relais, world, settings, tmp_path):
    store = InstanceStore(settings.dicom_root)
    old = stored_unrecorded(store, world["toulouse"], tmp_path / "old", series=1, per_series=3)
    p = Process(settings)
    looked: list[list[tuple[str, str]]] = []
    passes = Recovery(settings.dicom_root, lambda s: (looked.append(list(s.studies())), p.passes.recover(s))[1])
    try:
        assert passes.run() == 3  # no pass ever: everywhere
        assert looked[-1] == [(world["toulouse"], old["study_uid"])]
        # folders not changed since (their mtime set back past the slack): not looked at
        past = time.time() - 10 * SLACK
        os.utime(store.study_dir(world["toulouse"], old["study_uid"]), (past, past))
        assert passes.run() == 0 and looked[-1] == []
        new = stored_unrecorded(store, world["toulouse"], tmp_path / "new", series=1, per_series=2)
        assert passes.run() == 2
        assert looked[-1] == [(world["toulouse"], new["study_uid"])]
        assert set(recorded_times(relais, world["toulouse"], new["study_uid"]).values()) == {1}
        assert passes.run(full=True) == 0 and len(looked[-1]) == 2
    finally:
        p.close()


def test_a_crash_s_temporary_file_is_removed_by_the_first_pass_after_it_is_old_enough(world, settings, tmp_path):
    store = InstanceStore(settings.dicom_root)
    study = stored_unrecorded(store, world["toulouse"], tmp_path / "s", series=1, per_series=1)
    folder = store.study_dir(world["toulouse"], study["study_uid"])
    part = folder / ".1.2.3.dcm.0badc0de.part"
    part.write_bytes(b"half")
    now = time.time()
    os.utime(part, (now - PARTIAL_AGE - 30, now - PARTIAL_AGE - 30))  # written 5½ minutes ago
    os.utime(folder, (now - PARTIAL_AGE - 30, now - PARTIAL_AGE - 30))
    # the last pass began a minute ago: the folder changed before it, but not before the part could be old
    assert ChangedStudies(store.root, now - 60 - SLACK).remove_partial() == 1
    assert not part.exists()


def test_a_process_passes_periodically_without_restarting(relais, world, settings, tmp_path):
    store = InstanceStore(settings.dicom_root)
    p = Process(settings)
    passes = Recovery(settings.dicom_root, p.passes.recover, every=0.5).start()
    try:
        study = stored_unrecorded(store, world["toulouse"], tmp_path / "late", series=1, per_series=4)
        deadline = time.monotonic() + 60
        while len(recorded_times(relais, world["toulouse"], study["study_uid"])) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert set(recorded_times(relais, world["toulouse"], study["study_uid"]).values()) == {1}
        assert len(recorded_times(relais, world["toulouse"], study["study_uid"])) == 4
    finally:
        passes.close()
        p.close()
