"""The platform's DICOM node (SCP): C-ECHO and C-STORE, only for the directory's nodes, from their addresses."""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
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

from adapters.dicom.callers import Caller, callers
from adapters.dicom.reactor import NodeServer, nodelay, quiet_pynetdicom
from adapters.dicom.receive import REFUSED_NOT_AUTHORIZED, Receiver
from adapters.dicom.workers import ChannelServer
from projections.directory import NodePeer

log = logging.getLogger("relais.dicom")

REFRESH_SECONDS = 60.0
"""Seconds between two readings of the directory's nodes when nothing was notified: a safety net, the
changes themselves arrive by notification (`watch`) and take effect at once."""
TICK_SECONDS = 1.0  # how often the serving loop looks at its stop, its acceptor and the notifications

# A-ASSOCIATE-RJ: rejected permanent, by the service user, calling AE title not recognised
REJECT_CALLING_AE = (0x01, 0x01, 0x03)

MAX_PDU_SIZE = 1 << 20  # announced: peers send P-DATA PDUs of at most 1 MiB (pynetdicom reads a PDU whole)
MAX_ASSOCIATIONS_PER_PEER = 8

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

    `known_aets` returns the directory's nodes (AE title -> NodePeer: establishment and calling
    addresses), or bare AE titles (a set, or AE title -> establishment id) admitted from any address.
    `watch(on_change, stop)`, when given, blocks until `stop` calling `on_change` whenever the
    directory's nodes changed (a PostgreSQL notification): they are read again at once.
    """

    def __init__(
        self, *, aet: str, host: str, port: int,
        known_aets: Callable[[], set[str] | Mapping[str, str] | Mapping[str, NodePeer]], receiver: Receiver | None = None,
        channel: socket.socket | None = None, watch: Callable[[Callable[[object], None], threading.Event], None] | None = None,
        max_per_peer: int | None = MAX_ASSOCIATIONS_PER_PEER,
    ):
        self.aet, self.host, self.port = aet, host, port
        self.max_per_peer = max_per_peer  # connections at a time from one address (the acceptor's, with workers)
        self.channel = channel  # a worker of the node: connections come from the acceptor (workers.py)
        self.known_aets = known_aets
        self.receiver = receiver
        self.watch = watch
        self.nodes: dict[str, Caller] = {}
        self._changed = threading.Event()
        # An empty list would let every caller in: an unguessable placeholder refuses them all.
        self._nobody = "NOPEER" + secrets.token_hex(5).upper()
        quiet_pynetdicom()
        self.ae = AE(ae_title=aet)
        self.ae.maximum_pdu_size = MAX_PDU_SIZE
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
        self.nodes = callers(known)
        self.ae.require_calling_aet = sorted(self.nodes) or [self._nobody]

    def _on_store(self, event: evt.Event) -> int:
        aet = event.assoc.requestor.ae_title
        caller = self.nodes.get(aet)
        establishment_id = caller.establishment_id if caller is not None else ""
        if not establishment_id or self.receiver is None:
            log.warning("C-STORE refusé : %s n'est rattaché à aucun établissement", aet)
            return REFUSED_NOT_AUTHORIZED
        return self.receiver.store_event(
            event, establishment_id=establishment_id, source={"kind": "dicom_store", "calling_aet": aet},
        )

    def _on_requested(self, event: evt.Event) -> None:
        """A known AE title calling from an address that is not its node's is rejected before any
        negotiation (unknown AE titles are rejected by pynetdicom's `require_calling_aet`)."""
        assoc = event.assoc
        try:
            request = assoc.requestor.primitive
            aet = str(request.calling_ae_title if request is not None else "").strip()
            address = str(assoc.requestor.address)
            caller = self.nodes.get(aet)
            if caller is None or caller.admits(address):
                return
            log.warning(
                "association refusée : %s depuis %s (adresse non autorisée pour ce nœud : %s ; ajoutez-la à "
                "son entrée de l'annuaire, ou « adresse non vérifiée » derrière une traduction d'adresses)",
                aet, address, ", ".join(caller.addresses) or "aucune",
            )
        except Exception:  # noqa: BLE001 - never let a caller in because the check failed
            log.exception("association refusée : contrôle de l'appelant en erreur")
        assoc.acse.send_reject(*REJECT_CALLING_AE)
        assoc.kill()

    def _on_end(self, event: evt.Event) -> None:
        if self.receiver is not None:
            self.receiver.end(event.assoc)

    def _tell_acceptor(self, event: evt.Event) -> None:
        if isinstance(self.server, ChannelServer):
            self.server.ended(str(event.assoc.requestor.address))

    def _make_server(self, server_class: type[S], handlers: list[EventHandlerType], **kwargs: Any) -> S:
        # AE.make_server builds a `server_class` (its annotation adds "or a ThreadedAssociationServer")
        return cast(S, self.ae.make_server((self.host, self.port), evt_handlers=handlers, server_class=server_class, **kwargs))

    def serve(self, stop: threading.Event) -> None:
        handlers: list[EventHandlerType] = [
            (evt.EVT_REQUESTED, self._on_requested),
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
        server.spill = self.receiver.spill() if self.receiver is not None else None
        server.per_peer = self.max_per_peer if channel_server is None else None
        threading.Thread(target=server.serve_forever, name="relais-dicom-server", daemon=True).start()
        if channel_server is not None:
            channel_server.ready()
        if self.watch is not None:
            watch = self.watch
            threading.Thread(
                target=lambda: watch(lambda _: self._changed.set(), stop), name="relais-dicom-directory", daemon=True,
            ).start()
        read_at = time.monotonic()
        try:
            while not stop.is_set():
                changed = self._changed.wait(TICK_SECONDS)
                if stop.is_set():
                    break
                if channel_server is not None and channel_server.lost_acceptor.is_set():
                    log.warning("nœud DICOM : processus d'accueil disparu, arrêt")
                    break
                if changed or time.monotonic() - read_at >= REFRESH_SECONDS:
                    self._changed.clear()  # before reading: a change notified while reading is read again
                    self._refresh()
                    read_at = time.monotonic()
        finally:
            server.shutdown()
            if self.receiver is not None:
                self.receiver.close()
            log.info("nœud DICOM arrêté")
