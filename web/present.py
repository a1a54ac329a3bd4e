"""French labels and formats for pages: states, workflows, urgencies, Paris dates, ages, timeline lines."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from jinja2 import Environment

from adapters.communes import shipped as communes
from adapters.notification_prefs import KIND_LABELS
from domain.access import ACCESS_KINDS, OUTCOMES
from domain.deadlines import STEP_LABELS, format_delay
from domain.dossier import DECLINE_REASONS, MILESTONES
from domain.values import PARIS, SEXES, URGENCY_LABELS, WORKFLOW_LABELS, Json
from web import dicom_format, form_fields
from web.forms import new_token
from web.names import Names

DOSSIER_STATES = {
    "draft": "Brouillon", "requested": "Envoyé", "in_progress": "En cours", "answered": "Avis rendu",
    "declined": "Refusé", "closed": "Clôturé", "cancelled": "Annulé",
}
SEND_STATES = {
    "pending": "À envoyer", "requested": "Nouveau", "in_progress": "En cours", "on_hold": "Complément demandé",
    "answered": "Avis rendu", "declined": "Refusé", "cancelled": "Annulé", "closed": "Clôturé",
}
WORKFLOW_SHORT = {
    "imaging_transfer": "Transfert d'imagerie", "emergency_opinion": "Avis urgences", "stroke_opinion": "AVC aigu",
    "kidney_transplant_mdt": "RCP greffe rénale", "generic_opinion": "Avis", "out_of_region_opinion": "Hors région",
    "legacy": "Ancien module",
}
IMAGING_SOURCES = {
    "none": "Sans imagerie",
    "file_import": "Import de fichiers (CD-ROM, export PACS)",
    "dicom_store": "Examen poussé par le PACS ou la modalité (C-STORE)",
    "pacs_retrieve": "Examen récupéré depuis le PACS (requête/récupération)",
}
CHANNELS = {
    "national_network": "Réseau national (plateforme d'une autre région)",
    "attached_professional": "Professionnel rattaché à la plateforme",
    "email_invitation": "Invitation par courriel",
}
FOLLOW_UP = {
    "none": "Pas de suivi particulier",
    "scheduled": "Consultation programmée",
    "prompt": "Sous 48 heures",
    "immediate": "Immédiate (appel ou transfert)",
}
CONSENT = {"given": "Recueilli", "refused": "Refusé"}
DRAFT_FIELDS = {
    "question": "question", "urgency": "urgence", "patient": "identité du patient", "workflow": "parcours",
    "imaging_source": "source de l'imagerie",
}
TABS = {"received": "Reçus", "sent": "Envoyés", "drafts": "Brouillons", "closed": "Clôturés"}
NOTIFICATION_KINDS = KIND_LABELS  # the notifications projection's kinds: one table (adapters/notification_prefs.py)


def notification_title(n: Any) -> str:
    """« Avis rendu · TD-7F3AQ2KD9M (AVC aigu, Immédiate) »: what a notification says in the list, the
    tab and a desktop notification — never patient data (a lock screen may show it)."""
    what = NOTIFICATION_KINDS.get(n.kind, n.kind)
    return f"{what} · {n.number} ({WORKFLOW_SHORT.get(n.workflow, n.workflow)}, {URGENCY_LABELS.get(n.urgency, n.urgency)})"


def notification_detail(n: Any) -> str:
    """The detail line of a notification: the step of a reminder, who acted, which service, the reason code."""
    d = n.detail or {}
    parts = [STEP_LABELS.get(d.get("step", ""), "")]
    if d.get("reason_code"):
        parts.append(label("decline", d["reason_code"]))
    if d.get("by"):
        parts.append(f"par {d['by']}")
    if d.get("service"):
        parts.append(str(d["service"]))
    return " · ".join(p for p in parts if p)


def paris(value: datetime | str | None, fmt: str = "%d/%m/%Y %H:%M") -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(PARIS).strftime(fmt)


def day(value: date | str | None) -> str:
    if not value:
        return ""
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    return value.strftime("%d/%m/%Y")


def ago(value: datetime | str | None, now: datetime | None = None) -> str:
    """« 5 min », « 3 h », « 2 j » — how long ago, short, for inbox rows."""
    if not value:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    if seconds < 60:
        return "à l'instant"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    if seconds < 86400 * 60:
        return f"{int(seconds // 86400)} j"
    return paris(value, "%d/%m/%Y")


def span(minutes: int) -> str:
    """A time left or late, rounded as people say it (domain/deadlines.format_delay's units):
    « 25 min », « 2 h », « 1 h 30 », « 3 j » (from 48 h on, whole days)."""
    minutes = max(1, minutes)
    if minutes >= 48 * 60:
        return f"{minutes // (24 * 60)} j"
    return format_delay(minutes)


def time_left(due: datetime | str | None, now: datetime | None = None) -> tuple[str, bool]:
    """(« reste 25 min » | « en retard de 2 h », overdue) of a deadline; ("", False) without one."""
    if not due:
        return "", False
    if isinstance(due, str):
        due = datetime.fromisoformat(due)
    seconds = (due - (now or datetime.now(UTC))).total_seconds()
    if seconds >= 0:
        return f"reste {span(int(seconds // 60))}", False
    return f"en retard de {span(int(-seconds // 60))}", True


def age_years(birth: date | str | None, today: date | None = None) -> str:
    if not birth:
        return ""
    if isinstance(birth, str):
        birth = date.fromisoformat(birth[:10])
    today = today or datetime.now(PARIS).date()
    years = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
    if years < 2:
        months = (today.year - birth.year) * 12 + today.month - birth.month - (today.day < birth.day)
        return f"{months} mois"
    return f"{years} ans"


def label(table: str, code: str | None) -> str:
    tables: dict[str, Mapping[Any, str]] = {  # keyed by codes: str, or the domain's StrEnum members
        "state": DOSSIER_STATES, "send": SEND_STATES, "workflow": WORKFLOW_LABELS, "workflow_short": WORKFLOW_SHORT,
        "urgency": URGENCY_LABELS, "sex": SEXES, "source": IMAGING_SOURCES, "channel": CHANNELS,
        "follow_up": FOLLOW_UP, "decline": DECLINE_REASONS, "access": ACCESS_KINDS, "outcome": OUTCOMES, "tab": TABS,
        "notification": NOTIFICATION_KINDS, "milestone": MILESTONES, "consent": CONSENT,
    }
    return tables[table].get(code, code or "")


def plural(n: int, one: str, many: str | None = None) -> str:
    """« 1 image », « 2 images », « 0 image » (French: the singular up to 1)."""
    return f"{n} {one if abs(n) <= 1 else (many or one + 's')}"


def pieces(data: Json) -> str:
    """« 2 documents, 1 examen »: what a message or a complement answer points to."""
    docs, studies = len(data.get("document_ids", []) or []), len(data.get("study_uids", []) or [])
    return ", ".join(x for x in (plural(docs, "document") if docs else "", plural(studies, "examen") if studies else "") if x)


def timeline_line(event: str, data: Json, names: Names) -> tuple[str, str]:
    """(title, detail) of one history entry, in French, with names resolved."""
    def recipient(r: Json) -> str:
        return names.recipient(r.get("establishment_id"), r.get("service_id"), r.get("practitioner_id"))

    match event:
        case "Created":
            return "Télédossier créé", label("workflow", data.get("workflow"))
        case "DraftEdited":
            return "Brouillon modifié", ", ".join(sorted(DRAFT_FIELDS.get(k, k) for k in data.get("changes", {})))
        case "ConsentRecorded":
            status = data.get("status")
            return ("Consentement recueilli" if status == "given" else "Refus de consentement"), data.get("note", "")
        case "DocumentAttached":
            return "Document joint", data.get("document", {}).get("filename", "")
        case "DocumentRemoved":
            return "Document retiré", ""
        case "ImagingAttached":
            study = data.get("study", {})
            detail = " ".join(x for x in (study.get("description"), ", ".join(study.get("modalities", []))) if x)
            if data.get("override"):
                detail += " — identité des images confirmée malgré des différences"
            return "Imagerie jointe", detail
        case "ImagingHeld":  # no identity here: the timeline is read by recipients too
            n = sum(r.get("count", 0) for r in data.get("identities", []))
            why = {"quarantined": "reçues après rattachement",
                   "ambiguous": "identifiant patient attendu par plusieurs télédossiers"}.get(
                data.get("reason", ""), "examen attendu non joint")
            return "Images mises à l'écart (identité du patient)", f"{plural(n, 'image')}, {why}"
        case "ImagingAwaited":
            awaited = [f"n° d'examen {data['accession_number']}" if data.get("accession_number") else "",
                       f"identifiant patient {data['patient_id']}" if data.get("patient_id") else ""]
            issuer = f" ({data['issuer']})" if data.get("issuer") else ""
            return "Examen attendu de la passerelle", " ; ".join(x for x in awaited if x) + issuer
        case "ImagingDetached":
            return "Imagerie retirée", ""
        case "RecipientAddressed":
            return "Destinataire ajouté", recipient(data.get("recipient", {}))
        case "RecipientRemoved":
            return "Destinataire retiré", ""
        case "Sent":
            n = len(data.get("send_ids", []))
            return "Envoyé", f"à {n} destinataire{'s' if n > 1 else ''}"
        case "Accepted":
            return "Pris en charge", ""
        case "Declined":
            return "Refusé", " — ".join(x for x in (label("decline", data.get("reason_code")), data.get("reason")) if x)
        case "ComplementRequested":
            return "Complément demandé", data.get("message", "")
        case "ComplementProvided":
            return "Complément apporté", " — ".join(x for x in (data.get("message", ""), pieces(data)) if x)
        case "MessagePosted":
            return "Message", " — ".join(x for x in (data.get("text", ""), pieces(data)) if x)
        case "FormAnswered":
            form = data.get("form", {})
            return "Formulaire renseigné", f"{form.get('id', '')} v{form.get('version', '')}"
        case "MilestoneRecorded":
            return "Jalon : " + label("milestone", data.get("milestone")), paris(data.get("at"))
        case "ReceiptAcknowledged":
            return "Réception de l'imagerie accusée", data.get("note", "")
        case "ReportIssued":
            return "Compte rendu PDF émis", "SHA-256 " + str(data.get("report", {}).get("sha256", ""))[:16] + "…"
        case "Forwarded":
            return "Transféré", " — ".join(x for x in (recipient(data.get("to", {})), data.get("note")) if x)
        case "OpinionGiven":
            return "Avis rendu", data.get("conclusion", "")
        case "Closed":
            return "Clôturé", data.get("note", "")
        case "Cancelled":
            return "Annulé", data.get("reason", "")
        case "Escalated":
            return "Escaladé (délai de prise en charge dépassé)", "vers " + recipient(data.get("to", {}))
    return event, ""


def place(code: str | None) -> str:
    """A birthplace's INSEE code as a reader knows it: « Toulouse (31) », « Maroc (étranger) », else the code."""
    try:
        found = communes().by_code(code) if code else None
    except OSError:  # an install without the list: the code as recorded
        found = None
    return found.label if found else (code or "")


def register(env: Environment) -> None:
    """Adds the filters to a Jinja environment."""
    env.filters.update(
        paris=paris, day=day, plural=plural, ago=ago, age_years=age_years, time_left=time_left,
        label=lambda code, table: label(table, code), place=place,
    )
    dicom_format.register(env.filters)  # DICOM dates and times in French, names of studies and series
    env.globals["timeline_line"] = timeline_line
    env.globals["notification_title"] = notification_title
    env.globals["notification_detail"] = notification_detail
    env.globals["now_paris"] = lambda: paris(datetime.now(UTC))
    env.globals["form_token"] = new_token  # a fresh token per form rendered (web/forms.py)
    form_fields.register(env.globals)  # structured forms: form_definition(id, version), … (web/form_fields.py)
