"""The (establishment, role) contexts a signed-in practitioner may work in, for the context switcher."""

from __future__ import annotations

from dataclasses import dataclass

from application import Relais
from application.errors import NotFoundError
from web.labels import role_label


@dataclass(frozen=True)
class ContextChoice:
    establishment_id: str
    establishment_name: str
    role: str

    @property
    def value(self) -> str:
        return f"{self.establishment_id}|{self.role}"

    @property
    def label(self) -> str:
        return f"{self.establishment_name} — {role_label(self.role)}"


def context_choices(relais: Relais, practitioner_id: str) -> list[ContextChoice]:
    """Every (establishment, role) the practitioner holds now, read from the directory."""
    practitioner = relais.practitioner(practitioner_id=practitioner_id)
    if not practitioner.active:
        return []
    out: list[ContextChoice] = []
    for establishment_id, membership in practitioner.memberships.items():
        try:
            name = relais.establishment(establishment_id=establishment_id).name
        except NotFoundError:
            continue
        out.extend(ContextChoice(establishment_id, name, role) for role in sorted(membership.get("roles", [])))
    return out
