"""MDT session pages (RCP): the sessions, a new session, a session with its agenda, attendance, quorum and decisions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from adapters.mail.ics import session_ics
from application.errors import ForbiddenError
from application.mdt import SessionDetails
from domain.errors import InvalidFieldError, NotAllowedError, RelaisError
from domain.mdt import ATTENDANCE, SESSION_TYPES, SPECIALTIES, specialty_label
from domain.values import ACTIVE_SEND_STATES, PARIS, Role
from web.errors import is_htmx
from web.forms import new_token
from web.guards import requires_role
from web.services import Services
from web.session import SessionUser

CLINICIAN = requires_role(Role.CLINICIAN)
FIELD_MAX = 20_000


def _now() -> datetime:
    return datetime.now(UTC)


def _field(form: Any, name: str) -> str:
    return str(form.get(name, "") or "")[:FIELD_MAX]


def _base_url(request: Request[Any, Any, Any], services: Services) -> str:
    return services.settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")


def _session_context(services: Services, user: SessionUser, s: SessionDetails, **extra: Any) -> dict[str, Any]:
    specialties = list(dict.fromkeys([*s.specialties, *SPECIALTIES]))
    attended = {a["practitioner_id"]: a for a in s.attendance}
    rows = [{**p, **attended.get(p["practitioner_id"], {"status": "", "specialty": p.get("specialty") or ""})}
            for p in s.participants]
    rows += [a for pid, a in attended.items() if pid not in {p["practitioner_id"] for p in s.participants}]
    return {
        "s": s, "user": user, "rows": rows, "specialties": specialties, "attendance_labels": ATTENDANCE,
        "specialty_label": specialty_label, "colleagues": services.names.colleagues(s.establishment_id)
        if s.may_manage else [], "paris_date": lambda t: f"{t.astimezone(PARIS):%Y-%m-%d}",
        "paris_time": lambda t: f"{t.astimezone(PARIS):%H:%M}", "errors": {}, "values": {}, "notice": "", "form_token": new_token, **extra,
    }


def _read(services: Services, user: SessionUser, session_id: str, **extra: Any) -> dict[str, Any]:
    s = services.relais.mdt_session(session_id=session_id[:64], actor_id=user.acting())
    return _session_context(services, user, s, **extra)


def _page(request: Request[Any, Any, Any], context: dict[str, Any], status: int = 200) -> Template:
    if is_htmx(request):
        return HTMXBlockTemplate(template_name="mdt/session.html", block_name="session", context=context,
                                 status_code=status)
    return Template("mdt/session.html", context=context, status_code=status)


def _actor(user: SessionUser) -> dict[str, Any]:
    return {"practitioner_id": user.practitioner_id, "role": user.role, "establishment_id": user.establishment_id,
            "name": user.display_name}


def _trace(services: Services, user: SessionUser, dossier_id: str, what: str, error: Exception) -> None:
    """A command on a dossier refused for want of rights is traced (like the dossier page's), then answered 403."""
    if isinstance(error, (ForbiddenError, NotAllowedError)):
        services.relais.trace_refusal(dossier_id=dossier_id, actor=_actor(user), what=what, error=error)


# ------------------------------------------------------------------ the list, a new session


@get("/mdt", name="mdt-sessions", guards=[CLINICIAN], sync_to_thread=True)
def sessions(services: NamedDependency[Services], user: NamedDependency[SessionUser], past: FromQuery[bool] = False) -> Template:
    """Sessions of my establishment or to which I am invited: upcoming (soonest first) or past."""
    rows = services.mdt.sessions(user.establishment_id, user.practitioner_id, upcoming=not past, now=_now())
    return Template("mdt/index.html", context={"rows": rows, "past": past, "user": user, "names": services.names,
                                               "specialty_label": specialty_label})


def _new_context(services: Services, user: SessionUser, **extra: Any) -> dict[str, Any]:
    kind = "kidney_transplant"
    return {
        "user": user, "types": SESSION_TYPES, "services": services.names.services_of(user.establishment_id),
        "colleagues": services.names.colleagues(user.establishment_id),
        "specialties": list(dict.fromkeys([*SESSION_TYPES[kind]["specialties"], *SPECIALTIES])),
        "specialty_label": specialty_label, "values": {"specialties": SESSION_TYPES[kind]["specialties"],
                                                       "duration_minutes": "90", "participants": [user.practitioner_id]},
        "error": "", "form_token": new_token, **extra,
    }


@get("/mdt/sessions/new", name="mdt-new", guards=[CLINICIAN], sync_to_thread=True)
def new_session(services: NamedDependency[Services], user: NamedDependency[SessionUser]) -> Template:
    return Template("mdt/new.html", context=_new_context(services, user))


def _starts_at(form: Any) -> datetime:
    day, hour = _field(form, "date").strip(), _field(form, "time").strip()
    try:
        local = datetime.fromisoformat(f"{day}T{hour}")
    except ValueError:
        raise InvalidFieldError("date", "date et heure de la séance attendues (JJ/MM/AAAA, HH:MM)") from None
    return local.replace(tzinfo=PARIS)


def _minutes(form: Any) -> int:
    raw = _field(form, "duration_minutes").strip()
    if not raw.isdigit():
        raise InvalidFieldError("duration_minutes", "durée en minutes attendue")
    return int(raw)


@post("/mdt/sessions", name="mdt-create", guards=[CLINICIAN])
async def create_session(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
) -> Template | Redirect:
    """Schedules a session coordinated by me for a service of my establishment; the same form twice schedules one."""
    form = await request.form()

    def run() -> str:
        return services.relais.schedule_mdt_session(
            actor_id=user.acting(_field(form, "form_token")), service_id=_field(form, "service_id"),
            session_type=_field(form, "session_type") or "kidney_transplant", title=_field(form, "title"),
            starts_at=_starts_at(form), duration_minutes=_minutes(form), place=_field(form, "place"),
            video_url=_field(form, "video_url"), specialties=[str(v) for v in form.getall("specialties", [])][:30],
            participant_ids=[str(v) for v in form.getall("participants", [])][:60],
        )

    try:
        session_id = await asyncio.to_thread(run)
    except InvalidFieldError as e:
        values: dict[str, Any] = {k: _field(form, k) for k in ("service_id", "title", "date", "time",
                                                                "duration_minutes", "place", "video_url")}
        values["specialties"] = [str(v) for v in form.getall("specialties", [])]
        values["participants"] = [str(v) for v in form.getall("participants", [])]
        context = await asyncio.to_thread(_new_context, services, user, values=values, error=e.message, field=e.field)
        return Template("mdt/new.html", context=context, status_code=422)
    return Redirect(f"/mdt/sessions/{session_id}?created=1", status_code=303)


# ------------------------------------------------------------------ one session


@get("/mdt/sessions/{session_id:str}", name="mdt-session", guards=[CLINICIAN], sync_to_thread=True)
def session_page(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    session_id: FromPath[str], created: FromQuery[bool] = False,
) -> Template | Response[bytes]:
    """The session with its agenda (each dossier shown is traced as read), attendance and quorum;
    `/mdt/sessions/<id>.ics`: its invitation, to add to one's calendar."""
    if session_id.endswith(".ics"):
        s = services.relais.mdt_session(session_id=session_id.removesuffix(".ics")[:64], actor_id=user.acting(),
                                        trace=False)
        body = session_ics(s, base_url=_base_url(request, services), stamp=_now())
        # the framework adds « ; charset=utf-8 » to a text/* type (given here too, it came twice)
        return Response(body, media_type="text/calendar; method=REQUEST", headers={
            "Content-Disposition": f'attachment; filename="rcp-{s.starts_at.astimezone(PARIS):%Y%m%d-%H%M}.ics"'})
    notice = "Séance programmée." if created else ""
    return Template("mdt/session.html", context=_read(services, user, session_id, notice=notice))


@post("/mdt/sessions/{session_id:str}/attendance", name="mdt-attendance", guards=[CLINICIAN])
async def record_attendance(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    session_id: FromPath[str],
) -> Template:
    """Records the attendance of every row of the form that says something (one command per row; the same
    attendance again records nothing); the quorum shown comes back with it."""
    form = await request.form()
    token = _field(form, "form_token")

    def run() -> dict[str, Any]:
        rows = [(str(pid), _field(form, f"specialty-{pid}"), _field(form, f"status-{pid}"))
                for pid in form.getall("participant", [])][:100]
        extra = _field(form, "new_participant")
        if extra:
            rows.append((extra, _field(form, "new_specialty"), _field(form, "new_status") or "present"))
        try:
            for i, (pid, specialty, status) in enumerate(rows):
                if not status:
                    continue
                services.relais.record_mdt_attendance(
                    session_id=session_id[:64], actor_id=user.acting(f"{token}-{i}" if token else ""),
                    practitioner_id=pid[:64], specialty=specialty, status=status,
                )
        except InvalidFieldError as e:
            return _read(services, user, session_id, errors={"attendance": e.message}, status=422)
        return _read(services, user, session_id, notice="Présences enregistrées.")

    context = await asyncio.to_thread(run)
    return _page(request, context, context.pop("status", 200))


@post("/mdt/sessions/{session_id:str}/decisions/{dossier_id:str}", name="mdt-decision", guards=[CLINICIAN])
async def record_decision(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    session_id: FromPath[str], dossier_id: FromPath[str],
) -> Template:
    """The decision on one dossier of the agenda, given as the dossier's opinion; refused with the reason in
    French (the quorum not met, names the specialties missing) and the input kept."""
    form = await request.form()
    values = {k: _field(form, k) for k in ("decision", "proposal", "rationale", "follow_up")}

    def run() -> dict[str, Any]:
        try:
            services.relais.record_mdt_decision(
                session_id=session_id[:64], dossier_id=dossier_id[:64], actor_id=user.acting(_field(form, "form_token")),
                decision=values["decision"], proposal=values["proposal"], rationale=values["rationale"],
                follow_up=values["follow_up"],
            )
        except (ForbiddenError, NotAllowedError) as e:
            _trace(services, user, dossier_id, "mdt-decision", e)
            raise
        except RelaisError as e:
            message = e.message if isinstance(e, InvalidFieldError) else str(e)
            return _read(services, user, session_id, errors={dossier_id: message}, values={dossier_id: values}, status=422)
        return _read(services, user, session_id, notice="Décision enregistrée : l'avis est rendu au demandeur.")

    context = await asyncio.to_thread(run)
    return _page(request, context, context.pop("status", 200))


@post("/mdt/sessions/{session_id:str}/withdraw/{dossier_id:str}", name="mdt-withdraw", guards=[CLINICIAN])
async def withdraw(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    session_id: FromPath[str], dossier_id: FromPath[str],
) -> Template:
    form = await request.form()

    def run() -> dict[str, Any]:
        services.relais.withdraw_mdt_dossier(session_id=session_id[:64], dossier_id=dossier_id[:64],
                                             actor_id=user.acting(_field(form, "form_token")), reason=_field(form, "reason"))
        return _read(services, user, session_id, notice="Télédossier retiré de l'ordre du jour.")

    return _page(request, await asyncio.to_thread(run))


@post("/mdt/sessions/{session_id:str}/cancel", name="mdt-cancel", guards=[CLINICIAN])
async def cancel(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    session_id: FromPath[str],
) -> Template:
    form = await request.form()
    version = _field(form, "expected_version")

    def run() -> dict[str, Any]:
        services.relais.cancel_mdt_session(session_id=session_id[:64], actor_id=user.acting(_field(form, "form_token")),
                                           reason=_field(form, "reason"),
                                           expected_version=int(version) if version.isdigit() else None)
        return _read(services, user, session_id, notice="Séance annulée.")

    return _page(request, await asyncio.to_thread(run))


@post("/mdt/sessions/{session_id:str}/reschedule", name="mdt-reschedule", guards=[CLINICIAN])
async def reschedule(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    session_id: FromPath[str],
) -> Template:
    """Moves the session (date, duration, place, video link): its invitation is sent again (SEQUENCE + 1)."""
    form = await request.form()
    version = _field(form, "expected_version")

    def run() -> dict[str, Any]:
        try:
            services.relais.reschedule_mdt_session(
                session_id=session_id[:64], actor_id=user.acting(_field(form, "form_token")), starts_at=_starts_at(form),
                duration_minutes=_minutes(form), place=_field(form, "place"), video_url=_field(form, "video_url"),
                expected_version=int(version) if version.isdigit() else None,
            )
        except InvalidFieldError as e:
            return _read(services, user, session_id, errors={"reschedule": e.message}, status=422)
        return _read(services, user, session_id, notice="Séance modifiée : les participants reçoivent la nouvelle invitation.")

    context = await asyncio.to_thread(run)
    return _page(request, context, context.pop("status", 200))


@get("/mdt/sessions/{session_id:str}/fiche/{dossier_id:str}", name="mdt-fiche", guards=[CLINICIAN], sync_to_thread=True)
def fiche(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], session_id: FromPath[str],
    dossier_id: FromPath[str],
) -> Template:
    """The printable « fiche RCP » of a decision (the session's readers who may read the dossier)."""
    context = _read(services, user, session_id)
    item = next((i for i in context["s"].agenda if i.dossier_id == dossier_id and i.readable and i.decision), None)
    if item is None:
        raise ForbiddenError("pas de fiche RCP accessible pour ce télédossier dans cette séance")
    return Template("mdt/fiche.html", context={**context, "item": item})


# ------------------------------------------------------------------ from the dossier page


@get("/mdt/dossiers/{dossier_id:str}", name="mdt-dossier", guards=[CLINICIAN], sync_to_thread=True)
def dossier_sessions(
    services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
) -> Template:
    """The dossier page's MDT part (htmx): its sessions and decisions, and « Inscrire à une séance » for the
    organising side. Only for a user who may read the dossier; the read is traced (it shows the decisions)."""
    d = services.relais.get_dossier(dossier_id=dossier_id[:64], actor_id=user.acting())
    services.relais.record_access(dossier_id=d.id, actor=_actor(user), kind="dossier", target="mdt", dossier_version=d.version)
    rows = services.mdt.of_dossier(d.id)
    registered = {r.session.id for r in rows if not r.withdrawn}
    sent_here = d.workflow == "kidney_transplant_mdt" and any(
        s["establishment_id"] == user.establishment_id and s.get("sent_on") and s["state"] in ACTIVE_SEND_STATES
        for s in d.sends)
    open_sessions = [s for s in services.mdt.open_for(user.establishment_id, _now()) if s.id not in registered] if sent_here else []
    return Template("mdt/_dossier.html", context={
        "rows": rows, "open_sessions": open_sessions, "dossier_id": d.id, "user": user,
        "specialty_label": specialty_label, "form_token": new_token, "error": "",
    })


@post("/mdt/register", name="mdt-register", guards=[CLINICIAN])
async def register(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
) -> Redirect | Template:
    """Registers a dossier to a session of my establishment (« Inscrire à une séance »), then shows the session."""
    form = await request.form()
    session_id, dossier_id = _field(form, "session_id")[:64], _field(form, "dossier_id")[:64]

    def run() -> None:
        try:
            services.relais.register_mdt_dossier(session_id=session_id, dossier_id=dossier_id,
                                                 actor_id=user.acting(_field(form, "form_token")))
        except (ForbiddenError, NotAllowedError) as e:
            _trace(services, user, dossier_id, "mdt-register", e)
            raise

    await asyncio.to_thread(run)
    url = f"/mdt/sessions/{session_id}"
    if is_htmx(request):
        return Redirect(url, status_code=303, headers={"HX-Redirect": url})
    return Redirect(url, status_code=303)


HANDLERS = [sessions, new_session, create_session, session_page, record_attendance, record_decision, withdraw, cancel,
            reschedule, fiche, dossier_sessions, register]
