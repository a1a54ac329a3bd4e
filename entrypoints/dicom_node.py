"""The DICOM node process (`relais scp`): one server, or an acceptor handing associations to workers."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from eventsourcing.persistence import InterfaceError, OperationalError

from adapters.dicom.receive import Receiver, recover
from adapters.dicom.recording import attach_awaiting, recorded_sops, recorder
from adapters.dicom.recovery import EVERY, Recovery
from adapters.dicom.scp import DicomNodeServer
from adapters.dicom.storage import InstanceStore
from adapters.dicom.workers import CHANNEL_FD_ENV, Acceptor, channel_from_fd
from adapters.live import LiveFeed, follow_in_thread
from adapters.settings import Settings, conninfo
from application import Relais
from application.imaging import ReceivedInstance, StudyUpdate
from domain.values import Json
from entrypoints.bootstrap import build_app, open_view_as, upgrade
from projections.directory import NODES_CHANNEL, PostgresDirectoryView
from projections.imaging import PostgresImagingView

log = logging.getLogger("relais.dicom")


ATTACH_PATIENCE = 15.0  # seconds of database errors after which what follows a batch is given up (logged)


def after_record(app: Relais, imaging: PostgresImagingView) -> Callable[[list[StudyUpdate]], object]:
    """What follows the recording of received instances: the dossiers awaiting them get their study,
    those holding it check the new instances' patient. Tried again while the database fails, for up to
    ATTACH_PATIENCE: after a PostgreSQL restart the first query on each pooled connection fails (the server
    cut it), and the app's and the imaging view's pools may each hold ten (POSTGRES_POOL_SIZE 2 + overflow 8)
    — three tries were too few under load, and what followed that batch was skipped for good (attaching and
    checking again change nothing)."""

    def follow(updates: list[StudyUpdate]) -> object:
        give_up = time.monotonic() + ATTACH_PATIENCE
        attempt = 0
        while True:
            attempt += 1
            try:
                return attach_awaiting(app, imaging, updates)
            except (OperationalError, InterfaceError):  # a connection cut or closed under it
                if time.monotonic() >= give_up:
                    raise
                time.sleep(min(0.1 * attempt, 0.5))  # a dead connection fails at once: each try drops one

    return follow


def recovery(settings: Settings, app: Relais, imaging: PostgresImagingView) -> Recovery:
    """Passes recording what was stored but not recorded (a process of the node killed with batches
    in memory), then what follows a batch recorded, as for a batch (`after_record`)."""
    record, then = recorder(app), after_record(app, imaging)

    def record_and_follow(establishment_id: str, items: list[ReceivedInstance], source: Json) -> list[StudyUpdate]:
        updates = record(establishment_id, items, source)
        try:
            then(updates)
        except Exception:
            log.exception("rattachement automatique en échec")
        return updates

    return Recovery(settings.dicom_root, lambda store: recover(store, record_and_follow, recorded_sops(app)))


@contextmanager
def node_server(
    settings: Settings, app: Relais, directory: PostgresDirectoryView, imaging: PostgresImagingView, *,
    channel: socket.socket | None = None,
) -> Iterator[DicomNodeServer]:
    """The SCP with C-STORE, its instances recorded in `app`. What a crash left unrecorded is
    recorded at start, then every minute: by this process at once when it is the whole node; when
    the node has several (`channel` is then this worker's connection source), the accepting process
    looked everywhere at the node's start, and each worker looks, in the background, as it starts
    (the acceptor starts again a worker that died) and every minute."""
    store = InstanceStore(settings.dicom_root)
    passes = recovery(settings, app, imaging)
    if channel is None:
        passes.run(full=True)
    passes.start(first_after=EVERY if channel is None else 0.0)
    receiver = Receiver(store=store, record=recorder(app), after_record=after_record(app, imaging)).start()
    node = DicomNodeServer(
        aet=settings.dicom_aet, host=settings.dicom_host, port=settings.dicom_port,
        known_aets=directory.node_peers, receiver=receiver, channel=channel, watch=directory_changes(settings),
        max_per_peer=settings.dicom_max_associations_per_peer,
    )
    try:
        yield node
    finally:
        passes.close()
        receiver.close()


def directory_changes(settings: Settings) -> Callable[[Callable[[object], None], threading.Event], None]:
    """Follows the directory's node notifications (one LISTEN connection per serving process)."""
    def watch(on_change: Callable[[object], None], stop: threading.Event) -> None:
        feed = LiveFeed(conninfo(settings.database_url or ""), NODES_CHANNEL, application_name="relais-dicom-directory")
        follow_in_thread(feed, on_change, stop)
    return watch


def serve(settings: Settings, stop: threading.Event, command: list[str]) -> str | None:
    """Serves until `stop`; returns why the node gave up, if it did. A worker of a several-process
    node is told its connection source by CHANNEL_FD_ENV; the acceptor starts workers with `command`.
    Raises OSError when the port cannot be listened on."""
    channel = channel_from_fd(os.environ.pop(CHANNEL_FD_ENV, None))
    if channel is None and settings.dicom_workers > 1:
        return _accept(settings, stop, command)
    env = settings.small_pool_env()
    app = build_app(settings)
    try:
        directory = open_view_as(PostgresDirectoryView, "directory", env)
        imaging = open_view_as(PostgresImagingView, "imaging", env)
        with node_server(settings, app, directory, imaging, channel=channel) as node:
            node.serve(stop)
    finally:
        app.close()
    return None


def _accept(settings: Settings, stop: threading.Event, command: list[str]) -> str | None:
    upgrade(settings)  # the workers start together: they find the tables made
    app = build_app(settings)
    try:
        imaging = open_view_as(PostgresImagingView, "imaging", settings.small_pool_env())
        try:
            recovery(settings, app, imaging).run(full=True)
        finally:
            imaging.datastore.close()
    finally:
        app.close()
    acceptor = Acceptor(
        host=settings.dicom_host, port=settings.dicom_port, count=settings.dicom_workers,
        env={**os.environ, "RELAIS_DATABASE_URL": settings.database_url or "", "PYTHONUNBUFFERED": "1",
             "RELAIS_TABLES_READY": "1"},
        command=[*command, "scp"], per_peer=settings.dicom_max_associations_per_peer,
    )
    try:
        acceptor.open()
        acceptor.serve(stop)
    finally:
        acceptor.close()
    return acceptor.failed
