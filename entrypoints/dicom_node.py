"""The DICOM node process (`relais scp`): one server, or an acceptor handing associations to workers."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from adapters.dicom.receive import Receiver
from adapters.dicom.recording import attach_awaiting, recorder, recover_unrecorded
from adapters.dicom.scp import DicomNodeServer
from adapters.dicom.storage import InstanceStore
from adapters.dicom.workers import CHANNEL_FD_ENV, Acceptor, channel_from_fd
from adapters.live import LiveFeed, follow_in_thread
from adapters.settings import Settings, conninfo
from application import Relais
from entrypoints.bootstrap import build_app, open_view_as, upgrade
from projections.directory import NODES_CHANNEL, PostgresDirectoryView
from projections.imaging import PostgresImagingView

log = logging.getLogger("relais.dicom")


@contextmanager
def node_server(
    settings: Settings, app: Relais, directory: PostgresDirectoryView, imaging: PostgresImagingView, *,
    channel: socket.socket | None = None,
) -> Iterator[DicomNodeServer]:
    """The SCP with C-STORE, its instances recorded in `app`; what a crash left unrecorded is
    recorded first (by the accepting process when the node has several: `channel` is then this
    worker's connection source)."""
    store = InstanceStore(settings.dicom_root)
    if channel is None:
        recover_unrecorded(app, store)
    receiver = Receiver(
        store=store, record=recorder(app), after_record=lambda u: attach_awaiting(app, imaging, u),
    ).start()
    node = DicomNodeServer(
        aet=settings.dicom_aet, host=settings.dicom_host, port=settings.dicom_port,
        known_aets=directory.node_peers, receiver=receiver, channel=channel, watch=directory_changes(settings),
    )
    try:
        yield node
    finally:
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
        recover_unrecorded(app, InstanceStore(settings.dicom_root))
    finally:
        app.close()
    acceptor = Acceptor(
        host=settings.dicom_host, port=settings.dicom_port, count=settings.dicom_workers,
        env={**os.environ, "RELAIS_DATABASE_URL": settings.database_url or "", "PYTHONUNBUFFERED": "1",
             "RELAIS_TABLES_READY": "1"},
        command=[*command, "scp"],
    )
    try:
        acceptor.open()
        acceptor.serve(stop)
    finally:
        acceptor.close()
    return acceptor.failed
