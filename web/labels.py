"""French labels for codes shown in pages (roles…)."""

from __future__ import annotations

ROLES = {
    "clinician": "Clinicien",
    "auditor": "Auditeur",
    "analyst": "Analyste",
    "admin": "Administrateur",
}


def role_label(code: str) -> str:
    return ROLES.get(code, code)
