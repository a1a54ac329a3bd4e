"""Export of a received study to a DICOM node (the recipient's own PACS): C-STORE SCU as a job.

Files are sent as stored (their own transfer syntax, never transcoded). An association lost on the
way is opened again and the transfer resumes with what is not stored yet (pynetdicom senders can
lose an association under load, see field notes). Every instance's final status is recorded.

Progress is visible while it runs: `ExportRecorded` events with status "running" and the count
stored so far (`sent` of `total`), at most one per `progress_every` seconds (1 s: a 1,000-image
export writes a few dozen events, not a thousand), read back by the page's htmx polling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pynetdicom import evt

from adapters.dicom.qr import closed_by_peer, end, watch_closure
from adapters.dicom.reactor import RequestorAE, nodelay
from adapters.dicom.storage import InstanceStore
from adapters.jobs import JobContext
from application import Relais
from domain.directory import DicomNode, node_id
from domain.values import Json

log = logging.getLogger("relais.dicom")

MAX_CONTEXTS = 120

INTERRUPTED = "connexion interrompue par le nœud"


@dataclass
class ExportOutcome:
    status: str  # completed | partial | failed
    sent: int
    total: int
    failures: list[Json] = field(default_factory=list)  # sop, status ("0xA700", None: not sent), reason
    reason: str = ""


def export_job_id(dossier_id: str, study_uid: str, node_aet: str) -> str:
    return f"export:{dossier_id}:{study_uid}:{node_aet}"


class Exporter:
    def __init__(
        self, *, app: Relais, store: InstanceStore, our_aet: str, timeout: float = 30.0, associations: int = 3,
        progress_every: float = 1.0,
    ):
        self.app = app
        self.progress_every = progress_every
        self.store = store
        self.our_aet = our_aet
        self.timeout = timeout
        self.associations = associations

    def export(self, *, dossier_id: str, study_id: str, node_aet: str, actor: Json) -> ExportOutcome:
        study = self.app.received_study_view(study_id=study_id, dossier_id=dossier_id)
        node = self.app.load(DicomNode, node_id(node_aet), "nœud DICOM")
        # what the dossier shows only: instances of another patient (quarantined) are not exported
        files = [p for p in self.store.instances(study.establishment_id, study.study_instance_uid) if p.stem in study.instances]
        meta: dict[Path, tuple[str, str, str]] = {}
        for p in files:
            fm = dcmread(p, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).file_meta
            meta[p] = (str(fm.MediaStorageSOPClassUID), str(fm.TransferSyntaxUID), p.stem)
        total = len(files)

        def record(status: str, sent: int, failures: list[Json]) -> None:
            self.app.record_export(
                study_id=study_id, dossier_id=dossier_id, node_aet=node.aet, status=status, sent=sent, total=total,
                failures=failures, actor=actor,
            )

        record("started", 0, [])
        last_progress = time.monotonic()
        done: set[Path] = set()
        failures: dict[str, Json] = {}
        reason = ""
        contexts = sorted({(c, ts) for c, ts, _ in meta.values()})
        for _ in range(self.associations):
            todo = [p for p in files if p not in done]
            if not todo:
                break
            ae = RequestorAE(ae_title=self.our_aet)
            ae.maximum_pdu_size = 0
            ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
            ae.connection_timeout = 5
            for c, ts in contexts[:MAX_CONTEXTS]:
                ae.add_requested_context(c, ts)
            assoc = ae.associate(node.host, node.port, ae_title=node.aet, evt_handlers=[(evt.EVT_ESTABLISHED, nodelay)])
            if not assoc.is_established:
                refused = (
                    f"le nœud {node.aet} a refusé l'association" if assoc.is_rejected
                    else f"nœud {node.aet} injoignable ({node.host}:{node.port})"
                )
                reason = f"{reason}, puis {refused}" if reason.startswith(INTERRUPTED) else refused
                continue
            watch_closure(assoc)
            reason = ""
            try:
                for p in todo:
                    sop = meta[p][2]
                    try:
                        response = assoc.send_c_store(p)
                    except ValueError as e:  # no accepted context for this class/syntax
                        failures[sop] = {"sop": sop, "status": None, "reason": f"refusé par le nœud ({e})"[:200]}
                        done.add(p)
                        continue
                    if not response:  # association lost: resume on a new one
                        reason = (
                            f"{INTERRUPTED} {node.aet}" if closed_by_peer(assoc)
                            else f"délai dépassé : le nœud {node.aet} ne répond plus"
                        )
                        break
                    code = int(response.Status)
                    if code in (0x0000, 0xB000, 0xB007, 0xB006):
                        failures.pop(sop, None)
                    else:
                        failures[sop] = {"sop": sop, "status": f"0x{code:04X}", "reason": "refusé par le nœud"}
                    done.add(p)
                    if time.monotonic() - last_progress >= self.progress_every and len(done) < total:
                        record("running", len(done) - len(failures), sorted(failures.values(), key=lambda f: f["sop"]))
                        last_progress = time.monotonic()
            finally:
                end(assoc)  # no release to a peer that is gone: it would wait for the ACSE timeout
        sent = len(done) - len(failures)
        for p in files:
            if p not in done:
                failures[meta[p][2]] = {"sop": meta[p][2], "status": None, "reason": reason or "non envoyé"}
        status = "completed" if sent == total else ("partial" if sent else "failed")
        failure_list = sorted(failures.values(), key=lambda f: f["sop"])
        record(status, sent, failure_list)
        return ExportOutcome(status=status, sent=sent, total=total, failures=failure_list, reason=reason)


async def export_study(ctx: JobContext, dossier_id: str, study_id: str, node_aet: str, actor: Json) -> dict[str, Any]:
    """Job `export:<dossier>:<study>:<node>`: re-running it sends again; the PACS keeps one copy per SOP UID."""
    outcome = await asyncio.to_thread(
        ctx["exporter"].export, dossier_id=dossier_id, study_id=study_id, node_aet=node_aet, actor=actor,
    )
    return asdict(outcome)
