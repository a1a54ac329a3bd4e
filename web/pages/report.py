"""The opinion report PDF of a send: its traced download, and its making asked after every change to a dossier."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from typing import Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Response

from adapters.report.issuer import ReportIssuer, schedule
from application.errors import ConflictError, NotFoundError
from application.reports import ReportPendingError
from domain.values import Json
from web import report_html
from web.services import Services
from web.session import SessionUser

log = logging.getLogger("relais.web.report")

# a POST here may have changed the dossier: its own pages, and an MDT session's decision on it (the opinion)
CHANGED = re.compile(r"^/(?:dossiers|mdt/sessions/[^/]+/decisions)/([0-9a-fA-F-]{36})(?:/|$)")


@get("/dossiers/{dossier_id:str}/sends/{send_id:str}/report.pdf", name="report-pdf", sync_to_thread=True)
def report_pdf(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    send_id: FromPath[str],
) -> Response[bytes]:
    """The latest report of a send, for its requester side, its recipient or an auditor (traced, refusals
    too); the bytes served are those whose SHA-256 the dossier recorded. Not made yet: made now. No opinion: 409."""
    def open_report() -> Json:
        return services.relais.open_report(
            dossier_id=dossier_id, actor_id=user.practitioner_id, establishment_id=user.establishment_id,
            role=user.role, send_id=send_id[:64],
        )

    try:
        report = open_report()
    except ReportPendingError:  # its job has not run yet (or the opinion is older than reports): made now, ~1 s
        ReportIssuer(services.relais, services.blobs, report_html.render).issue(dossier_id, send_id[:64])
        report = open_report()
    path = services.blobs.path(report["sha256"])
    if not path.exists():
        raise NotFoundError("fichier du compte rendu introuvable sur le serveur")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != report["sha256"]:
        log.error("compte rendu %s : empreinte différente de celle enregistrée (%s)", report["report_id"], path)
        raise ConflictError("le fichier du compte rendu ne correspond plus à son empreinte enregistrée : "
                            "prévenez l'administrateur")
    filename = report.get("filename") or "compte-rendu.pdf"
    return Response(content=data, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{filename}"', "Cache-Control": "no-store",
        "X-Report-SHA256": report["sha256"],
    })


async def after_dossier_change(request: Request[Any, Any, Any]) -> None:
    """After any POST on a dossier (an opinion, a receipt, a message…): the reports of its answered sends
    that are missing or out of date are made, as jobs (in this process when no Redis is configured)."""
    m = CHANGED.match(request.url.path)
    if request.method != "POST" or m is None:
        return
    services: Services = request.app.state.services
    try:
        await asyncio.to_thread(schedule, services.relais, services.imaging.jobs, m.group(1))
    except Exception:  # never an error to a user whose command is recorded: the next change or download asks again
        log.exception("compte rendu non demandé pour le télédossier %s", m.group(1))


HANDLERS = [report_pdf]
