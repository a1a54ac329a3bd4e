"""The study viewer pages: series thumbnails, in-page viewer with CT presets, ZIP download, export to a PACS.

For the recipient and the requester; every request checks that the user may read the dossier and
that the study is attached to it (read-only DICOMweb is web/dicomweb/)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import anyio
from litestar import Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import File, Template

from adapters.dicom.dicomdir import zip_with_dicomdir
from adapters.dicom.export import export_job_id
from adapters.dicom.render import CT_PRESETS, RenderError, render, thumbnail
from application.errors import NotFoundError
from application.study_reads import StudyView
from domain.imaging import valid_uid
from web.imaging_access import instance_path, read_study, series_instances
from web.services import ImagingServices, Services
from web.session import SessionUser

BASE = "/dossiers/{dossier_id:str}/dicom/studies/{study_uid:str}"


# ---------------------------------------------------------------------- viewer


@get(BASE + "/viewer", name="imaging-viewer", sync_to_thread=True)
def viewer(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], study_uid: FromPath[str],
) -> Template:
    """Thumbnails per series, the first series in the viewer, download and export."""
    study = read_study(services, user, dossier_id, study_uid, "viewer")
    series = study.series
    own = [n.aet for n in services.imaging.directory.pacs_of(user.establishment_id)] if user.role == "clinician" else []
    return Template("imaging/_viewer.html", context={
        "dossier_id": dossier_id, "study": study, "series": series, "presets": CT_PRESETS,
        "first": _frame_context(services.imaging, study, dossier_id, series[0].uid, 0, "auto") if series else None,
        "nodes": own,
    })


def _frame_context(
    imaging: ImagingServices, study: StudyView, dossier_id: str, series_uid: str, i: int, preset: str,
) -> dict[str, Any]:
    sops = series_instances(imaging, study, series_uid)
    if not sops:
        raise NotFoundError("série vide")
    i = min(max(i, 0), len(sops) - 1)
    return {
        "dossier_id": dossier_id, "study_uid": study.study_instance_uid, "series_uid": series_uid, "i": i,
        "count": len(sops), "sop": sops[i], "preset": preset if preset in CT_PRESETS else "auto", "presets": CT_PRESETS,
    }


@get(BASE + "/series/{series_uid:str}", name="imaging-frame", sync_to_thread=True)
def frame(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str],
    i: FromQuery[int] = 0, preset: FromQuery[str] = "auto",
) -> Template:
    """The viewer on image `i` of a series (the slider and preset selector ask for it)."""
    study = read_study(services, user, dossier_id, study_uid, "viewer")
    return Template("imaging/_frame.html", context={"ctx": _frame_context(services.imaging, study, dossier_id, series_uid, i, preset)})


@get(BASE + "/series/{series_uid:str}/thumbnail.png", name="imaging-thumbnail", sync_to_thread=True)
def series_thumbnail(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], study_uid: FromPath[str], series_uid: FromPath[str],
) -> Response[bytes]:
    study = read_study(services, user, dossier_id, study_uid, "viewer")
    sops = series_instances(services.imaging, study, series_uid)
    if not sops:
        raise NotFoundError("série vide")
    cache = services.settings.data_dir / "previews" / study.establishment_id / study.study_instance_uid / f"{valid_uid(series_uid)}.png"
    try:
        png = thumbnail(instance_path(services.imaging, study, sops[len(sops) // 2]), cache)
    except RenderError:
        png = b""
    if not png:
        return Response(b"", status_code=204)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@get(BASE + "/instances/{sop:str}/image.png", name="imaging-image", sync_to_thread=True)
def image(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], study_uid: FromPath[str], sop: FromPath[str], preset: FromQuery[str] = "auto",
) -> Response[bytes]:
    study = read_study(services, user, dossier_id, study_uid, "viewer")
    try:
        png = render(instance_path(services.imaging, study, sop), preset=preset)
    except RenderError as e:
        raise NotFoundError(str(e)) from None
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})


# ---------------------------------------------------------------------- download, export


@get(BASE + "/download.zip", name="imaging-download", sync_to_thread=True)
def download(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], study_uid: FromPath[str],
) -> File:
    """The study as a ZIP with a DICOMDIR; the download is recorded (ReceivedStudy.Downloaded)."""
    study = services.relais.download_study(
        dossier_id=dossier_id, actor_id=user.practitioner_id, study_uid=valid_uid(study_uid, "study_uid"),
        what="zip", establishment_id=user.establishment_id,
    )
    files = [instance_path(services.imaging, study, sop) for sop in sorted(study.instances)]  # quarantined left out
    workdir = Path(tempfile.mkdtemp(prefix="relais-zip-", dir=services.settings.data_dir if services.settings.data_dir.exists() else None))
    archive = zip_with_dicomdir(files, workdir)
    return File(
        archive, filename=f"examen-{study.accession_number or study.study_instance_uid[-12:]}.zip",
        media_type="application/zip", background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True),
    )


@post(BASE + "/export", name="imaging-export")
async def start_export(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], study_uid: FromPath[str],
) -> Template:
    """Export to a DICOM node of the user's establishment, as a job with per-instance status."""
    node = str((await request.form()).get("node", ""))

    def start() -> Template:
        target = services.relais.export_target(
            dossier_id=dossier_id, actor_id=user.practitioner_id, study_uid=valid_uid(study_uid, "study_uid"),
            node_aet=node, establishment_id=user.establishment_id,
        )
        services.imaging.jobs.enqueue(
            "export_study", job_id=export_job_id(dossier_id, study_uid, target["aet"]), dossier_id=dossier_id,
            study_id=target["study_id"], node_aet=target["aet"], actor=target["actor"],
        )
        return _export_state(services, user, dossier_id, study_uid, target["aet"], running=True)

    return await anyio.to_thread.run_sync(start)


def _export_state(services: Services, user: SessionUser, dossier_id: str, study_uid: str, node: str, running: bool) -> Template:
    """The export's progress, then every instance's status: a read of the study, traced as "export"
    (polled every second while it runs: one access per user and study per minute, see view_study)."""
    study = read_study(services, user, dossier_id, study_uid, "export")
    state = study.export_to(dossier_id, node) or {"status": "queued", "sent": 0, "total": 0, "failures": []}
    finished = state["status"] in ("completed", "partial", "failed")
    instances = []
    if finished:  # the status of every instance: refused or not sent (with why), else stored by the node
        failed = {f["sop"]: f for f in state["failures"]}
        series_no = {se.uid: se.number for se in study.series}
        for sop, series_uid in sorted(study.instances.items(), key=lambda i: (series_no.get(i[1]) or 0, i[1], i[0])):
            f = failed.get(sop)
            instances.append({
                "sop": sop, "series": series_no.get(series_uid), "ok": f is None,
                "status": (f.get("status") or "") if f else "0x0000", "reason": f["reason"] if f else "stockée",
            })
    return Template("imaging/_export.html", context={
        "dossier_id": dossier_id, "study_uid": study_uid, "node": node, "state": state, "instances": instances,
        "running": running or not finished,
    })


@get(BASE + "/export", name="imaging-export-progress", sync_to_thread=True)
def export_progress(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    study_uid: FromPath[str], node: FromQuery[str] = "",
) -> Template:
    return _export_state(services, user, dossier_id, study_uid, node, running=False)


HANDLERS = [viewer, frame, series_thumbnail, image, download, start_export, export_progress]
