"""Kidney-transplant MDT (RCP greffe rénale) form: what the meeting needs to decide on a candidate or recipient."""

from __future__ import annotations

from domain.forms.model import AtLeastOne, EnableWhen, FormDefinition, Item
from domain.values import Workflow

WORKFLOW = Workflow.KIDNEY_TRANSPLANT_MDT

V1 = FormDefinition(
    id="kidney_transplant_mdt", version=1, title="RCP greffe rénale",
    items=(
        Item("stage", "Étape", "choice", required=True,
             options=(("assessment", "Bilan pré-greffe (inscription)"), ("waiting_list", "Patient inscrit en liste"),
                      ("offer", "Proposition de greffon"), ("follow_up", "Suivi post-greffe"))),
        Item("donor_type", "Type de donneur", "choice", required=True,
             options=(("living", "Donneur vivant"), ("brain_death", "Donneur décédé en mort encéphalique"),
                      ("maastricht_3", "Donneur décédé après arrêt circulatoire (Maastricht III)"),
                      ("not_yet", "Pas encore déterminé"))),
        Item("dialysis", "Dialyse", "choice", required=True,
             options=(("none", "Non dialysé (greffe préemptive)"), ("haemodialysis", "Hémodialyse"),
                      ("peritoneal", "Dialyse péritonéale"))),
        Item("dialysis_since", "Début de la dialyse", "date", required=True,
             enable_when=(EnableWhen("dialysis", "!=", "none"),)),
        Item("egfr", "DFG estimé", "decimal", min=0, max=150, unit="mL/min/1,73 m²"),
        Item("creatinine", "Créatininémie", "decimal", min=10, max=3000, unit="µmol/L"),
        Item("immunisation", "Immunisation anti-HLA", "choice", required=True,
             options=(("none", "Non immunisé"), ("immunised", "Immunisé"), ("unknown", "Inconnue"))),
        Item("hla_antibodies", "Anticorps anti-HLA (spécificités, MFI)", "text", required=True, max_length=2000,
             enable_when=(EnableWhen("immunisation", "=", "immunised"),)),
        Item("cpra", "TGI / cPRA", "integer", min=0, max=100, unit="%",
             enable_when=(EnableWhen("immunisation", "=", "immunised"),)),
        Item("previous_transplants", "Greffes antérieures", "integer", min=0, max=10),
        Item("comorbidities", "Comorbidités", "multichoice",
             options=(("diabetes", "Diabète"), ("cardiovascular", "Cardiopathie, artériopathie"),
                      ("cancer", "Antécédent de cancer"), ("obesity", "Obésité"), ("infection", "Infection chronique"),
                      ("other", "Autre"))),
        Item("comorbidities_detail", "Précisions sur les comorbidités", "text", max_length=2000),
        Item("question", "Question posée à la RCP", "text", required=True, max_length=2000),
    ),
    rules=(AtLeastOne(("egfr", "creatinine"), "indiquez le DFG estimé ou la créatininémie"),),
)

DEFINITIONS = (V1,)
