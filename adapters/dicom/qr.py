"""Query/Retrieve SCU: C-FIND (study, series and instance level), C-MOVE to our node, C-GET into our store."""

from __future__ import annotations

import queue
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.events import EventHandlerType
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # made at import by _generate_sop_classes: invisible to mypy
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from adapters.dicom.identifiers import (
    InstanceMatch,
    SeriesMatch,
    StudyMatch,
    instance_query,
    int_or_none,
    retrieve_query,
    series_match,
    series_query,
    status_reason,
    study_match,
    study_query,
    text_of,
)
from adapters.dicom.reactor import RequestorAE, nodelay

TIMEOUT = 30
# C-GET: the PACS sends on our association; propose what it may hold so that bytes come as stored.
GET_SYNTAXES = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, JPEG2000, JPEGBaseline8Bit,
    JPEGExtended12Bit, JPEGLosslessSV1, JPEGLSLossless, RLELossless,
]


class QRError(Exception):
    """A query or retrieve failed; `reason` is the French message shown to users."""

    def __init__(self, reason: str, code: str):
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class Peer:
    aet: str
    host: str
    port: int


@dataclass(frozen=True)
class RetrieveResult:
    status: int
    completed: int
    failed: int
    warning: int


INTERRUPTED = "connexion interrompue par le PACS"


def watch_closure(assoc: Any) -> None:
    """Makes the association remember that its peer ended it while we waited for a DIMSE message.

    pynetdicom's upper layer puts an empty message on the DIMSE queue when the peer's connection
    closes or it aborts (AA-2/3/4), so a send_*() waiting for an answer returns an empty status at
    once — the same empty status as after the DIMSE timeout. Told apart here (`closed_by_peer`), so
    that a killed PACS is reported as such, at once, and not as « délai dépassé »."""
    dimse = assoc.dimse

    def get_msg(block: bool = False) -> Any:
        try:
            item = dimse.msg_queue.get(block=block, timeout=dimse.dimse_timeout)
        except queue.Empty:  # nothing within the DIMSE timeout (or nothing yet, not blocking)
            return None, None
        if item[1] is None:  # put by the upper layer: the connection closed or the peer aborted
            assoc.closed_by_peer = True
        return item

    assoc.closed_by_peer = False
    dimse.get_msg = get_msg


def closed_by_peer(assoc: Any) -> bool:
    return bool(getattr(assoc, "closed_by_peer", False))


def end(assoc: Any) -> None:
    """Releases the association unless its peer already ended it (a release would then wait for an
    answer that cannot come: the ACSE timeout, 30 s)."""
    if assoc.is_established and not closed_by_peer(assoc):
        assoc.release()


class QuerySession:
    """C-FINDs on one association with a PACS (see `QueryRetrieve.session`)."""

    def __init__(self, qr: QueryRetrieve, peer: Peer):
        self.qr, self.peer = qr, peer
        self._assoc: Any = None

    def find(self, query: Dataset) -> list[Dataset]:
        if self._assoc is None or not self._assoc.is_established:
            self._assoc = self.qr._find_association(self.peer)
        return self.qr._find_on(self._assoc, query)

    def find_studies(self, **keys: str) -> list[StudyMatch]:
        rows = [study_match(ds) for ds in self.find(study_query(**keys))]
        return sorted(rows, key=lambda r: (r.study_date, r.study_instance_uid), reverse=True)

    def find_series(self, study_uid: str) -> list[SeriesMatch]:
        return [series_match(ds) for ds in self.find(series_query(study_uid))]

    def find_instances(self, study_uid: str, series_uid: str) -> list[InstanceMatch]:
        return [
            InstanceMatch(sop_instance_uid=text_of(ds, "SOPInstanceUID"), number=int_or_none(ds.get("InstanceNumber")))
            for ds in self.find(instance_query(study_uid, series_uid))
            if text_of(ds, "SOPInstanceUID")
        ]

    def close(self) -> None:
        if self._assoc is not None:
            end(self._assoc)
        self._assoc = None


class QueryRetrieve:
    """One SCU; every call opens its own association (TCP_NODELAY set, unlimited PDU)."""

    def __init__(self, calling_aet: str, timeout: float = TIMEOUT):
        self.calling_aet = calling_aet
        self.timeout = timeout

    def _ae(self) -> AE:
        ae = RequestorAE(ae_title=self.calling_aet)
        ae.maximum_pdu_size = 0
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.connection_timeout = 5
        return ae

    def _associate(self, ae: AE, peer: Peer, handlers: list[EventHandlerType] | None = None, **kw: Any) -> Any:
        try:
            assoc = ae.associate(
                peer.host, peer.port, ae_title=peer.aet, evt_handlers=[(evt.EVT_ESTABLISHED, nodelay), *(handlers or [])], **kw
            )
        except (OSError, RuntimeError) as e:  # pragma: no cover - pynetdicom catches most
            raise QRError(f"PACS injoignable ({peer.host}:{peer.port}) : {e}", "unreachable") from None
        if assoc.is_established:
            watch_closure(assoc)
            return assoc
        if assoc.is_rejected:
            raise QRError(
                f"le PACS {peer.aet} a refusé l'association (titre AE {self.calling_aet} inconnu du PACS ?)", "rejected"
            )
        try:  # tell "cannot connect" from "connected, then aborted"
            socket.create_connection((peer.host, peer.port), timeout=5).close()
        except OSError as e:
            raise QRError(f"PACS injoignable ({peer.host}:{peer.port}) : {e.strerror or e}", "unreachable") from None
        if assoc.is_aborted:
            raise QRError(f"le PACS {peer.aet} a interrompu l'association", "aborted")
        raise QRError(f"PACS injoignable ({peer.host}:{peer.port})", "unreachable")

    # ------------------------------------------------------------------ C-FIND

    def _find_on(self, assoc: Any, query: Dataset) -> list[Dataset]:
        out = []
        for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            if not status:
                if closed_by_peer(assoc):
                    raise QRError(f"{INTERRUPTED} pendant la recherche", "interrupted")
                raise QRError("délai dépassé : le PACS ne répond pas à la recherche", "timeout")
            code = status.Status
            if code in (0xFF00, 0xFF01) and identifier is not None:
                out.append(identifier)
            elif code != 0x0000:
                raise QRError(status_reason(code), "find_failed")
        return out

    def _find_association(self, peer: Peer) -> Any:
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        return self._associate(ae, peer)

    def _find(self, peer: Peer, query: Dataset) -> list[Dataset]:
        with self.session(peer) as s:
            return s.find(query)

    @contextmanager
    def session(self, peer: Peer) -> Iterator[QuerySession]:
        """Several C-FINDs on one association (opened at the first query, released at the end)."""
        s = QuerySession(self, peer)
        try:
            yield s
        finally:
            s.close()

    def find_studies(self, peer: Peer, **keys: str) -> list[StudyMatch]:
        """Study-level C-FIND with the dossier form's keys (dates as YYYYMMDD, name with * wildcards):
        patient_id, patient_name, birth_date, date_from, date_to, modality, accession_number,
        study_instance_uid."""
        with self.session(peer) as s:
            return s.find_studies(**keys)

    def find_series(self, peer: Peer, study_uid: str) -> list[SeriesMatch]:
        with self.session(peer) as s:
            return s.find_series(study_uid)

    def find_instances(self, peer: Peer, study_uid: str, series_uid: str) -> list[InstanceMatch]:
        """Instance-level C-FIND: the SOP Instance UIDs of one series."""
        with self.session(peer) as s:
            return s.find_instances(study_uid, series_uid)

    # ------------------------------------------------------------------ C-MOVE / C-GET

    @staticmethod
    def _final(assoc: Any, responses: Any, dest: str) -> RetrieveResult:
        last = None
        for status, _ in responses:
            if not status:
                if closed_by_peer(assoc):
                    raise QRError(f"{INTERRUPTED} pendant la récupération", "interrupted")
                raise QRError("délai dépassé : le PACS ne répond plus pendant la récupération", "timeout")
            last = status
            if status.Status not in (0xFF00, 0x0000, 0xB000):
                break
        if last is None:  # pragma: no cover
            raise QRError("aucune réponse du PACS", "timeout")
        result = RetrieveResult(
            status=int(last.Status), completed=int(last.get("NumberOfCompletedSuboperations") or 0),
            failed=int(last.get("NumberOfFailedSuboperations") or 0),
            warning=int(last.get("NumberOfWarningSuboperations") or 0),
        )
        if result.status == 0xA801:
            raise QRError(status_reason(result.status, dest), "destination_unknown")
        if result.status not in (0x0000, 0xB000):
            if not result.completed:  # e.g. Orthanc answers 0xC000 for a destination it does not know
                raise QRError(
                    f"le PACS a refusé d'envoyer l'étude vers la destination {dest} (statut DICOM "
                    f"0x{result.status:04X}) : destination non déclarée sur le PACS ?", "move_failed",
                )
            raise QRError(status_reason(result.status, dest), "move_failed")
        return result

    @staticmethod
    def _total(results: list[RetrieveResult]) -> RetrieveResult:
        return RetrieveResult(
            status=next((r.status for r in results if r.status), 0x0000),
            completed=sum(r.completed for r in results), failed=sum(r.failed for r in results),
            warning=sum(r.warning for r in results),
        )

    def move(
        self, peer: Peer, study_uid: str, destination: str, series_uids: list[str] | None = None,
        *, queries: list[Dataset] | None = None,
    ) -> RetrieveResult:
        """C-MOVE of the study (or some series) to `destination`; with `queries` (identifiers from
        `retrieve_query`), one C-MOVE per identifier, in turn on the same association."""
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = self._associate(ae, peer)
        try:
            return self._total([
                self._final(assoc, assoc.send_c_move(q, destination, StudyRootQueryRetrieveInformationModelMove), destination)
                for q in queries or [retrieve_query(study_uid, series_uids)]
            ])
        finally:
            end(assoc)

    def get(
        self, peer: Peer, study_uid: str, on_store: Callable[[evt.Event], int], on_end: Callable[[Any], object],
        series_uids: list[str] | None = None, *, queries: list[Dataset] | None = None,
    ) -> RetrieveResult:
        """C-GET: the PACS sends the instances on this association to `on_store`; `on_end(assoc)` after.
        With `queries`, one C-GET per identifier, in turn on the same association."""
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        classes = [cx.abstract_syntax for cx in StoragePresentationContexts[:120] if cx.abstract_syntax is not None]
        for sop_class in classes:
            ae.add_requested_context(sop_class, GET_SYNTAXES)
        roles = [build_role(sop_class, scp_role=True) for sop_class in classes]
        assoc = self._associate(ae, peer, [(evt.EVT_C_STORE, on_store)], ext_neg=roles)
        try:
            return self._total([
                self._final(assoc, assoc.send_c_get(q, StudyRootQueryRetrieveInformationModelGet), self.calling_aet)
                for q in queries or [retrieve_query(study_uid, series_uids)]
            ])
        finally:
            end(assoc)
            on_end(assoc)
