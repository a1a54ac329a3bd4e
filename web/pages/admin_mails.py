"""The administrator's view of notification mails: the outbox's .eml files (with no SMTP server
configured) and the deliveries pending or failed, with « Réessayer ». Administrators act on the whole
platform, as on the directory."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email import message_from_string, policy
from typing import Any

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from adapters.mail import admin
from adapters.mail.compose import PARIS, urgency_label
from adapters.mail.senders import list_outbox, read_outbox
from adapters.notification_prefs import KIND_LABELS
from application.errors import NotFoundError
from domain.values import Role
from web.guards import requires_role
from web.services import Services

ADMIN = requires_role(Role.ADMIN)
STATE_LABELS = {
    "pending": "En attente", "sending": "En cours d'envoi", "sent": "Envoyé", "failed": "En échec",
    "skipped": "Non envoyé (préférences)", "digest": "Dans le récapitulatif",
}


def paris(when: datetime | None) -> str:
    return when.astimezone(PARIS).strftime("%d/%m/%Y %H:%M") if when else ""


@get("/admin/mails", name="admin-mails", guards=[ADMIN], sync_to_thread=True)
def mails(services: NamedDependency[Services], relance: FromQuery[str] = "") -> Template:
    settings = services.settings
    return Template("admin/mails.html", context={
        "rows": admin.deliveries(services.pool),
        "counts": admin.counts(services.pool),
        "outbox": list_outbox(settings.outbox), "smtp": bool(settings.smtp_url), "outbox_path": str(settings.outbox),
        "kinds": KIND_LABELS, "states": STATE_LABELS, "urgency_label": urgency_label, "paris": paris,
        "retried": relance == "1",
    })


@get("/admin/mails/outbox/{name:str}", name="admin-outbox-mail", guards=[ADMIN], sync_to_thread=True)
def outbox_mail(services: NamedDependency[Services], name: FromPath[str]) -> Template:
    """One outbox mail as text: its headers and its plain-text part (the raw file below)."""
    raw = read_outbox(services.settings.outbox, name[:200])
    if raw is None:
        raise NotFoundError("courriel introuvable dans la boîte d'envoi")
    message = message_from_string(raw, policy=policy.default)
    headers = [(k, str(v)) for k, v in message.items()]
    body = message.get_body(("plain",)) if hasattr(message, "get_body") else None
    text = body.get_content() if body is not None else ""
    return Template("admin/mail.html", context={"name": name, "headers": headers, "text": text, "raw": raw})


@post("/admin/mails/{mail_id:str}/retry", guards=[ADMIN], sync_to_thread=True)
def retry_mail(services: NamedDependency[Services], mail_id: FromPath[str]) -> Redirect:
    """« Réessayer »: a failed mail pending again now."""
    try:
        uid = str(uuid.UUID(mail_id[:64]))
    except ValueError:
        raise NotFoundError("courriel en échec introuvable") from None
    if not admin.retry(services.pool, uid, datetime.now(UTC)):
        raise NotFoundError("courriel en échec introuvable")
    return Redirect("/admin/mails?relance=1", status_code=303)


HANDLERS: list[Any] = [mails, outbox_mail, retry_mail]
