"""Emergency opinion (avis Urgences) form: the specialty asked, the question, the context, vital distress."""

from __future__ import annotations

from domain.forms.model import FormDefinition, Item
from domain.values import Workflow

WORKFLOW = Workflow.EMERGENCY_OPINION

V1 = FormDefinition(
    id="emergency_opinion", version=1, title="Avis Urgences",
    items=(
        Item("specialty", "Spécialité sollicitée", "string", required=True, max_length=100,
             help="Par exemple : neurochirurgie, chirurgie vasculaire, réanimation"),
        Item("question", "Question posée", "text", required=True, max_length=2000),
        Item("context", "Contexte clinique", "text", max_length=4000,
             help="Motif d'admission, constantes, examens, traitements en cours"),
        Item("vital_distress", "Détresse vitale", "boolean", required=True),
        Item("transfer_considered", "Transfert envisagé", "boolean"),
    ),
)

DEFINITIONS = (V1,)
