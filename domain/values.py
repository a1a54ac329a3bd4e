"""Value objects and codes shared by the aggregates: workflows, sources, urgency, actor, patient."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from domain.errors import InvalidFieldError

CLOCK_SKEW = timedelta(minutes=2)
PARIS = ZoneInfo("Europe/Paris")  # the platform's local time: dates of birth, statistics' dates, what pages show

Json = dict[str, Any]
"""A JSON object as events carry it and aggregates keep it (actor, patient, requester, recipient, study,
a send's record...): plain data, stored as is and read back from events of every version."""


class Workflow(StrEnum):
    IMAGING_TRANSFER = "imaging_transfer"
    EMERGENCY_OPINION = "emergency_opinion"
    STROKE_OPINION = "stroke_opinion"
    KIDNEY_TRANSPLANT_MDT = "kidney_transplant_mdt"
    GENERIC_OPINION = "generic_opinion"
    OUT_OF_REGION_OPINION = "out_of_region_opinion"
    LEGACY = "legacy"


WORKFLOW_LABELS = {
    Workflow.IMAGING_TRANSFER: "Transfert d'imagerie hors urgences",
    Workflow.EMERGENCY_OPINION: "Demande d'avis Urgences",
    Workflow.STROKE_OPINION: "Demande d'avis AVC aigu",
    Workflow.KIDNEY_TRANSPLANT_MDT: "RCP Greffe rénale",
    Workflow.GENERIC_OPINION: "Demande d'avis générique",
    Workflow.OUT_OF_REGION_OPINION: "Demande d'avis hors région",
    Workflow.LEGACY: "Modules anciens",
}


class ImagingSource(StrEnum):
    FILE_IMPORT = "file_import"
    DICOM_STORE = "dicom_store"
    PACS_RETRIEVE = "pacs_retrieve"
    NONE = "none"


class Channel(StrEnum):
    """Inter-regional exchange channel of an out-of-region send."""

    NATIONAL_NETWORK = "national_network"
    ATTACHED_PROFESSIONAL = "attached_professional"
    EMAIL_INVITATION = "email_invitation"


class Urgency(StrEnum):
    """FHIR request priority."""

    ROUTINE = "routine"
    URGENT = "urgent"
    ASAP = "asap"
    STAT = "stat"


URGENCY_LABELS = {
    Urgency.ROUTINE: "Normale",
    Urgency.URGENT: "Urgente",
    Urgency.ASAP: "Dès que possible",
    Urgency.STAT: "Immédiate",
}


class Consent(StrEnum):
    GIVEN = "given"
    REFUSED = "refused"


class Role(StrEnum):
    CLINICIAN = "clinician"
    AUDITOR = "auditor"
    ANALYST = "analyst"
    ADMIN = "admin"


class NodeKind(StrEnum):
    GATEWAY = "gateway"
    PACS = "pacs"


class DossierState(StrEnum):
    DRAFT = "draft"
    REQUESTED = "requested"
    IN_PROGRESS = "in_progress"
    ANSWERED = "answered"
    DECLINED = "declined"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class SendState(StrEnum):
    """State of one recipient's task (FHIR Task)."""

    PENDING = "pending"  # addressed, not sent yet
    REQUESTED = "requested"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"  # complement requested, waiting for the requester
    ANSWERED = "answered"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    CLOSED = "closed"  # dossier closed before this recipient answered


ACTIVE_SEND_STATES = frozenset({SendState.REQUESTED, SendState.IN_PROGRESS, SendState.ON_HOLD})


def code(enum: type[StrEnum], value: str, field: str) -> str:
    """Checks that `value` is one of the codes of `enum`; returns it as a plain str."""
    try:
        return str(enum(value))
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise InvalidFieldError(field, f"valeur inconnue « {value} » (attendu : {allowed})") from None


def text(value: str | None, field: str, *, max_len: int, required: bool = True) -> str:
    """A trimmed text of bounded length; required texts may not be blank."""
    value = (value or "").strip()
    if required and not value:
        raise InvalidFieldError(field, "champ obligatoire")
    if len(value) > max_len:
        raise InvalidFieldError(field, f"trop long ({len(value)} caractères, maximum {max_len})")
    if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", value):
        raise InvalidFieldError(field, "caractères de contrôle interdits")
    return value


def business_time(value: datetime | None, now: datetime, field: str = "occurred_at") -> datetime:
    """When it happened: timezone-aware, not in the future beyond a small clock skew."""
    if value is None:
        return now
    if value.tzinfo is None:
        raise InvalidFieldError(field, "date sans fuseau horaire")
    if value - now > CLOCK_SKEW:
        raise InvalidFieldError(field, "date dans le futur")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Actor:
    """Who acts: a practitioner, in one role, for one establishment (and its services)."""

    practitioner_id: str
    role: str
    establishment_id: str
    service_ids: tuple[str, ...] = field(default=())
    name: str = ""

    def as_dict(self) -> Json:
        d = asdict(self)
        d["service_ids"] = list(self.service_ids)
        return d

    @classmethod
    def from_dict(cls, d: Json) -> Actor:
        return cls(
            practitioner_id=d["practitioner_id"],
            role=d["role"],
            establishment_id=d["establishment_id"],
            service_ids=tuple(d.get("service_ids", ())),
            name=d.get("name", ""),
        )


def folded(text: str | None) -> str:
    """A name as it is compared, however it was typed: lower case, without accents or surrounding spaces."""
    text = unicodedata.normalize("NFKD", text or "")
    return "".join(c for c in text if not unicodedata.combining(c)).lower().strip()


SEXES = {"M": "Masculin", "F": "Féminin", "I": "Indéterminé"}


def patient_identity(
    *,
    birth_name: str,
    first_names: str,
    birth_date: str,
    sex: str,
    birth_place_code: str,
    ins: str | None = None,
    used_name: str | None = None,
    today: date,
) -> Json:
    """The patient's INS strict identity traits, checked, as a plain dict stored in events."""
    from domain.identifiers import check_nir

    name_re = r"[A-Za-zÀ-ÖØ-öø-ÿŒœ' \-]+"
    birth_name = text(birth_name, "birth_name", max_len=100).upper()
    if not re.fullmatch(name_re, birth_name):
        raise InvalidFieldError("birth_name", "caractères non autorisés")
    first_names = text(first_names, "first_names", max_len=200)
    if not re.fullmatch(name_re, first_names):
        raise InvalidFieldError("first_names", "caractères non autorisés")
    try:
        born = date.fromisoformat((birth_date or "").strip())
    except ValueError:
        raise InvalidFieldError("birth_date", "date invalide (AAAA-MM-JJ attendu)") from None
    if born > today:
        raise InvalidFieldError("birth_date", "date de naissance dans le futur")
    if born.year < 1890:
        raise InvalidFieldError("birth_date", "date de naissance invraisemblable")
    sex = (sex or "").strip().upper()
    if sex not in SEXES:
        raise InvalidFieldError("sex", "sexe attendu : M, F ou I")
    place = (birth_place_code or "").strip().upper()
    if not re.fullmatch(r"(\d{5}|2A\d{3}|2B\d{3})", place):
        raise InvalidFieldError("birth_place_code", "code lieu de naissance INSEE à 5 caractères attendu")
    identity = {
        "birth_name": birth_name,
        "first_names": first_names,
        "birth_date": born.isoformat(),
        "sex": sex,
        "birth_place_code": place,
        "ins": check_nir(ins, "ins") if ins else None,
        "used_name": text(used_name, "used_name", max_len=100, required=False).upper() or None,
    }
    if identity["ins"] and identity["ins"][0] not in "12378":  # pragma: no cover (regex)
        raise InvalidFieldError("ins", "matricule INS invalide")
    return identity
