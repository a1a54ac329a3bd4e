"""The dossier form's imaging slot (studies received, attaching one, the awaited exam), and each study's preview."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Template

from adapters.dicom.render import RenderError, thumbnail
from application.errors import ForbiddenError
from application.imaging import IdentityConfirmationRequired
from domain.imaging import valid_uid
from web.forms import ItemForm
from web.imaging_access import instance_path, read_study, series_instances
from web.pages.dossier import actor_dict
from web.services import Services
from web.session import SessionUser


def requester_only(services: Services, user: SessionUser, dossier_id: str, target: str = "imaging-form") -> None:
    """Nothing if the user is the dossier's requester, else the application's refusal.

    What follows shows patient data of the dossier's imaging (studies received for the establishment,
    a PACS's answers, an import's files): the read is traced as an `imaging` access (`target` says
    which part), a refusal too."""
    try:
        actor = services.relais.requester_actor(dossier_id=dossier_id, actor_id=user.acting())
    except ForbiddenError as e:
        services.relais.trace_denied(dossier_id=dossier_id, actor=actor_dict(user), kind="imaging", reason=str(e),
                                     target=target)
        raise
    services.relais.record_access(dossier_id=str(UUID(dossier_id)), actor=actor.as_dict(), kind="imaging", target=target)


def form_list(value: list[str] | str) -> list[str]:
    """The values of a repeated form field (one value arrives as a str)."""
    return [value] if isinstance(value, str) else list(value)


@get("/dossiers/{dossier_id:str}/dicom", name="imaging-picker", sync_to_thread=True)
def picker(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
) -> Template:
    """The imaging slot of the dossier form: received studies, awaited exam, PACS search."""
    requester_only(services, user, dossier_id, "imaging-picker")
    web = services.imaging
    return Template("imaging/_picker.html", context={
        "dossier_id": dossier_id, "studies": web.studies.studies_for(user.establishment_id),
        "pacs": web.directory.pacs_of(user.establishment_id), "notice": "",
        "attached": {s["study_instance_uid"] for s in services.relais.get_dossier(
            dossier_id=dossier_id, actor_id=user.practitioner_id).imaging},
    })


@get("/dossiers/{dossier_id:str}/dicom/received", name="imaging-received", sync_to_thread=True)
def received(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    q: FromQuery[str] = "",
) -> Template:
    """Studies received by the platform for the user's establishment (gateway push, retrieve, import)."""
    return received_fragment(request, services, user, dossier_id, q, "")


def received_fragment(
    request: Request[Any, Any, Any], services: Services, user: SessionUser, dossier_id: str, q: str, notice: str,
) -> Template:
    """The received studies fragment (matching `q`), those attached to the dossier marked, with a notice;
    only for the requester, the read traced."""
    requester_only(services, user, dossier_id, "imaging-received")
    web = services.imaging
    d = services.relais.get_dossier(dossier_id=dossier_id, actor_id=user.practitioner_id)
    return Template("imaging/_received.html", context={
        "dossier_id": dossier_id, "studies": web.studies.studies_for(user.establishment_id, search=q[:64]),
        "attached": {s["study_instance_uid"] for s in d.imaging}, "q": q, "notice": notice, "d": d,
    })


@dataclass
class AttachForm(ItemForm):
    identities: list[str] | str = field(default_factory=list)  # the identity keys shown for confirmation
    confirm_identity: str = ""


@post("/dossiers/{dossier_id:str}/dicom/received/{study_id:str}/attach", name="imaging-attach", sync_to_thread=True)
def attach(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], study_id: FromPath[str], data: Annotated[AttachForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    """Attaches a received study. Images of several patients, or of one whose identity differs from the
    dossier's (or is too thin to compare), are shown side by side with the dossier's patient and need
    « J'ai vérifié »: the confirmation, who made it and the differences are recorded in the dossier."""
    confirmed = data.confirm_identity == "yes"
    shown = form_list(data.identities) if confirmed else None
    try:
        services.relais.attach_received_study(dossier_id=dossier_id, actor_id=data.acting(user), study_id=study_id,
                                              expected_version=data.expected_version, identities=shown,
                                              confirm_identity=confirmed)
    except IdentityConfirmationRequired as e:
        t = received_fragment(request, services, user, dossier_id, "", "")
        d = services.relais.get_dossier(dossier_id=dossier_id, actor_id=user.practitioner_id)
        t.context["confirm"] = {"study_id": study_id, "rows": e.rows, "patient": d.patient}
        return t
    t = received_fragment(request, services, user, dossier_id, "", "Examen joint au télédossier.")
    t.headers["HX-Trigger"] = "imaging-changed"
    return t


@dataclass
class AwaitForm(ItemForm):
    accession_number: str = ""


@post("/dossiers/{dossier_id:str}/dicom/await", name="imaging-await", sync_to_thread=True)
def await_exam(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    data: Annotated[AwaitForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    """The exam awaited (Accession Number): it attaches itself on arrival, or now if already received (the
    user's own change then, like « Joindre », so that the step's version follows it)."""
    relais = services.relais
    accession = data.accession_number.strip()
    relais.await_imaging(dossier_id=dossier_id, actor_id=data.acting(user), accession_number=accession,
                         expected_version=data.expected_version)
    attached = _attach_received(services, user, dossier_id, accession, data)
    notice = (
        "Examen déjà reçu : joint au télédossier." if attached
        else f"Examen {accession} attendu : il sera joint dès sa réception par le nœud DICOM."
    )
    t = received_fragment(request, services, user, dossier_id, "", notice)
    t.headers["HX-Trigger"] = "imaging-changed"  # the awaited exam is a change of the user's own too
    t.context["renew_await_token"] = True
    return t


def _attach_received(services: Services, user: SessionUser, dossier_id: str, accession: str, data: ItemForm) -> int:
    """Attaches the studies already received with `accession` that the dossier does not hold as received,
    as further commands of the same form, each on the version the previous made; how many were attached."""
    relais = services.relais
    if data.expected_version is None:  # the form was sent before (its await recorded): nothing more runs
        return 0
    version = relais.version_seen(dossier_id=dossier_id, actor_id=user.acting(), seen=data.expected_version)
    held = {s["study_instance_uid"]: s.get("instance_count") for s in relais.get_dossier(
        dossier_id=dossier_id, actor_id=user.practitioner_id).imaging}
    attached = 0
    for i, sid in enumerate(services.imaging.studies.study_by_accession(user.establishment_id, accession)):
        study = relais.received_study_view(study_id=sid)
        if held.get(study.study_instance_uid) == study.instance_count:
            continue
        relais.attach_received_study(dossier_id=dossier_id, actor_id=data.acting(user, f"study-{i}"), study_id=sid,
                                     expected_version=version)
        version, attached = version + 1, attached + 1
    return attached


@get("/dossiers/{dossier_id:str}/dicom/studies/{study_uid:str}/thumbnail.png", name="imaging-study-thumbnail",
     sync_to_thread=True)
def study_thumbnail(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], study_uid: FromPath[str],
) -> Response[bytes]:
    """The preview of a study on the dossier page: the middle image of its first series with images (the
    viewer's cached thumbnail of that series). Read checked and traced as the viewer's; 204 when none renders."""
    study = read_study(services, user, dossier_id, study_uid, "viewer")
    for series in study.series:
        sops = series_instances(services.imaging, study, series.uid)
        if not sops:
            continue
        cache = (services.settings.data_dir / "previews" / study.establishment_id / study.study_instance_uid
                 / f"{valid_uid(series.uid)}.png")
        try:
            png = thumbnail(instance_path(services.imaging, study, sops[len(sops) // 2]), cache)
        except RenderError:
            png = b""
        if png:
            return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
        break
    return Response(b"", status_code=204)


HANDLERS = [picker, received, attach, await_exam, study_thumbnail]
