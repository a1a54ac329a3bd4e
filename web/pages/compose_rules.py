"""What the compose wizard decides per workflow: its steps and defaults, the patient's checks field by
field, the birthplace typed (a name, a label or a code), and the dossier's question drawn from its form."""

from __future__ import annotations

from datetime import date
from typing import Any

from adapters.communes import CODE, Communes, PlaceAmbiguous, PlaceNotFound, folded
from domain.errors import InvalidFieldError
from domain.forms import FormDefinition, display
from domain.values import ImagingSource, Urgency, Workflow, patient_identity

# Urgent work: three screens (patient, the workflow's form with consent and imaging, review and send).
FAST = (Workflow.STROKE_OPINION.value, Workflow.EMERGENCY_OPINION.value)
# Workflows that carry images: « Sans imagerie » is never chosen for the user.
IMAGING = (*FAST, Workflow.IMAGING_TRANSFER.value)

FULL_STEPS = {
    "workflow": "Parcours", "patient": "Patient", "question": "Formulaire et consentement", "documents": "Documents",
    "imaging": "Imagerie", "recipients": "Destinataires", "review": "Vérification et envoi",
}
FAST_TITLES = {Workflow.STROKE_OPINION.value: "Formulaire AVC", Workflow.EMERGENCY_OPINION.value: "Formulaire Urgences"}
SOURCE_CHOICES = {
    ImagingSource.DICOM_STORE.value: "Images poussées par la passerelle (PACS ou modalité) : jointes dès leur arrivée",
    ImagingSource.PACS_RETRIEVE.value: "Examen récupéré depuis le PACS (requête/récupération)",
    ImagingSource.FILE_IMPORT.value: "Import de fichiers (CD-ROM, export PACS)",
    ImagingSource.NONE.value: "Sans imagerie",
}
# The form's items that say what is asked, in this order: the dossier's question is made of them.
QUESTION_ITEMS = ("specialty", "question", "question_detail", "reason", "reason_detail", "requested_action")
SAFE_PATIENT = {"birth_name": "A", "first_names": "A", "birth_date": "2000-01-01", "sex": "F", "birth_place_code": "75056",
                "ins": None, "used_name": None}


def steps_for(workflow: str) -> dict[str, str]:
    """The steps shown in the stepper, in order, with their names."""
    if workflow in FAST:
        return {"patient": "Patient", "question": f"{FAST_TITLES[workflow]} et consentement", "review": "Vérification et envoi"}
    return dict(FULL_STEPS)


def next_step(workflow: str, step: str) -> str:
    """The step after `step`: on the short path of urgent work, its next screen; a step off it (documents,
    imaging, recipients, opened from the review) goes on in the long order, which ends at the review too."""
    order = list(steps_for(workflow))
    if step not in order:
        order = list(FULL_STEPS)
    return order[min(order.index(step) + 1, len(order) - 1)]


def default_urgency(workflow: str) -> str:
    return Urgency.STAT.value if workflow in FAST else Urgency.ROUTINE.value


def imaging_choices(workflow: str) -> dict[str, str]:
    """The ways images may come for this workflow (an imaging transfer has no « Sans imagerie »)."""
    if workflow == Workflow.IMAGING_TRANSFER.value:
        return {k: v for k, v in SOURCE_CHOICES.items() if k != ImagingSource.NONE.value}
    return dict(SOURCE_CHOICES)


def imaging_shown(workflow: str, current: str) -> str:
    """The way checked on the screen: the dossier's, except « Sans imagerie » on a workflow that carries
    images (a draft starts with it): then the gateway for urgent work, nothing (to choose) otherwise."""
    if current and (current != ImagingSource.NONE.value or workflow not in IMAGING):
        return current
    return ImagingSource.DICOM_STORE.value if workflow in FAST else ""


def imaging_error(workflow: str, source: str) -> str:
    """The refusal of the way chosen for this workflow, or ""."""
    if not source:
        return "choisissez comment l'imagerie arrive" if workflow in IMAGING else ""
    if source not in SOURCE_CHOICES:
        return "mode d'arrivée de l'imagerie inconnu"
    if source == ImagingSource.NONE.value and workflow == Workflow.IMAGING_TRANSFER.value:
        return "un transfert d'imagerie transmet des images : choisissez comment elles arrivent"
    return ""


def send_blocked(workflow: str, source: str, has_imaging: bool) -> str:
    """Why the draft may not be sent yet for its imaging, or "": an imaging transfer carries images."""
    if workflow == Workflow.IMAGING_TRANSFER.value and not has_imaging and source in ("", ImagingSource.NONE.value):
        return "un transfert d'imagerie transmet des images : choisissez comment elles arrivent"
    return ""


def patient_errors(patient: dict[str, Any], today: date) -> dict[str, str]:
    """Every field of the patient's identity refused, with its French message (the domain's rule, asked
    again with each refused field replaced by a valid value until none is left)."""
    trial, errors = dict(patient), dict[str, str]()
    for _ in range(len(SAFE_PATIENT) + 1):
        try:
            patient_identity(**trial, today=today)
            break
        except InvalidFieldError as e:
            errors.setdefault(e.field, e.message)
            if e.field not in SAFE_PATIENT or trial.get(e.field) == SAFE_PATIENT[e.field]:
                break
            trial[e.field] = SAFE_PATIENT[e.field]
    return errors


class Birthplace(InvalidFieldError):
    """The birthplace typed is refused; `candidates` are the places it may mean."""

    def __init__(self, message: str, candidates: list[tuple[str, str]] | None = None) -> None:
        super().__init__("birth_place", message)
        self.candidates = candidates or []


def birthplace(communes: Communes, typed: str, code: str) -> str:
    """The INSEE code of the birthplace: the code chosen in the list (or among the candidates) when the
    text still names it, else the text resolved: a code, « Toulouse (31) » or an exact name."""
    typed, code = typed.strip(), code.strip().upper()
    if code and CODE.fullmatch(code):
        names = {folded(p.name) for p in communes.places_of(code)} | {folded(p.label) for p in communes.places_of(code)}
        if not typed or typed.upper() == code or folded(typed) in names:
            return code
    if not typed:
        raise Birthplace("tapez la commune ou le pays de naissance (ou son code INSEE)")
    try:
        found = communes.resolve(typed)
    except PlaceAmbiguous as e:
        raise Birthplace(f"plusieurs lieux s'appellent « {typed} » : choisissez le bon ci-dessous",
                         [(p.code, communes.describe(p)) for p in e.candidates]) from None
    except PlaceNotFound:
        raise Birthplace(f"« {typed} » : commune ou pays inconnu. Tapez les premières lettres et choisissez dans la liste, "
                         "ou le code INSEE (5 caractères, ex. 31555)") from None
    return found if isinstance(found, str) else found.code


def birthplace_label(communes: Communes, code: str) -> str:
    """What the field shows for a code recorded: « Toulouse (31) », or the code when not in the list."""
    place = communes.by_code(code) if code else None
    return place.label if place else code


def question_text(definition: FormDefinition, answers: dict[str, Any]) -> str:
    """The dossier's question in words, from the items of the form that say what is asked."""
    lines = dict(display(definition, {k: v for k, v in answers.items() if k in QUESTION_ITEMS}))
    text = "\n".join(f"{label} : {value}" for label, value in lines.items())
    return (text or definition.title)[:10_000]
