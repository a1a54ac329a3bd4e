"""Imaging transfer form: why the images travel and what the recipient should do with them."""

from __future__ import annotations

from domain.forms.model import EnableWhen, FormDefinition, Item
from domain.values import Workflow

WORKFLOW = Workflow.IMAGING_TRANSFER

V1 = FormDefinition(
    id="imaging_transfer", version=1, title="Transfert d'imagerie",
    items=(
        Item("reason", "Motif du transfert", "choice", required=True,
             options=(("patient_transfer", "Transfert ou consultation du patient"),
                      ("continuity", "Continuité des soins, suivi"), ("second_reading", "Relecture"),
                      ("other", "Autre motif"))),
        Item("reason_detail", "Précisez le motif", "text", required=True, max_length=2000,
             enable_when=(EnableWhen("reason", "=", "other"),)),
        Item("requested_action", "Ce que le destinataire doit faire", "choice", required=True,
             options=(("import", "Importer dans son PACS"), ("review", "Consulter les images"),
                      ("import_and_review", "Importer et consulter"))),
        Item("expected_by", "Images utiles avant le", "date", past=False),
        Item("note", "Message au destinataire", "text", max_length=2000),
    ),
)

DEFINITIONS = (V1,)
