"""Retrieving a study from a PACS into a dossier: C-MOVE or C-GET, completeness check, resume, outcome."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from adapters.dicom.background_writes import BackgroundWrites
from adapters.dicom.identifiers import SeriesMatch, retrieve_query
from adapters.dicom.qr import Peer, QRError, QueryRetrieve, QuerySession, RetrieveResult
from adapters.dicom.receive import Receiver
from adapters.dicom.storage import InstanceStore
from adapters.jobs import JobContext
from application import Relais
from application.imaging import ReceivedInstance, StudyUpdate
from domain.directory import DicomNode, node_id
from domain.imaging import received_study_id
from domain.values import Json

log = logging.getLogger("relais.dicom")

# Below this many missing instances a retrieve uses one association: another association (and an
# instance-level C-FIND to split a series) would cost more than it saves.
MIN_SPLIT = 50
TRANSIENT = ("timeout", "aborted", "interrupted")
ASSOCIATION_FAILURES = ("unreachable", "rejected", "aborted")
# How long a C-MOVE waits without progress for instances the PACS says our node accepted (they are on
# disk; their recording, one batch per association, can take seconds on a loaded machine) before
# taking them for missing and asking again.
CONFIRMED_PATIENCE = 15.0
REASK = 2  # times the study and its series are asked again when the study's count is not the sum of theirs


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


@dataclass(frozen=True)
class Ask:
    """One C-MOVE/C-GET identifier: the whole study (no series), whole series, or some instances
    (`sops`) of one series; `size` is how many instances it should bring (to share the work)."""

    series: tuple[str, ...] = ()
    sops: tuple[str, ...] = ()
    size: int = 0

    def query(self, study_uid: str) -> Any:
        return retrieve_query(study_uid, list(self.series) or None, list(self.sops) or None)


def share(asks: list[Ask], parts: int) -> list[list[Ask]]:
    """Shares the asks between at most `parts` associations, largest first onto the least loaded;
    the whole series of one association are asked in one identifier."""
    loads: list[tuple[int, int, list[Ask]]] = [(0, i, []) for i in range(max(1, parts))]
    for a in sorted(asks, key=lambda a: -a.size):
        size, i, group = min(loads)
        group.append(a)
        loads[i] = (size + a.size, i, group)
    out = []
    for _, _, group in loads:
        whole = [a for a in group if not a.sops and a.series]
        merged = [Ask(series=tuple(s for a in whole for s in a.series), size=sum(a.size for a in whole))] if whole else []
        merged += [a for a in group if a.sops or not a.series]
        if merged:
            out.append(merged)
    return out


def announced(wanted: list[SeriesMatch], study_count: int | None) -> int:
    """How many instances the PACS announced for these series: their counts; the study's count only
    when a series has none (the retrieve of a whole study)."""
    total = sum(s.instance_count or 0 for s in wanted)
    if study_count and any(s.instance_count is None for s in wanted):
        return max(total, study_count)
    return total


def received_of(wanted: list[SeriesMatch], recorded: dict[str, str]) -> int:
    """The recorded instances of these series, each counted up to what the PACS announced for it: the
    same set as `announced`, so that a study is complete when every announced series is."""
    counts = Retriever._counts(recorded)
    return sum(
        counts.get(s.series_instance_uid, 0) if s.instance_count is None
        else min(counts.get(s.series_instance_uid, 0), s.instance_count)
        for s in wanted
    )


def series_disagree(study_count: int | None, series: list[SeriesMatch]) -> bool:
    counts = [s.instance_count for s in series]  # the study's count is not the sum of its series' counts
    return study_count is not None and None not in counts and sum(c or 0 for c in counts) != study_count


def list_stale(wanted: list[SeriesMatch], recorded: dict[str, str], whole_study: bool) -> bool:
    """What was recorded says the series list is out of date: more instances of a series than it
    announced, or (whole study) instances of a series it did not list."""
    counts = Retriever._counts(recorded)
    uids = {s.series_instance_uid for s in wanted}
    over = any(s.instance_count is not None and counts.get(s.series_instance_uid, 0) > s.instance_count for s in wanted)
    return over or (whole_study and any(uid not in uids for uid in counts))


def _chunks(items: list[str], count: int) -> list[list[str]]:
    count = max(1, min(count, len(items)))
    return [items[i::count] for i in range(count)]


class Retriever:
    """Retrieves a study (or some of its series) until every instance the PACS announced is recorded.

    C-MOVE: the PACS sends to our node (the `relais scp` processes record them); C-GET: on our own
    association, stored and recorded here (in batches while it runs: the page's progress). The
    C-FINDs share one association.

    A C-MOVE of `min_split` instances or more is shared between `parallel` C-MOVE associations (by
    series; a large series split by instance after an instance-level C-FIND): one association to
    a pynetdicom node is slow even with CPU to spare, and the node serves parallel associations in
    parallel processes. A PACS that refuses the extra association is then served on one. A C-GET
    keeps one association: its associations would all be served by this process's one interpreter
    (measured: two were slower than one).

    After each attempt the instances recorded are counted per series against the PACS's counts;
    what is missing is asked again on new associations (only the missing instances of a series
    partly received), up to `attempts` times.
    """

    def __init__(
        self, *, app: Relais, store: InstanceStore, our_aet: str, attempts: int = 3,
        settle: float = 2.0, max_wait: float = 120.0, timeout: float = 30.0, parallel: int = 2,
        min_split: int = MIN_SPLIT,
    ):
        self.app = app
        self.store = store
        self.our_aet = our_aet
        self.attempts = attempts
        self.settle = settle
        self.max_wait = max_wait
        self.parallel = max(1, parallel)
        self.min_split = min_split
        self.qr = QueryRetrieve(our_aet, timeout=timeout)

    def _recorded(self, establishment_id: str, study_uid: str) -> dict[str, str]:
        """Instances recorded: SOP Instance UID -> Series Instance UID."""
        sid = received_study_id(establishment_id, study_uid)
        if sid not in self.app.repository:
            return {}
        return dict(self.app.repository.get(sid).instances)

    @staticmethod
    def _counts(recorded: dict[str, str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for series in recorded.values():
            counts[series] = counts.get(series, 0) + 1
        return counts

    def _wait_for_moved(
        self, establishment_id: str, study_uid: str, wanted: list[SeriesMatch], expected: int, confirmed: int,
    ) -> None:
        """C-MOVE: our node records each association's last batch as it ends; wait until complete, or
        no progress for `settle` s (checked every 20 ms at first, then up to every 100 ms). Below
        `confirmed` (what the PACS says our node accepted: written and fsynced before the node
        answered, so only its recording can still be on its way, a few seconds under load) the wait
        for progress is CONFIRMED_PATIENCE instead of `settle`."""
        deadline = time.monotonic() + self.max_wait
        last, last_change, delay = -1, time.monotonic(), 0.02
        while time.monotonic() < deadline:
            got = received_of(wanted, self._recorded(establishment_id, study_uid))
            if got >= expected:
                return
            if got != last:
                last, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > (self.settle if got >= confirmed else max(self.settle, CONFIRMED_PATIENCE)):
                return
            time.sleep(delay)
            delay = min(0.1, delay * 1.5)

    def _plan(
        self, session: Callable[[], QuerySession], study_uid: str, wanted: list[SeriesMatch], whole_study: bool,
        recorded: dict[str, str], listed: dict[str, list[str]], parallel: int,
    ) -> list[list[Ask]]:
        """The identifiers to ask for, per association."""
        counts = self._counts(recorded)
        missing = [
            s for s in wanted
            if s.instance_count is None or counts.get(s.series_instance_uid, 0) < s.instance_count
        ]
        if not missing:  # every series complete by its count, yet the study's count is not reached
            return [[Ask()]]
        todo = sum(max(1, (s.instance_count or 1) - counts.get(s.series_instance_uid, 0)) for s in missing)
        parts = parallel if todo >= self.min_split else 1
        if parts == 1 and whole_study and not any(counts.get(s.series_instance_uid) for s in wanted):
            return [[Ask(size=todo)]]  # the whole study at STUDY level
        target = math.ceil(todo / parts)
        asks: list[Ask] = []
        for s in missing:
            uid, have = s.series_instance_uid, counts.get(s.series_instance_uid, 0)
            if have or (parts > 1 and (s.instance_count or 0) > target):
                sops = listed.get(uid)
                if sops is None:
                    try:
                        found = [i.sop_instance_uid for i in session().find_instances(study_uid, uid)]
                    except QRError as e:
                        log.warning("récupération %s : recherche des instances de la série %s impossible (%s)",
                                    study_uid, uid, e.reason)
                        found = []
                    if found and len(found) >= (s.instance_count or 0):
                        sops = listed[uid] = found
                left = [sop for sop in sops or () if sop not in recorded]
                if left:
                    for chunk in _chunks(left, math.ceil(len(left) / target)):
                        asks.append(Ask(series=(uid,), sops=tuple(chunk), size=len(chunk)))
                    continue
            asks.append(Ask(series=(uid,), size=max(1, (s.instance_count or 1) - have)))
        return share(asks, parts)

    def _transfer(self, parts: list[list[Ask]], run: Callable[[list[Ask]], RetrieveResult]) -> tuple[bool, list[RetrieveResult]]:
        """Runs each association's asks (in parallel threads when several). Returns whether every
        association could be opened (False when an extra one was refused while another one worked: the
        PACS limits associations, the next attempts use one) and the results of those that ended;
        raises the QRError that ends the attempt otherwise."""
        if len(parts) == 1:
            return True, [run(parts[0])]
        errors: list[BaseException | None] = [None] * len(parts)
        results: list[RetrieveResult | None] = [None] * len(parts)

        def one(i: int) -> None:
            try:
                results[i] = run(parts[i])
            except BaseException as e:  # raised below, in the calling thread
                errors[i] = e

        threads = [threading.Thread(target=one, args=(i,), name=f"relais-retrieve-{i}") for i in range(len(parts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        unexpected = [e for e in errors if e is not None and not isinstance(e, QRError)]
        if unexpected:
            raise unexpected[0]
        ended = [r for r in results if r is not None]
        failed = [e for e in errors if isinstance(e, QRError)]
        if not failed:
            return True, ended
        refused = [e for e in failed if e.code in ASSOCIATION_FAILURES]
        if len(failed) < len(parts) and len(refused) == len(failed):
            log.warning("récupération : association supplémentaire refusée par le PACS (%s), une seule ensuite",
                        refused[0].reason)
            return False, ended
        raise next((e for e in failed if e.code not in TRANSIENT), failed[0])

    def retrieve(
        self, *, dossier_id: str, study_uid: str, node_aet: str, series_uids: list[str] | None = None,
    ) -> RetrieveOutcome:
        node = self.app.load(DicomNode, node_id(node_aet), "PACS")
        est = node.establishment_id
        peer = Peer(node.aet, node.host, node.port)
        method = node.retrieve_method
        patient: Json = {}
        study: Json = {}
        expected = received = attempts = 0
        status, reason = "failed", ""
        write_error: OSError | None = None
        earlier: QRError | None = None  # why the last attempt ended, when it ended early

        def record(state: str, why: str = "") -> str:
            return self.app.record_retrieve(
                establishment_id=est, study_instance_uid=study_uid, patient=patient, study=study,
                dossier_id=dossier_id, node_aet=node.aet, method=method, status=state, reason=why,
                expected=expected, received=received,
            )

        try:
            with self.qr.session(peer) as q:
                matches = q.find_studies(study_instance_uid=study_uid)
                if not matches:
                    raise QRError("étude introuvable sur le PACS", "not_found")
                m = matches[0]
                patient = {"id": m.patient_id, "name": m.patient_name, "birth_date": m.patient_birth_date, "sex": m.patient_sex}
                study = {"accession_number": m.accession_number, "date": m.study_date, "description": m.description}
                series = q.find_series(study_uid)
                for _ in range(REASK):  # counts that disagree: a series added or removed meanwhile?
                    if series_uids or not series_disagree(m.instance_count, series):
                        break
                    log.info("récupération %s : %s instance(s) dans l'étude, %d dans ses séries : nouvelle recherche",
                             study_uid, m.instance_count, sum(s.instance_count or 0 for s in series))
                    m = next(iter(q.find_studies(study_instance_uid=study_uid)), m)
                    series = q.find_series(study_uid)
                study_count = None if series_uids else m.instance_count
                wanted = [s for s in series if not series_uids or s.series_instance_uid in series_uids]
                if series_uids and not wanted:
                    raise QRError("séries demandées introuvables sur le PACS", "not_found")
                expected = announced(wanted, study_count)
                recorded = self._recorded(est, study_uid)
                received = received_of(wanted, recorded)
                record("started")
                listed: dict[str, list[str]] = {}
                parallel = self.parallel if method == "move" else 1
                while attempts < self.attempts and (received < expected or not expected):
                    parts = self._plan(lambda: q, study_uid, wanted, not series_uids, recorded, listed, parallel)
                    q.close()  # not held open while the instances come (a PACS may limit associations)
                    attempts += 1
                    try:
                        if method == "get":
                            ok, error = self._get(peer, study_uid, est, node.aet, parts)
                            write_error = error or write_error
                        else:
                            ok, moved = self._transfer(parts, lambda asks: self.qr.move(
                                peer, study_uid, self.our_aet, queries=[a.query(study_uid) for a in asks]))
                            confirmed = min(expected, received + sum(r.completed for r in moved))
                            self._wait_for_moved(est, study_uid, wanted, expected, confirmed)
                        if not ok:
                            parallel = 1
                        earlier = None
                    except QRError as e:
                        if e.code not in TRANSIENT or attempts >= self.attempts:  # only transient ones
                            raise e if earlier is None or e.reason == earlier.reason else QRError(
                                f"{earlier.reason}, puis {e.reason}", e.code) from None
                        earlier = e
                        log.warning("récupération %s, tentative %d : %s", study_uid, attempts, e.reason)
                    recorded = self._recorded(est, study_uid)
                    if list_stale(wanted, recorded, not series_uids):  # e.g. a series added since the search
                        try:
                            wanted = [s for s in q.find_series(study_uid)
                                      if not series_uids or s.series_instance_uid in series_uids] or wanted
                        except QRError as e:
                            log.warning("récupération %s : nouvelle recherche des séries impossible (%s)", study_uid, e.reason)
                        expected = announced(wanted, study_count)
                    received = received_of(wanted, recorded)
                    if not expected:
                        break
            if expected and received >= expected:
                status, reason = "completed", ""
            else:
                status = "incomplete"
                reason = f"{received} instance(s) reçue(s) sur {expected} annoncée(s) après {attempts} tentative(s)"
                if write_error is not None:
                    reason += f" ; écriture impossible : {write_error.strerror or write_error}"
        except QRError as e:
            status, reason = "failed", e.reason
        try:
            if status == "completed":  # attached before the outcome is recorded: « Récupéré » means in the dossier
                self.app.attach_retrieved(dossier_id=dossier_id, study_id=str(received_study_id(est, study_uid)))
        finally:
            study_id = record(status, reason)
        return RetrieveOutcome(
            status=status, reason=reason, expected=expected, received=received, attempts=attempts, study_id=study_id,
        )

    def _get(self, peer: Peer, study_uid: str, est: str, node_aet: str, parts: list[list[Ask]]) -> tuple[bool, OSError | None]:
        """C-GET on our own association: each instance queued for writing as it comes, recorded in
        batches (every 0.5 s, and at the association's end) once durable."""
        writes = BackgroundWrites(self.store)

        def record(establishment_id: str, items: list[ReceivedInstance], source: Json) -> list[StudyUpdate]:
            failed = writes.durable([(str(establishment_id), i.study_instance_uid, i.sop_instance_uid) for i in items])
            items = [i for i in items if (str(establishment_id), i.study_instance_uid, i.sop_instance_uid) not in failed]
            if not items:
                return []
            return self.app.record_received(establishment_id=establishment_id, instances=items, source=source)

        receiver = Receiver(store=writes, record=record).start()
        source: Json = {"kind": "pacs_retrieve", "calling_aet": node_aet}
        try:
            ok, _ = self._transfer(parts, lambda asks: self.qr.get(
                peer, study_uid, lambda e: receiver.store_event(e, establishment_id=est, source=source),
                receiver.flush, queries=[a.query(study_uid) for a in asks],
            ))
        finally:
            receiver.close()  # what is still in a batch is recorded once durable
            writes.close()
        return ok, writes.error


async def retrieve_study(
    ctx: JobContext, dossier_id: str, study_uid: str, node_aet: str, series_uids: list[str] | None = None,
) -> dict[str, Any]:
    """Job `retrieve:<dossier>:<study>`: idempotent (what is already recorded is not asked twice)."""
    retriever: Retriever = ctx["retriever"]
    outcome = await asyncio.to_thread(
        retriever.retrieve, dossier_id=dossier_id, study_uid=study_uid, node_aet=node_aet, series_uids=series_uids,
    )
    return asdict(outcome)
