"""Retrieving a study from a PACS into a dossier: C-MOVE or C-GET, completeness check, resume, outcome."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from adapters.dicom.node import dicom_root, recorder
from adapters.dicom.qr import Peer, QRError, QueryRetrieve, SeriesMatch
from adapters.dicom.receive import Receiver
from adapters.dicom.storage import InstanceStore
from adapters.jobs import job
from application import Relais
from domain.directory import DicomNode, node_id
from domain.imaging import received_study_id

log = logging.getLogger("relais.dicom")


@dataclass(frozen=True)
class RetrieveOutcome:
    status: str  # completed | incomplete | failed
    reason: str
    expected: int
    received: int
    attempts: int
    study_id: str


def retrieve_job_id(dossier_id: str, study_uid: str) -> str:
    return f"retrieve:{dossier_id}:{study_uid}"


class Retriever:
    """Retrieves a study (or some of its series) until every instance the PACS announced is recorded.

    C-MOVE: the PACS sends to our node (the `relais scp` process records them); C-GET: on our own
    association, stored and recorded here. After each attempt the instances recorded are counted
    per series against the PACS's series-level counts; what is missing is asked again on a new
    association (instances already there are deduplicated), up to `attempts` times.
    """

    def __init__(
        self, *, app: Relais, store: InstanceStore, our_aet: str, attempts: int = 3,
        settle: float = 2.0, max_wait: float = 120.0, timeout: float = 30.0,
    ):
        self.app = app
        self.store = store
        self.our_aet = our_aet
        self.attempts = attempts
        self.settle = settle
        self.max_wait = max_wait
        self.qr = QueryRetrieve(our_aet, timeout=timeout)

    def _recorded(self, establishment_id: str, study_uid: str) -> dict[str, int]:
        """Instances recorded per series."""
        sid = received_study_id(establishment_id, study_uid)
        if sid not in self.app.repository:
            return {}
        counts: dict[str, int] = {}
        for series in self.app.repository.get(sid).instances.values():
            counts[series] = counts.get(series, 0) + 1
        return counts

    def _wait_for_moved(self, establishment_id: str, study_uid: str, wanted: list[SeriesMatch], expected: int) -> None:
        """C-MOVE: our node records in batches; wait until complete, or no progress for `settle` s."""
        deadline = time.monotonic() + self.max_wait
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            counts = self._recorded(establishment_id, study_uid)
            got = sum(counts.get(s.series_instance_uid, 0) for s in wanted)
            if got >= expected:
                return
            if got != last:
                last, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > self.settle:
                return
            time.sleep(0.1)

    def retrieve(
        self, *, dossier_id: str, study_uid: str, node_aet: str, series_uids: list[str] | None = None,
    ) -> RetrieveOutcome:
        node = self.app.load(DicomNode, node_id(node_aet), "PACS")
        est = node.establishment_id
        peer = Peer(node.aet, node.host, node.port)
        method = node.retrieve_method
        patient: dict = {}
        study: dict = {}
        expected = received = attempts = 0
        status, reason = "failed", ""

        def record(state: str, why: str = "") -> str:
            return self.app.record_retrieve(
                establishment_id=est, study_instance_uid=study_uid, patient=patient, study=study,
                dossier_id=dossier_id, node_aet=node.aet, method=method, status=state, reason=why,
                expected=expected, received=received,
            )

        try:
            matches = self.qr.find_studies(peer, study_instance_uid=study_uid)
            if not matches:
                raise QRError("étude introuvable sur le PACS", "not_found")
            m = matches[0]
            patient = {"id": m.patient_id, "name": m.patient_name, "birth_date": m.patient_birth_date, "sex": m.patient_sex}
            study = {"accession_number": m.accession_number, "date": m.study_date, "description": m.description}
            series = self.qr.find_series(peer, study_uid)
            wanted = [s for s in series if not series_uids or s.series_instance_uid in series_uids]
            if series_uids and not wanted:
                raise QRError("séries demandées introuvables sur le PACS", "not_found")
            expected = sum(s.instance_count or 0 for s in wanted)
            if not series_uids and m.instance_count:
                expected = max(expected, m.instance_count)
            counts = self._recorded(est, study_uid)
            received = sum(counts.get(s.series_instance_uid, 0) for s in wanted)
            record("started")
            while attempts < self.attempts and (received < expected or not expected):
                missing = [
                    s for s in wanted
                    if s.instance_count is None or counts.get(s.series_instance_uid, 0) < s.instance_count
                ]
                whole = not series_uids and len(missing) == len(series)
                ask = None if whole else [s.series_instance_uid for s in missing]
                attempts += 1
                try:
                    if method == "get":
                        receiver = Receiver(store=self.store, record=recorder(self.app))
                        source = {"kind": "pacs_retrieve", "calling_aet": node.aet}
                        self.qr.get(
                            peer, study_uid, lambda e: receiver.store_event(e, establishment_id=est, source=source),
                            receiver.flush, ask,
                        )
                        receiver.flush_all()
                    else:
                        self.qr.move(peer, study_uid, self.our_aet, ask)
                        self._wait_for_moved(est, study_uid, wanted, expected)
                except QRError as e:
                    if e.code not in ("timeout", "aborted") or attempts >= self.attempts:  # only transient ones
                        raise
                    log.warning("récupération %s, tentative %d : %s", study_uid, attempts, e.reason)
                counts = self._recorded(est, study_uid)
                received = sum(counts.get(s.series_instance_uid, 0) for s in wanted)
                if not expected:
                    break
            if expected and received >= expected:
                status, reason = "completed", ""
            else:
                status = "incomplete"
                reason = f"{received} instance(s) reçue(s) sur {expected} annoncée(s) après {attempts} tentative(s)"
        except QRError as e:
            status, reason = "failed", e.reason
        study_id = record(status, reason)
        if status == "completed":
            self.app.attach_retrieved(dossier_id=dossier_id, study_id=study_id)
        return RetrieveOutcome(
            status=status, reason=reason, expected=expected, received=received, attempts=attempts, study_id=study_id,
        )


def imaging_runtime(ctx: dict) -> Retriever:
    """The retriever of a job process, built once from its Settings (the worker's composition root)."""
    if "retriever" not in ctx:
        from adapters.bootstrap import build_app

        settings = ctx["settings"]
        ctx["retriever"] = Retriever(
            app=build_app(settings), store=InstanceStore(dicom_root(settings)), our_aet=settings.dicom_aet
        )
    return ctx["retriever"]


@job
async def retrieve_study(
    ctx: dict, dossier_id: str, study_uid: str, node_aet: str, series_uids: list[str] | None = None,
) -> dict[str, Any]:
    """Job `retrieve:<dossier>:<study>`: idempotent (what is already recorded is not asked twice)."""
    retriever = imaging_runtime(ctx)
    outcome = await asyncio.to_thread(
        retriever.retrieve, dossier_id=dossier_id, study_uid=study_uid, node_aet=node_aet, series_uids=series_uids,
    )
    return asdict(outcome)
