"""Generic opinion form: the specialty asked, the question, the context."""

from __future__ import annotations

from domain.forms.model import FormDefinition, Item
from domain.values import Workflow

WORKFLOW = Workflow.GENERIC_OPINION

OPINION_ITEMS = (
    Item("specialty", "Spécialité sollicitée", "string", required=True, max_length=100),
    Item("question", "Question posée", "text", required=True, max_length=2000),
    Item("context", "Contexte clinique", "text", max_length=4000,
         help="Antécédents, histoire de la maladie, examens et traitements utiles à l'avis"),
)

V1 = FormDefinition(id="generic_opinion", version=1, title="Demande d'avis", items=OPINION_ITEMS)

DEFINITIONS = (V1,)
