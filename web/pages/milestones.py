"""Milestones of care recorded by the requester side (door, imaging, decision), posted from the dossier page."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated

from litestar import post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Redirect

from application.errors import ConflictError
from domain.dossier import RECORDED_MILESTONES
from domain.errors import InvalidFieldError
from domain.values import PARIS
from web.errors import FormRejected, StaleView
from web.pages.dossier import open_workspace, page_context, refusals_traced
from web.services import Services
from web.session import SessionUser

NOTE_MAX = 500


@dataclass
class MilestoneForm:
    expected_version: int | None = None
    form_token: str = ""
    milestone: str = ""
    at: str = ""  # a datetime-local input: Paris time
    note: str = ""


def parse_at(value: str) -> datetime:
    """The time typed (Paris, to the minute), or an error naming the field in French."""
    value = value.strip()
    if not value:
        raise InvalidFieldError("at", "indiquez la date et l'heure")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidFieldError("at", "date et heure attendues (jj/mm/aaaa hh:mm)") from None
    return moment.replace(tzinfo=PARIS) if moment.tzinfo is None else moment


@post("/dossiers/{dossier_id:str}/milestones", name="dossier-milestone", sync_to_thread=True)
def record_milestone(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    data: Annotated[MilestoneForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Redirect:
    """Records the milestone, then back to the dossier's milestones; refused input comes back at its field."""
    try:
        with refusals_traced(services, user, dossier_id, "milestone"):
            if data.milestone not in RECORDED_MILESTONES:
                raise InvalidFieldError("milestone", "choisissez le jalon à enregistrer")
            services.relais.record_milestone(
                dossier_id=dossier_id, actor_id=user.acting(data.form_token, version_required=True),
                milestone=data.milestone, at=parse_at(data.at), note=data.note[:NOTE_MAX],
                expected_version=data.expected_version,
            )
    except InvalidFieldError as e:
        ws = open_workspace(services, user, dossier_id)
        context = page_context(services, user, ws, milestone_form=asdict(data),
                               milestone_errors={e.field: e.message})
        raise FormRejected(e, "dossier/page.html", context) from e
    except ConflictError as e:
        ws = open_workspace(services, user, dossier_id)
        context = page_context(services, user, ws, milestone_form=asdict(data))
        raise StaleView(
            "Ce dossier a changé pendant que vous le consultiez : voici son nouvel état. Rien n'a été enregistré ; "
            "votre saisie est conservée ci-dessous.", "dossier/page.html", "workspace", context,
        ) from e
    return Redirect(f"/dossiers/{dossier_id}#milestones", status_code=303)


HANDLERS = [record_milestone]
