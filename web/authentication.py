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
    warning: str = ""  # French, shown with the message (the last attempt before a temporary lock)
    retry_after: int | None = None  # seconds: too many attempts from this address (429)


class Authenticator(Protocol):
    """Checks a login and a secret from a client address; pages only ever see an AuthResult."""

    def authenticate(self, login: str, password: str, client: str) -> AuthResult: ...


LAST_ATTEMPT = "Attention : il vous reste une tentative avant le blocage temporaire."


def _when(until: datetime, now: datetime) -> str:
    seconds = max(1, round((until - now).total_seconds()))
    if seconds < 120:
        return f"dans {seconds} secondes"
    local = until.astimezone(PARIS)
    return f"après {local:%H} h {local:%M} (heure de Paris, le {local:%d/%m/%Y})"


def locked_message(until: datetime, now: datetime, scope: str = "address") -> str:
    if scope == "account":
        return (
            "Trop d'échecs de connexion sur ce compte depuis des postes inhabituels : réessayez "
            f"{_when(until, now)}, ou depuis un poste où vous vous êtes déjà connecté."
        )
    return (
        "Connexion temporairement bloquée sur ce poste après plusieurs échecs : réessayez "
        f"{_when(until, now)}. Un nouvel échec allongera le délai."
    )


def rate_limited_message(seconds: int) -> str:
    return (
        "Trop de tentatives de connexion depuis cette adresse : patientez "
        f"{seconds} seconde{'s' if seconds > 1 else ''} puis réessayez."
    )


class LocalPasswordAuthenticator:
    """Login = the 11-digit RPPS number; password checked by the argon2 credentials store, attempts
    throttled per address, per (account, address) and per account (adapters/login_throttle.py)."""

    method = "password"

    def __init__(self, relais: Relais, credentials: Credentials):
        self.relais = relais
        self.credentials = credentials

    def authenticate(self, login: str, password: str, client: str) -> AuthResult:
        now = self.credentials.clock()
        wait = self.credentials.admit(client, now)
        if wait is not None:
            log.warning("connexions trop fréquentes depuis %s", client)
            return AuthResult(ok=False, message=rate_limited_message(wait), retry_after=wait)
        login = (login or "").strip()
        try:
            practitioner = self.relais.practitioner(rpps=login)
        except (InvalidFieldError, NotFoundError):
            practitioner = None
        # an unknown login is throttled like an account, by what was typed: the same answers and time
        account = practitioner.id if practitioner is not None else f"login:{login[:64]}"
        outcome = self.credentials.attempt(
            account, practitioner.id if practitioner is not None else None, password or "", client, now,
        )
        if outcome.locked and outcome.locked_until is not None:  # a lock always comes with its end
            log.warning("connexion refusée (%s bloqué) : %s depuis %s", outcome.scope, account, client)
            return AuthResult(
                ok=False, message=locked_message(outcome.locked_until, now, outcome.scope), locked_until=outcome.locked_until,
            )
        if not outcome.ok or practitioner is None:
            log.info("échec de connexion : %s depuis %s", account, client)
            return AuthResult(ok=False, message=BAD_CREDENTIALS, warning=LAST_ATTEMPT if outcome.remaining == 1 else "")
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
