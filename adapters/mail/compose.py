"""French notification mails (plain text and HTML) from `notifications` rows — never health data.

A mail carries the dossier number, the workflow, the urgency, the deadline and a link; never the
patient's name or birth date, the question, or any text a user wrote (a decline's reason is its
coded label). Its Message-ID is derived from the notification id, so every attempt at the same
notification carries the same one.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from zoneinfo import ZoneInfo

from adapters.notification_prefs import KIND_LABELS
from domain.deadlines import STEP_LABELS
from domain.dossier import DECLINE_REASONS
from domain.values import URGENCY_LABELS, WORKFLOW_LABELS, Urgency, Workflow

PARIS = ZoneInfo("Europe/Paris")

# What the mail says happened, one sentence per kind (no free text: only coded values and names).
KIND_SENTENCES = {
    "received": "Un télédossier vous a été adressé.",
    "complement_provided": "Le demandeur a apporté le complément demandé.",
    "accepted": "Votre demande a été prise en charge.",
    "declined": "Votre demande a été déclinée.",
    "complement_requested": "Un complément vous est demandé pour votre demande.",
    "message": "Un nouveau message vous attend dans l'échange d'un télédossier.",
    "opinion_given": "L'avis a été rendu sur votre demande.",
    "closed": "Le télédossier a été clôturé.",
    "cancelled": "Le demandeur a annulé ce télédossier : aucun avis n'est plus attendu.",
    "escalated_to_you": "Une demande non prise en charge dans le délai vous est transmise.",
    "escalated": "Une demande non prise en charge dans le délai a été transmise à l'astreinte.",
    "reminder": "Rappel concernant un télédossier.",
    "deadline_missed": "Le délai de réponse de votre demande est dépassé.",
}


@dataclass(frozen=True)
class Notification:
    """What a mail may say about one notification (a `notifications` row joined to its mail row)."""

    id: str
    practitioner_id: str
    address: str
    dossier_id: str
    number: str
    kind: str
    workflow: str
    urgency: str
    deadline: datetime | None
    detail: dict[str, Any]
    occurred_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Notification:
        return cls(
            id=str(row["id"]), practitioner_id=str(row["practitioner_id"]), address=row["address"],
            dossier_id=str(row["dossier_id"]), number=row["number"], kind=row["kind"], workflow=row["workflow"],
            urgency=row["urgency"], deadline=row["deadline"], detail=dict(row["detail"] or {}),
            occurred_at=row["occurred_at"],
        )


def kind_label(notification: Notification) -> str:
    if notification.kind == "reminder":
        return STEP_LABELS.get(str(notification.detail.get("step", "")), KIND_LABELS["reminder"]).removeprefix("Rappel : ")
    return KIND_LABELS.get(notification.kind, notification.kind)


def workflow_label(code: str) -> str:
    try:
        return WORKFLOW_LABELS[Workflow(code)]
    except ValueError:
        return code


def urgency_label(code: str) -> str:
    try:
        return URGENCY_LABELS[Urgency(code)]
    except ValueError:
        return code


def paris_time(when: datetime) -> str:
    """« 08/12/2026 à 14:05 (heure de Paris) »."""
    return when.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M") + " (heure de Paris)"


def message_id(notification_id: str, mail_from: str) -> str:
    """The deterministic Message-ID of a notification's mail (same on every attempt)."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "relais.invalid"
    return f"<{notification_id}@{domain}>"


def subject(notification: Notification) -> str:
    return f"[Relais] {notification.number} — {kind_label(notification)} ({urgency_label(notification.urgency)})"


def facts(notification: Notification) -> list[tuple[str, str]]:
    """The lines of a mail, as (label, value): coded values and names only."""
    lines = [
        ("Télédossier", notification.number),
        ("Circuit", workflow_label(notification.workflow)),
        ("Urgence", urgency_label(notification.urgency)),
    ]
    if notification.kind == "reminder" and notification.detail.get("step") in STEP_LABELS:
        lines.append(("Étape", STEP_LABELS[str(notification.detail["step"])]))
    if notification.kind == "declined" and notification.detail.get("reason_code") in DECLINE_REASONS:
        lines.append(("Motif", DECLINE_REASONS[str(notification.detail["reason_code"])]))
    if isinstance(notification.detail.get("by"), str) and notification.detail["by"]:
        lines.append(("Par", notification.detail["by"]))
    if isinstance(notification.detail.get("service"), str) and notification.detail["service"]:
        lines.append(("Service", notification.detail["service"]))
    if notification.deadline is not None:
        lines.append(("Échéance", paris_time(notification.deadline)))
    lines.append(("Événement", paris_time(notification.occurred_at)))
    return lines


FOOTER = (
    "Ce message ne contient aucune donnée de santé : consultez le télédossier dans Relais.\n"
    "Vous recevez ce message selon vos préférences de notification : {prefs}"
)


def _envelope(message: EmailMessage, *, to: str, mail_from: str, base_url: str, msg_id: str, when: datetime) -> None:
    message["From"] = mail_from
    message["To"] = to
    message["Date"] = format_datetime(when.astimezone(PARIS))
    message["Message-ID"] = msg_id
    prefs = f"{base_url}/preferences/notifications"
    message["List-Unsubscribe"] = f"<{prefs}>"
    message["Auto-Submitted"] = "auto-generated"
    message["Content-Language"] = "fr"


def compose(notification: Notification, *, mail_from: str, base_url: str) -> EmailMessage:
    """The mail of one notification: a plain-text part and an HTML part, in French."""
    link = f"{base_url}/dossiers/{notification.dossier_id}"
    prefs = f"{base_url}/preferences/notifications"
    sentence = KIND_SENTENCES.get(notification.kind, "")
    lines = facts(notification)
    text = "\n".join([
        sentence, "", *(f"{label} : {value}" for label, value in lines), "",
        f"Ouvrir le télédossier : {link}", "", "-- ", FOOTER.format(prefs=prefs),
    ]) + "\n"
    e = html.escape
    rows = "".join(f"<tr><th align=\"left\">{e(label)}</th><td>{e(value)}</td></tr>" for label, value in lines)
    body = (
        "<!doctype html><html lang=\"fr\"><head><meta charset=\"utf-8\"></head><body>"
        f"<p>{e(sentence)}</p><table>{rows}</table>"
        f"<p><a href=\"{e(link)}\">Ouvrir le télédossier {e(notification.number)}</a></p>"
        "<hr><p><small>Ce message ne contient aucune donnée de santé : consultez le télédossier dans Relais.<br>"
        f"Vous recevez ce message selon vos <a href=\"{e(prefs)}\">préférences de notification</a>.</small></p>"
        "</body></html>"
    )
    message = EmailMessage()
    message["Subject"] = subject(notification)
    _envelope(message, to=notification.address, mail_from=mail_from, base_url=base_url,
              msg_id=message_id(notification.id, mail_from), when=notification.occurred_at)
    message.set_content(text)
    message.add_alternative(body, subtype="html")
    return message


def compose_digest(
    notifications: Sequence[Notification], *, digest_id: str, mail_from: str, base_url: str, when: datetime,
) -> EmailMessage:
    """The daily digest of one practitioner: one line per notification (number, event, urgency, link)."""
    assert notifications
    prefs = f"{base_url}/preferences/notifications"
    count = len(notifications)
    title = f"[Relais] Récapitulatif du {when.astimezone(PARIS).strftime('%d/%m/%Y')} — {count} notification" + (
        "s" if count > 1 else "")
    text_lines = [f"{count} notification{'s' if count > 1 else ''} depuis le dernier récapitulatif :", ""]
    e = html.escape
    items = []
    for n in notifications:
        link = f"{base_url}/dossiers/{n.dossier_id}"
        deadline = f", échéance {paris_time(n.deadline)}" if n.deadline else ""
        line = f"{n.number} — {kind_label(n)} ({urgency_label(n.urgency)}, {workflow_label(n.workflow)}{deadline})"
        text_lines.append(f"- {line} : {link}")
        items.append(f"<li><a href=\"{e(link)}\">{e(n.number)}</a> — {e(line.partition(' — ')[2])}</li>")
    text = "\n".join([*text_lines, "", "-- ", FOOTER.format(prefs=prefs)]) + "\n"
    body = (
        "<!doctype html><html lang=\"fr\"><head><meta charset=\"utf-8\"></head><body>"
        f"<p>{e(text_lines[0])}</p><ul>{''.join(items)}</ul>"
        "<hr><p><small>Ce message ne contient aucune donnée de santé : consultez les télédossiers dans Relais.<br>"
        f"Vous recevez ce récapitulatif selon vos <a href=\"{e(prefs)}\">préférences de notification</a>.</small></p>"
        "</body></html>"
    )
    message = EmailMessage()
    message["Subject"] = title
    _envelope(message, to=notifications[0].address, mail_from=mail_from, base_url=base_url,
              msg_id=message_id(digest_id, mail_from), when=when)
    message.set_content(text)
    message.add_alternative(body, subtype="html")
    return message
