"""The platform's DICOM node (SCP): C-ECHO and C-STORE, only for the AE titles of the directory's nodes."""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.events import EventHandlerType
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import by _generate_sop_classes: invisible to mypy

from adapters.dicom.reactor import NodeServer, nodelay, quiet_pynetdicom
from adapters.dicom.receive import REFUSED_NOT_AUTHORIZED, Receiver
from adapters.dicom.workers import ChannelServer

log = logging.getLogger("relais.dicom")

REFRESH_SECONDS = 5.0

S = TypeVar("S", bound=NodeServer)

# Accepted as sent, never transcoded: the bytes are stored as received.
TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
    JPEG2000Lossless, JPEG2000, RLELossless,
]


def _on_echo(event: evt.Event) -> int:
    return 0x0000


def _on_accepted(event: evt.Event) -> None:
    log.info("association acceptée : %s depuis %s", event.assoc.requestor.ae_title, event.assoc.requestor.address)


def _on_rejected(event: evt.Event) -> None:
    log.warning(
        "association refusée : %s depuis %s (titre AE inconnu ou contexte non pris en charge)",
        event.assoc.requestor.ae_title, event.assoc.requestor.address,
    )


class DicomNodeServer:
    """The SCP: C-ECHO, and C-STORE when given a receiver; calling AE titles are checked against
    the directory, which also says for which establishment a node's instances are received.

    `known_aets` returns the AE titles (a set) or AE title -> establishment id (a mapping).
    """

    def __init__(
        self, *, aet: str, host: str, port: int,
        known_aets: Callable[[], set[str] | Mapping[str, str]], receiver: Receiver | None = None,
        channel: socket.socket | None = None,
    ):
        self.aet, self.host, self.port = aet, host, port
        self.channel = channel  # a worker of the node: connections come from the acceptor (workers.py)
        self.known_aets = known_aets
        self.receiver = receiver
        self.nodes: dict[str, str] = {}
        # An empty list would let every caller in: an unguessable placeholder refuses them all.
        self._nobody = "NOPEER" + secrets.token_hex(5).upper()
        quiet_pynetdicom()
        self.ae = AE(ae_title=aet)
        self.ae.maximum_pdu_size = 0
        self.ae.add_supported_context(Verification)
        if receiver is not None:
            for cx in AllStoragePresentationContexts:
                if cx.abstract_syntax is not None:
                    self.ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)
        self.server: NodeServer | None = None
        self._refresh()

    def _refresh(self) -> None:
        try:
            known = self.known_aets()
        except Exception:  # keep the previous list if the directory cannot be read
            log.exception("annuaire DICOM illisible, liste des nœuds inchangée")
            return
        self.nodes = dict(known) if isinstance(known, Mapping) else {a: "" for a in known}
        self.ae.require_calling_aet = sorted(self.nodes) or [self._nobody]

    def _on_store(self, event: evt.Event) -> int:
        aet = event.assoc.requestor.ae_title
        establishment_id = self.nodes.get(aet)
        if not establishment_id or self.receiver is None:
            log.warning("C-STORE refusé : %s n'est rattaché à aucun établissement", aet)
            return REFUSED_NOT_AUTHORIZED
        return self.receiver.store_event(
            event, establishment_id=establishment_id, source={"kind": "dicom_store", "calling_aet": aet},
        )

    def _on_end(self, event: evt.Event) -> None:
        if self.receiver is not None:
            self.receiver.flush(event.assoc)

    def _tell_acceptor(self, event: evt.Event) -> None:
        if isinstance(self.server, ChannelServer):
            self.server.ended()

    def _make_server(self, server_class: type[S], handlers: list[EventHandlerType], **kwargs: Any) -> S:
        # AE.make_server builds a `server_class` (its annotation adds "or a ThreadedAssociationServer")
        return cast(S, self.ae.make_server((self.host, self.port), evt_handlers=handlers, server_class=server_class, **kwargs))

    def serve(self, stop: threading.Event) -> None:
        handlers: list[EventHandlerType] = [
            (evt.EVT_C_ECHO, _on_echo),
            (evt.EVT_ACCEPTED, _on_accepted),
            (evt.EVT_REJECTED, _on_rejected),
            (evt.EVT_ESTABLISHED, nodelay),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_RELEASED, self._on_end),
            (evt.EVT_ABORTED, self._on_end),
            (evt.EVT_CONN_CLOSE, self._on_end),
        ]
        channel_server: ChannelServer | None = None
        if self.channel is None:
            server = self.server = self._make_server(NodeServer, handlers)
            log.info("nœud DICOM %s à l'écoute sur %s:%s", self.aet, self.host, self.port)
        else:
            handlers.append((evt.EVT_CONN_CLOSE, self._tell_acceptor))
            server = self.server = channel_server = self._make_server(ChannelServer, handlers, channel=self.channel)
        threading.Thread(target=server.serve_forever, name="relais-dicom-server", daemon=True).start()
        if channel_server is not None:
            channel_server.ready()
        try:
            while not stop.wait(REFRESH_SECONDS):
                if channel_server is not None and channel_server.lost_acceptor.is_set():
                    log.warning("nœud DICOM : processus d'accueil disparu, arrêt")
                    break
                self._refresh()
        finally:
            server.shutdown()
            if self.receiver is not None:
                self.receiver.close()
            log.info("nœud DICOM arrêté")
