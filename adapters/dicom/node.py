"""Composition of the DICOM node process: store, receiver (events in batches), auto-attach, SCP."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from adapters.dicom.receive import Receiver, recover
from adapters.dicom.scp import DicomNode
from adapters.dicom.storage import InstanceStore
from adapters.settings import Settings
from application import Relais
from application.imaging import ReceivedInstance, StudyUpdate
from domain.imaging import received_study_id
from projections.imaging import PostgresImagingView

log = logging.getLogger("relais.dicom")


def small_pool_env(settings: Settings) -> dict[str, str]:
    """eventsourcing env for read-only views of a process: one connection, two more under load
    (the platform's processes share PostgreSQL's max_connections)."""
    return dict(settings.eventsourcing_env(), POSTGRES_POOL_SIZE="1", POSTGRES_MAX_OVERFLOW="2")


def dicom_root(settings: Settings):
    """Where received instances live (RELAIS_DATA_DIR/dicom)."""
    return settings.data_dir / "dicom"


def attach_awaiting(app: Relais, view: PostgresImagingView, updates: list[StudyUpdate]) -> list[str]:
    """Attaches each updated study to the dossiers awaiting its Accession Number."""
    attached = []
    for u in updates:
        if not u.accession_number or not u.new_instances:
            continue
        dossiers = view.awaiting(u.establishment_id, u.accession_number)
        if dossiers:
            attached += app.auto_attach(study_id=u.study_id, dossier_ids=dossiers)
    return attached


def recorder(app: Relais):
    def record(establishment_id: str, items: list[ReceivedInstance], source: dict) -> list[StudyUpdate]:
        return app.record_received(establishment_id=establishment_id, instances=items, source=source)

    return record


def recorded_sops(app: Relais):
    def known(establishment_id: str, study_uid: str) -> set[str]:
        sid = received_study_id(establishment_id, study_uid)
        if sid not in app.repository:
            return set()
        return set(app.repository.get(sid).instances)

    return known


def recover_unrecorded(app: Relais, store: InstanceStore) -> int:
    found = recover(store, recorder(app), recorded_sops(app))
    if found:
        log.warning("%d instances reçues avant un arrêt brutal ont été enregistrées", found)
    return found


@contextmanager
def dicom_node(
    settings: Settings, app: Relais, directory, imaging: PostgresImagingView, *, channel=None,
) -> Iterator[DicomNode]:
    """The SCP with C-STORE, its instances recorded in `app`; what a crash left unrecorded is
    recorded first (by the accepting process when the node has several: `channel` is then this
    worker's connection source)."""
    store = InstanceStore(dicom_root(settings))
    record = recorder(app)
    if channel is None:
        recover_unrecorded(app, store)
    receiver = Receiver(store=store, record=record, after_record=lambda u: attach_awaiting(app, imaging, u)).start()
    node = DicomNode(
        aet=settings.dicom_aet, host=settings.dicom_host, port=settings.dicom_port,
        known_aets=directory.node_establishments, receiver=receiver, channel=channel,
    )
    try:
        yield node
    finally:
        receiver.close()
