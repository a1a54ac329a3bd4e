"""Acute stroke (AVC aigu) opinion form: times, NIHSS, anticoagulation, imaging, thrombolysis, the question."""

from __future__ import annotations

from domain.forms.model import LOINC, Before, EnableWhen, FormDefinition, Item, SumEquals
from domain.values import Workflow

WORKFLOW = Workflow.STROKE_OPINION
FORM_ID = "stroke_opinion"

YES_NO_UNKNOWN = (("yes", "Oui"), ("no", "Non"), ("unknown", "Inconnu"))

# NIHSS items (code, label, maximum score): their maxima add up to 42, the total's maximum.
NIHSS_ITEMS = (
    ("1a", "Vigilance", 3), ("1b", "Orientation (questions)", 2), ("1c", "Commandes", 2),
    ("2", "Oculomotricité", 2), ("3", "Champ visuel", 3), ("4", "Paralysie faciale", 3),
    ("5a", "Motricité membre supérieur gauche", 4), ("5b", "Motricité membre supérieur droit", 4),
    ("6a", "Motricité membre inférieur gauche", 4), ("6b", "Motricité membre inférieur droit", 4),
    ("7", "Ataxie", 2), ("8", "Sensibilité", 2), ("9", "Langage", 3), ("10", "Dysarthrie", 2),
    ("11", "Extinction, négligence", 2),
)
NIHSS_DETAIL = EnableWhen("nihss_detail", "=", True)

_V1_ITEMS = (
    Item("time_reference", "Repère horaire", "choice", required=True,
         options=(("onset", "Heure de début des symptômes connue"), ("last_known_well", "Dernière fois vu normal"))),
    Item("onset_at", "Début des symptômes", "datetime", required=True,
         enable_when=(EnableWhen("time_reference", "=", "onset"),)),
    Item("last_known_well_at", "Dernière fois vu normal", "datetime", required=True,
         enable_when=(EnableWhen("time_reference", "=", "last_known_well"),)),
    Item("arrival_at", "Arrivée aux urgences (porte)", "datetime", required=True),
    Item("nihss_total", "Score NIHSS total", "integer", required=True, min=0, max=42,
         system=LOINC, system_code="72089-6", help="De 0 (aucun déficit) à 42"),
    Item("nihss_detail", "Détailler les items du NIHSS", "boolean"),
    *(Item(f"nihss_{code}", f"NIHSS {code} — {label}", "integer", min=0, max=top, enable_when=(NIHSS_DETAIL,))
      for code, label, top in NIHSS_ITEMS),
    Item("anticoagulant", "Traitement anticoagulant", "choice", required=True, options=YES_NO_UNKNOWN),
    Item("anticoagulant_drug", "Anticoagulant", "choice", required=True,
         options=(("apixaban", "Apixaban"), ("rivaroxaban", "Rivaroxaban"), ("edoxaban", "Édoxaban"),
                  ("dabigatran", "Dabigatran"), ("vka", "AVK (warfarine, fluindione, acénocoumarol)"),
                  ("heparin", "Héparine"), ("other", "Autre")),
         enable_when=(EnableWhen("anticoagulant", "=", "yes"),)),
    Item("anticoagulant_other", "Autre anticoagulant (nom)", "string", required=True, max_length=100,
         enable_when=(EnableWhen("anticoagulant", "=", "yes"), EnableWhen("anticoagulant_drug", "=", "other"))),
    Item("anticoagulant_last_dose_at", "Dernière prise de l'anticoagulant", "datetime", required=True,
         enable_when=(EnableWhen("anticoagulant", "=", "yes"),)),
    Item("weight", "Poids", "decimal", min=20, max=300, unit="kg", help="Estimé si le patient n'a pas été pesé"),
    Item("imaging", "Imagerie cérébrale réalisée", "choice", required=True,
         options=(("ct", "Scanner"), ("mri", "IRM"), ("none", "Pas encore"))),
    Item("angiography", "Angiographie (angio-scanner ou ARM) réalisée", "boolean", required=True,
         enable_when=(EnableWhen("imaging", "!=", "none"),)),
    Item("thrombolysis", "Thrombolyse administrée", "boolean", required=True),
    Item("thrombolysis_at", "Heure du bolus de thrombolyse", "datetime", required=True,
         enable_when=(EnableWhen("thrombolysis", "=", True),)),
    Item("question", "Question posée", "multichoice", required=True,
         options=(("thrombolysis", "Indication de thrombolyse"), ("thrombectomy", "Indication de thrombectomie"),
                  ("transfer", "Transfert en unité neurovasculaire"), ("other", "Autre question"))),
    Item("question_detail", "Précisez la question", "text", required=True, max_length=2000,
         enable_when=(EnableWhen("question", "=", "other"),)),
)

V1 = FormDefinition(
    id=FORM_ID, version=1, title="AVC aigu", items=_V1_ITEMS,
    rules=(
        Before("onset_at", "arrival_at", "le début des symptômes doit précéder l'arrivée"),
        Before("last_known_well_at", "arrival_at", "la dernière fois vu normal doit précéder l'arrivée"),
        Before("onset_at", "thrombolysis_at", "la thrombolyse ne peut précéder le début des symptômes"),
        Before("last_known_well_at", "thrombolysis_at", "la thrombolyse ne peut précéder la dernière fois vu normal"),
        SumEquals("nihss_total", tuple(f"nihss_{code}" for code, _, _ in NIHSS_ITEMS),
                  "le total ne correspond pas à la somme des items détaillés"),
    ),
)

DEFINITIONS = (V1,)
