"""The known form definitions, every version kept: a workflow's current form and any older version."""

from __future__ import annotations

from domain.errors import InvalidFieldError
from domain.forms.model import FormDefinition
from domain.values import Workflow


class UnknownForm(InvalidFieldError):
    """No definition with this id and version (or no form for this workflow)."""


class FormRegistry:
    """Definitions by (id, version); a workflow points to a form id, whose highest version is current."""

    def __init__(self) -> None:
        self._definitions: dict[tuple[str, int], FormDefinition] = {}
        self._by_workflow: dict[str, str] = {}

    def register(self, definition: FormDefinition, *, workflow: str | None = None) -> FormDefinition:
        key = (definition.id, definition.version)
        if key in self._definitions and self._definitions[key] != definition:
            raise ValueError(f"form {definition.id} v{definition.version} already defined otherwise: make a new version")
        self._definitions[key] = definition
        if workflow is not None:
            self._by_workflow[workflow] = definition.id
        return definition

    def definition(self, form_id: str, version: int | None = None) -> FormDefinition:
        """The definition with this id and version (the latest when version is None)."""
        versions = self.versions(form_id)
        if not versions:
            raise UnknownForm("form", f"formulaire inconnu : {form_id}")
        if version is None:
            return self._definitions[(form_id, versions[-1])]
        found = self._definitions.get((form_id, int(version)))
        if found is None:
            raise UnknownForm("form", f"version {version} du formulaire {form_id} inconnue")
        return found

    def versions(self, form_id: str) -> list[int]:
        return sorted(version for (known, version) in self._definitions if known == form_id)

    def form_for(self, workflow: Workflow | str) -> FormDefinition:
        """The current definition of a workflow's form."""
        form_id = self._by_workflow.get(str(workflow))
        if form_id is None:
            raise UnknownForm("workflow", "pas de formulaire structuré pour ce circuit")
        return self.definition(form_id)

    def has_form(self, workflow: Workflow | str) -> bool:
        return str(workflow) in self._by_workflow
