"""The workflow's structured form of a dossier: answering it (validated server-side) and which definition reads it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from application.actors import Who
from application.commands import DossierCommands
from domain import forms
from domain.dossier import Dossier
from domain.errors import InvalidFieldError, NotAllowedError
from domain.forms import FormDefinition
from domain.values import Actor, Json


def definition_for(workflow: str, form: Json | None) -> FormDefinition | None:
    """The definition a dossier's form is answered with: the version it was answered with, else the workflow's
    current one (None for a workflow without a form, e.g. imported history). To read recorded answers, use their
    own id and version (`forms.definition`): a draft whose workflow changed holds answers to its former form."""
    current = forms.form_for(workflow) if forms.has_form(workflow) else None
    if form is not None and (current is None or current.id == form["id"]):
        return forms.definition(str(form["id"]), int(form["version"]))
    return current  # never answered, or answered for the workflow the draft had before


def definition_of(dossier: Dossier) -> FormDefinition | None:
    return definition_for(dossier.workflow, dossier.form)


class FormUseCases:
    """Answers to the workflow's form, on the draft, by the requester side; errors record nothing."""

    def __init__(self, commands: DossierCommands) -> None:
        self.commands = commands

    def answer_form(
        self, *, dossier_id: str, actor_id: Who, raw: dict[str, Any], expected_version: int | None = None,
        form_version: int | None = None, occurred_at: datetime | None = None,
    ) -> int | None:
        """Validates `raw` (item code → text or list of texts, as a form posts them) against the dossier's
        recorded form version, else its workflow's current one, and records the normalized answers.
        `form_version`, when given, is the version the page showed: a different one is refused."""

        def action(d: Dossier, actor: Actor, when: datetime) -> None:
            if not d.is_requester(actor):  # who may answer, before what they answered
                raise NotAllowedError("seul l'établissement requérant peut remplir le formulaire")
            definition = definition_of(d)
            if definition is None:
                raise InvalidFieldError("form", "pas de formulaire structuré pour ce circuit")
            if form_version is not None and form_version != definition.version:
                raise InvalidFieldError(
                    "form", f"ce télédossier suit la version {definition.version} du formulaire, "
                            f"pas la version {form_version} affichée : rechargez la page",
                )
            answers = forms.validate(definition, raw, now=self.commands.core.clock())
            d.answer_form(form=definition.key, answers=answers, actor=actor, occurred_at=when)

        return self.commands.run(dossier_id, actor_id, expected_version, action, occurred_at)
