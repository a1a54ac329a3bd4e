"""The platform's DICOM node (SCP): accepts only the AE titles of the directory's nodes."""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from collections.abc import Callable

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

log = logging.getLogger("relais.dicom")

REFRESH_SECONDS = 5.0


def _nodelay(event: evt.Event) -> None:
    """Disables Nagle on every accepted association (see field notes: 55 s vs 1 s per 1,000 images)."""
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):  # pragma: no cover
        pass


def _on_echo(event: evt.Event) -> int:
    return 0x0000


def _on_accepted(event: evt.Event) -> None:
    log.info("association acceptée : %s depuis %s", event.assoc.requestor.ae_title, event.assoc.requestor.address)


def _on_rejected(event: evt.Event) -> None:
    log.warning(
        "association refusée : %s depuis %s (titre AE inconnu ou contexte non pris en charge)",
        event.assoc.requestor.ae_title, event.assoc.requestor.address,
    )


class DicomNode:
    """The SCP: C-ECHO for now; calling AE titles are checked against the directory."""

    def __init__(self, *, aet: str, host: str, port: int, known_aets: Callable[[], set[str]]):
        self.aet, self.host, self.port = aet, host, port
        self.known_aets = known_aets
        # An empty list would let every caller in: an unguessable placeholder refuses them all.
        self._nobody = "NOPEER" + secrets.token_hex(5).upper()
        self.ae = AE(ae_title=aet)
        self.ae.maximum_pdu_size = 0
        self.ae.add_supported_context(Verification)
        self.server = None
        self._refresh()

    def _refresh(self) -> None:
        try:
            aets = sorted(self.known_aets())
        except Exception:  # keep the previous list if the directory cannot be read
            log.exception("annuaire DICOM illisible, liste des nœuds inchangée")
            return
        self.ae.require_calling_aet = aets or [self._nobody]

    def serve(self, stop: threading.Event) -> None:
        handlers = [
            (evt.EVT_C_ECHO, _on_echo),
            (evt.EVT_ACCEPTED, _on_accepted),
            (evt.EVT_REJECTED, _on_rejected),
            (evt.EVT_ESTABLISHED, _nodelay),
        ]
        self.server = self.ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        log.info("nœud DICOM %s à l'écoute sur %s:%s", self.aet, self.host, self.port)
        try:
            while not stop.wait(REFRESH_SECONDS):
                self._refresh()
        finally:
            self.server.shutdown()
            log.info("nœud DICOM arrêté")
