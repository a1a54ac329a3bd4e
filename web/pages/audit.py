"""The auditor: find a dossier, its full history, replay at version N, access log, exports."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from application.access import Workspace
from domain.values import Json, Role
from web.errors import is_htmx
from web.guards import requires_role
from web.pages.dossier import actor_dict
from web.present import label, paris, timeline_line
from web.services import Services
from web.session import SessionUser

AUDITOR = requires_role(Role.AUDITOR)


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@get("/audit", guards=[AUDITOR], sync_to_thread=True, name="audit")
def search(
    request: Request[Any, Any, Any], services: NamedDependency[Services], q: FromQuery[str] = "", establishment: FromQuery[str] = "",
    since: FromQuery[str] = "", until: FromQuery[str] = "",
) -> Template:
    searched = any((q, establishment, since, until))
    rows = services.inbox.find(q=q[:100], establishment_id=establishment, since=_date(since), until=_date(until)) if searched else []
    services.names.refresh()
    context = {
        "rows": rows, "q": q, "establishment": establishment, "since": since, "until": until, "searched": searched,
        "establishments": sorted(services.names.establishments.values(), key=lambda e: e["name"]), "names": services.names,
    }
    if is_htmx(request):
        return HTMXBlockTemplate(template_name="audit/search.html", block_name="results", context=context)
    return Template("audit/search.html", context=context)


def _trail(services: Services, user: SessionUser, dossier_id: str, kind: str = "audit") -> dict[str, Any]:
    d, history = services.relais.audit_trail(
        dossier_id=dossier_id, actor_id=user.practitioner_id, establishment_id=user.establishment_id, kind=kind
    )
    return {"d": d, "history": history, "accesses": services.access_log.for_dossier(d.id), "names": services.names}


@get("/audit/dossiers/{dossier_id:str}", guards=[AUDITOR], sync_to_thread=True, name="audit-dossier")
def trail(services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str]) -> Template:
    return Template("audit/dossier.html", context=_trail(services, user, dossier_id))


@get("/audit/dossiers/{dossier_id:str}/replay", guards=[AUDITOR], sync_to_thread=True, name="audit-replay")
def replay(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
    version: FromQuery[int] = 1,
) -> Template:
    """The dossier exactly as it was at `version` (aggregate at version N), stepping one event at a time."""
    d, history, head = services.relais.dossier_at(
        dossier_id=dossier_id, actor_id=user.practitioner_id, version=version, establishment_id=user.establishment_id
    )
    ws = Workspace(dossier=d, history=history, requester_side=False, actions=frozenset())
    context = {"d": d, "ws": ws, "history": list(history), "head": head, "version": d.version, "names": services.names,
               "current": history[-1] if history else None}
    if is_htmx(request):
        return HTMXBlockTemplate(template_name="audit/replay.html", block_name="replay", context=context)
    return Template("audit/replay.html", context=context)


def export_data(ctx: dict[str, Any]) -> dict[str, Any]:
    d = ctx["d"]
    names = ctx["names"]

    def who(actor: Json) -> Json:
        return dict(actor, establishment_name=names.establishment(actor.get("establishment_id")) if actor.get("establishment_id") else "")

    return {
        "dossier": {"id": d.id, "number": d.number, "state": d.state, "workflow": d.workflow, "version": d.version,
                    "patient": d.patient, "requester_establishment": names.establishment(d.requester["establishment_id"])},
        "events": [
            {"version": h.version, "event": h.event, "label": timeline_line(h.event, h.data, names)[0],
             "occurred_at": h.occurred_at.isoformat() if h.occurred_at else None, "recorded_at": h.recorded_at.isoformat(),
             "actor": who(h.actor), "data": h.data}
            for h in ctx["history"]
        ],
        "accesses": [
            {"at": a.occurred_at.isoformat(), "recorded_at": a.recorded_at.isoformat(), "kind": a.kind, "target": a.target,
             "outcome": a.outcome, "reason": a.reason, "practitioner_id": a.practitioner_id, "name": a.practitioner_name,
             "role": a.role, "establishment": a.establishment_name, "dossier_version": a.dossier_version}
            for a in ctx["accesses"]
        ],
    }


@get("/audit/dossiers/{dossier_id:str}/export.json", guards=[AUDITOR], sync_to_thread=True, name="audit-export")
def export_json(services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str]) -> Response[str]:
    ctx = _trail(services, user, dossier_id, kind="export")
    body = json.dumps(export_data(ctx), ensure_ascii=False, indent=2, default=str)
    return Response(body, media_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="piste-audit-{ctx["d"].number}.json"'})


@get("/audit/dossiers/{dossier_id:str}/print", guards=[AUDITOR], sync_to_thread=True, name="audit-print")
def export_print(services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str]) -> Template:
    return Template("audit/print.html", context=_trail(services, user, dossier_id, kind="export"))


@get("/audit/patients", guards=[AUDITOR], sync_to_thread=True, name="audit-patients")
def patients(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], q: FromQuery[str] = "",
    birth_name: FromQuery[str] = "", first_names: FromQuery[str] = "", birth_date: FromQuery[str] = "",
) -> Template:
    """Who accessed a given patient's data, and when (every dossier of that identity).

    The list of identities matching `q` is a search result (like the inbox, not traced); the accesses
    of one identity are the audit trail of each of its dossiers: one `audit` access per dossier shown."""
    found = services.access_log.patients(q) if len(q.strip()) >= 2 else []
    accesses = []
    born = _date(birth_date)
    if birth_name and first_names and born:
        accesses = services.access_log.for_patient(birth_name, first_names, born)
        for dossier_id in dict.fromkeys(a.dossier_id for a in accesses):
            services.relais.record_access(dossier_id=dossier_id, actor=actor_dict(user), kind="audit", target="patient-accesses")
    return Template("audit/patients.html", context={
        "q": q, "found": found, "accesses": accesses, "birth_name": birth_name, "first_names": first_names,
        "birth_date": born, "names": services.names,
    })


HANDLERS = [search, trail, replay, export_json, export_print, patients]

__all__ = ["HANDLERS", "label", "paris"]
