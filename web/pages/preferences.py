"""A clinician's notification preferences (their own only): which notifications by mail, urgent only,
quiet hours, daily digest, sound and desktop notifications, and « Je suis absent(e) »."""

from __future__ import annotations

import asyncio
from datetime import date, time
from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.response import Template

from adapters.notification_prefs import KIND_LABELS, KINDS, Preferences
from domain.errors import InvalidFieldError
from domain.values import Role
from web.guards import requires_role
from web.services import Services
from web.session import SessionUser

CLINICIAN = requires_role(Role.CLINICIAN)
KIND_CHOICES = [(k, KIND_LABELS[k]) for k in KINDS]


def _away(services: Services, practitioner_id: str) -> tuple[bool, date | None]:
    """Whether the directory (read model) has the practitioner away, and until when."""
    with services.pool.connection() as conn:
        row = conn.execute("SELECT away, away_until FROM dir_practitioners WHERE id = %s", (practitioner_id,)).fetchone()
    return (bool(row["away"]), row["away_until"]) if row else (False, None)


def _context(services: Services, user: SessionUser, prefs: Preferences, away: bool, until: str, **extra: Any) -> dict[str, Any]:
    with services.pool.connection() as conn:
        row = conn.execute("SELECT email FROM dir_practitioners WHERE id = %s", (user.practitioner_id,)).fetchone()
    return {"prefs": prefs, "kinds": KIND_CHOICES, "away": away, "away_until": until, "address": row["email"] if row else "",
            "error": "", "saved": False, **extra}


def _hour(value: str, field: str) -> time | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return time.fromisoformat(value).replace(second=0, microsecond=0)
    except ValueError:
        raise InvalidFieldError(field, "heure attendue au format HH:MM") from None


def parse(form: Any) -> tuple[Preferences, bool, str]:
    """(preferences, away, return date) from the submitted form; InvalidFieldError when wrong."""
    quiet_start, quiet_end = _hour(form.get("quiet_start", ""), "quiet_start"), _hour(form.get("quiet_end", ""), "quiet_end")
    if (quiet_start is None) != (quiet_end is None):
        raise InvalidFieldError("quiet_start", "heures calmes : indiquez le début et la fin, ou aucune des deux")
    if quiet_start is not None and quiet_start == quiet_end:
        raise InvalidFieldError("quiet_start", "heures calmes : le début et la fin doivent différer")
    kinds = frozenset(k for k in form.getall("kinds", []) if k in KINDS)
    prefs = Preferences(
        email=form.get("email") == "on", kinds=kinds, urgent_only=form.get("urgent_only") == "on",
        quiet_start=quiet_start, quiet_end=quiet_end, digest=form.get("digest") == "on",
        sound=form.get("sound") == "on", desktop=form.get("desktop") == "on",
    )
    away = form.get("away") == "on"
    until = (form.get("away_until", "") or "").strip()
    if until:
        try:
            back = date.fromisoformat(until)
        except ValueError:
            raise InvalidFieldError("away_until", "date de retour invalide (AAAA-MM-JJ)") from None
        if away and back < date.today():
            raise InvalidFieldError("away_until", "la date de retour est passée")
    return prefs, away, (until if away else "")


@get("/preferences/notifications", name="notification-preferences", guards=[CLINICIAN])
async def preferences_page(services: NamedDependency[Services], user: NamedDependency[SessionUser]) -> Template:
    def read() -> dict[str, Any]:
        away, until = _away(services, user.practitioner_id)
        prefs = services.preferences.get(user.practitioner_id)
        return _context(services, user, prefs, away, until.isoformat() if until else "")

    return Template("preferences/notifications.html", context=await asyncio.to_thread(read))


@post("/preferences/notifications", guards=[CLINICIAN])
async def save_preferences(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
) -> Template:
    """Saves my preferences and my absence (only mine: the practitioner is the session's)."""
    form = await request.form()
    try:
        prefs, away, until = parse(form)
    except InvalidFieldError as e:
        context = await asyncio.to_thread(
            _context, services, user, services.preferences.get(user.practitioner_id), form.get("away") == "on",
            str(form.get("away_until", ""))[:10], error=e.message,
        )
        return Template("preferences/notifications.html", context=context, status_code=422)

    def save() -> dict[str, Any]:
        services.preferences.save(user.practitioner_id, prefs)
        was_away, was_until = _away(services, user.practitioner_id)
        if (away, until or None) != (was_away, was_until.isoformat() if was_until else None):
            services.relais.set_away(practitioner_id=user.practitioner_id, away=away, until=until or None,
                                     admin_id=user.practitioner_id)
        return _context(services, user, prefs, away, until, saved=True)

    return Template("preferences/notifications.html", context=await asyncio.to_thread(save))


HANDLERS = [preferences_page, save_preferences]
