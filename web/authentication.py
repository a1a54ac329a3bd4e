"""Who is logging in: the Authenticator interface and its local-password implementation."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from adapters.credentials import Credentials
from application import Relais
from application.errors import NotFoundError
from domain.errors import InvalidFieldError
from domain.values import PARIS, Json

log = logging.getLogger("relais.web.auth")

NO_ONE = "00000000-0000-0000-0000-000000000000"  # verified against to spend a real check's time

BAD_CREDENTIALS = "Identifiant ou mot de passe incorrect."
INACTIVE = "Ce compte est désactivé. Contactez l'administrateur de votre établissement."
NO_MEMBERSHIP = "Aucun rôle ne vous est attribué dans un établissement. Contactez l'administrateur."


@dataclass(frozen=True)
class Identity:
    """An authenticated practitioner, whatever the means (local password, Pro Santé Connect…)."""

    practitioner_id: str
    display_name: str
    memberships: dict[str, Json]  # {establishment_id: {"roles": [...], "service_ids": [...]}}
    method: str  # "password", later "psc"


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    identity: Identity | None = None
    message: str = ""  # French, shown to the user when not ok
    locked_until: datetime | None = None


class Authenticator(Protocol):
    """Checks a login and a secret; pages only ever see an AuthResult."""

    def authenticate(self, login: str, password: str) -> AuthResult: ...


def locked_message(until: datetime) -> str:
    local = until.astimezone(PARIS)
    return (
        "Compte verrouillé après plusieurs échecs de connexion : "
        f"réessayez après {local:%H} h {local:%M} (heure de Paris, le {local:%d/%m/%Y})."
    )


class LocalPasswordAuthenticator:
    """Login = the 11-digit RPPS number; password checked by the argon2 credentials store."""

    method = "password"

    def __init__(self, relais: Relais, credentials: Credentials):
        self.relais = relais
        self.credentials = credentials

    def authenticate(self, login: str, password: str) -> AuthResult:
        try:
            practitioner = self.relais.practitioner(rpps=(login or "").strip())
        except (InvalidFieldError, NotFoundError):
            self.credentials.verify(NO_ONE, password or "")  # same time and answer as a wrong password
            return AuthResult(ok=False, message=BAD_CREDENTIALS)
        outcome = self.credentials.verify(practitioner.id, password or "")
        if outcome.locked and outcome.locked_until is not None:  # a lock always comes with its end
            log.warning("connexion refusée, compte verrouillé : %s", practitioner.id)
            return AuthResult(ok=False, message=locked_message(outcome.locked_until), locked_until=outcome.locked_until)
        if not outcome.ok:
            log.info("échec de connexion : %s", practitioner.id)
            return AuthResult(ok=False, message=BAD_CREDENTIALS)
        if not practitioner.active:
            return AuthResult(ok=False, message=INACTIVE)
        memberships = {eid: m for eid, m in practitioner.memberships.items() if m.get("roles")}
        if not memberships:
            return AuthResult(ok=False, message=NO_MEMBERSHIP)
        display = f"{practitioner.given_name} {practitioner.family_name}".strip()
        return AuthResult(
            ok=True,
            identity=Identity(
                practitioner_id=practitioner.id, display_name=display, memberships=memberships, method=self.method
            ),
        )
