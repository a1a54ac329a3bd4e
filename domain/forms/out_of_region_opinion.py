"""Out-of-region opinion form: the generic opinion's questions and why the expertise is sought outside the region."""

from __future__ import annotations

from domain.forms.generic_opinion import OPINION_ITEMS
from domain.forms.model import FormDefinition, Item
from domain.values import Workflow

WORKFLOW = Workflow.OUT_OF_REGION_OPINION

V1 = FormDefinition(
    id="out_of_region_opinion", version=1, title="Demande d'avis hors région",
    items=(
        *OPINION_ITEMS,
        Item("why_out_of_region", "Pourquoi hors région", "choice",
             options=(("reference_centre", "Centre de référence"), ("not_available", "Expertise absente de la région"),
                      ("patient_follow_up", "Patient suivi hors région"), ("other", "Autre raison"))),
    ),
)

DEFINITIONS = (V1,)
