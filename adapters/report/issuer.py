"""Makes a send's report: renders it, stores the PDF by SHA-256, records ReportIssued — idempotent, as a job."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from adapters.blobs import BlobStore
from adapters.jobs import JobContext, Jobs
from adapters.report.pdf import html_to_pdf
from application import Relais
from application.errors import ConflictError
from application.reports import ReportMaterial
from domain.values import Json

log = logging.getLogger("relais.report")

MEDIA_TYPE = "application/pdf"
MAX_REPORT_BYTES = 50 * 1024 * 1024
ATTEMPTS = 3  # a dossier changing while its report is made: made again from the new version

Render = Callable[[ReportMaterial], str]  # the report's HTML (the web's templates and filters: web/report_html.py)


class ReportIssuer:
    """`issue(dossier, send)`: the send's report is up to date afterwards; made only when it is not yet."""

    def __init__(self, app: Relais, blobs: BlobStore, render: Render) -> None:
        self.app = app
        self.blobs = blobs
        self.render = render

    def make(self, material: ReportMaterial) -> tuple[bytes, float]:
        """The PDF of this material and the seconds it took (HTML and PDF)."""
        start = time.perf_counter()
        pdf = html_to_pdf(self.render(material))
        return pdf, time.perf_counter() - start

    def store(self, pdf: bytes) -> Json:
        writer = self.blobs.writer(max_bytes=MAX_REPORT_BYTES)
        writer.write(pdf)
        blob = writer.finish()  # content-addressed: written once, read-only, fsync'd before the event names it
        return {"sha256": blob.sha256, "size": blob.size, "media_type": blob.media_type}

    def issue(self, dossier_id: str, send_id: str) -> Json:
        """The send's current report: the latest when nothing but reports happened since it was made,
        else a new one (stored, then recorded). NoReportError (409) when the send has no opinion."""
        for _ in range(ATTEMPTS):
            material = self.app.report_material(dossier_id=dossier_id, send_id=send_id)
            if material.current is not None:
                return material.current
            pdf, seconds = self.make(material)
            report = dict(self.store(pdf), report_id=material.report_id, media_type=MEDIA_TYPE,
                          filename=f"compte-rendu-{material.dossier.number}.pdf")
            try:
                self.app.record_report(dossier_id=dossier_id, send_id=send_id, report=report, made_from=material.version)
            except ConflictError:
                continue  # the dossier moved (a message, another send's report): make it again from there
            log.info("compte rendu %s de %s émis (%d octets, %.0f ms)", report["report_id"], material.dossier.number,
                     report["size"], seconds * 1000)
            return report
        raise ConflictError("le télédossier change sans cesse : compte rendu non émis, il le sera au prochain changement")


def job_id(dossier_id: str, send_id: str, version: int) -> str:
    """Deterministic: one job per send and dossier version (a later change makes a later job)."""
    return f"report:{dossier_id}:{send_id}:v{version}"


def schedule(app: Relais, jobs: Jobs, dossier_id: str) -> list[str]:
    """Enqueues the report of each answered send of the dossier whose report is missing or out of date."""
    due = app.reports_due(dossier_id=dossier_id)
    for send_id, version in due:
        jobs.enqueue("issue_report", job_id=job_id(dossier_id, send_id, version), dossier_id=dossier_id, send_id=send_id)
    return [send_id for send_id, _ in due]


async def issue_report(ctx: JobContext, dossier_id: str, send_id: str) -> dict[str, Any]:
    """Job: makes the send's report if it is not up to date (ctx["reports"]: a ReportIssuer)."""
    issuer: ReportIssuer = ctx["reports"]
    return await asyncio.to_thread(issuer.issue, dossier_id, send_id)
