"""Running one command on a dossier: load it, resolve who acts, check they may, apply, commit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID, uuid4

from application.actors import Acting, Actors, Who
from application.base import Core, check_version, parse_uuid
from application.errors import ConflictError, ForbiddenError
from domain.directory import Establishment, Practitioner
from domain.dossier import SYSTEM_ROLE, Dossier
from domain.errors import InvalidFieldError, RelaisError
from domain.submission import Submission, derived_id, submission_id
from domain.values import Actor, Channel, Json, Role, business_time, code

ROLE_NAMES: dict[str, str] = {Role.AUDITOR: "auditeur", Role.ANALYST: "analyste", Role.ADMIN: "administrateur", Role.CLINICIAN: "clinicien"}

Action = Callable[[Dossier, Actor, datetime], object]
"""What a command does to the loaded dossier, as the actor, at business time."""


class VersionRequiredError(RelaisError):
    """A form that changes a dossier came without the version the user read: refused (400), never applied
    over whatever the dossier has become."""


def require_version(who: Who, expected_version: int | None) -> None:
    """The one rule: a form that must name the version it showed (`Acting.version_required`) and did not is
    refused. Commands apply it after their authorisation checks; a page that records something else before
    its command (an import's studies) asks it first, once it has checked who asks."""
    if isinstance(who, Acting) and who.version_required and expected_version is None:
        raise VersionRequiredError(
            "le formulaire ne dit pas quelle version du télédossier vous avez lue : rechargez la page puis recommencez"
        )


def submission_of(who: Who) -> UUID | None:
    """The stream of the form submission a command comes from, if its form had a token."""
    if isinstance(who, Acting) and who.token:
        return submission_id(who.practitioner_id, who.token)
    return None


class DossierCommands:
    """The frame of every dossier command (requester, recipient, imaging): errors record nothing."""

    def __init__(self, core: Core, actors: Actors) -> None:
        self.core = core
        self.actors = actors

    def when(self, occurred_at: datetime | None) -> datetime:
        """Business time: the one given (aware, not in the future), else now."""
        return business_time(occurred_at, self.core.clock())

    def run(
        self, dossier_id: str, who: Who, expected_version: int | None, action: Action,
        occurred_at: datetime | None = None,
    ) -> int | None:
        """Applies `action` for the actor, if they may read the dossier, on the version they read.

        A session's caller acts in exactly its establishment and role: a role that may not act on
        dossiers (auditor, analyst, admin) is refused here, whatever the command."""
        when = self.when(occurred_at)
        dossier = self.core.load(Dossier, dossier_id, "télédossier")
        actor = self.acting_on(dossier, who)
        submission = submission_of(who)
        if submission is not None and self.core.exists(submission):
            return None  # this form was sent before and its command recorded: it does not run twice
        require_version(who, expected_version)
        self.check_seen(dossier, expected_version)
        action(dossier, actor, when)
        return self.save(dossier, who, when)

    def check_seen(self, dossier: Dossier, expected_version: int | None) -> None:
        """The form's version check. What happened since the version the form showed conflicts, except the
        platform attaching imaging the requester asked for (an awaited exam arriving from the DICOM node, a
        PACS retrieve completing) or holding images back for their patient identity (ImagingHeld): it adds a
        study or a notice and changes nothing the form could have read otherwise,
        so « Continuer » after « Attendre cet examen » or « Récupérer » is not « modifié ailleurs »."""
        if expected_version is None or expected_version == dossier.version:
            return
        if 0 < expected_version < dossier.version and all(
            isinstance(e, Dossier.ImagingAttached | Dossier.ImagingHeld) and e.actor.get("role") == SYSTEM_ROLE
            for e in self.core.events_of(dossier.id) if e.originator_version > expected_version
        ):
            return
        check_version(dossier, expected_version)

    def save(self, dossier: Dossier, who: Who, when: datetime) -> int | None:
        """Commits the dossier and, for a form with a token, its submission in the same transaction. The
        same form sent twice at once: one commits, the other meets the version clash, finds the
        submission recorded, and returns as if done (None); any other clash is a ConflictError."""
        submission = submission_of(who)
        if submission is None or not isinstance(who, Acting):
            return self.core.commit(dossier)
        record = Submission(practitioner_id=who.practitioner_id, token=who.token, dossier_id=str(dossier.id), occurred_at=when)
        try:
            return self.core.commit(dossier, record)
        except ConflictError:
            if self.core.exists(submission):
                return None
            raise

    def new_id(self, who: Who, what: str) -> str:
        """The id of something a command makes (a document, a send): derived from the form's token, so a
        form sent again names the same one; random without a token."""
        submission = submission_of(who)
        return str(derived_id(submission, what) if submission is not None else uuid4())

    def acting_on(self, dossier: Dossier, who: Who) -> Actor:
        """The actor of a command on `dossier`, if their role acts on dossiers and they may read it."""
        actor = self.actors.of(who, dossier)
        if isinstance(who, Acting) and actor.role != Role.CLINICIAN:
            role = ROLE_NAMES.get(actor.role, actor.role)
            raise ForbiddenError(f"votre rôle actuel ({role}) ne permet pas d'agir sur un télédossier")
        if not dossier.may_read(actor):
            raise ForbiddenError("ce télédossier ne vous concerne pas")
        return actor

    def run_as(
        self, actor: Actor, dossier_id: str, expected_version: int | None, action: Action,
        occurred_at: datetime | None = None,
    ) -> int | None:
        """Applies `action` as the platform itself (`actor` is a system actor: no directory check)."""
        when = self.when(occurred_at)
        dossier = self.core.load(Dossier, dossier_id, "télédossier")
        check_version(dossier, expected_version)
        action(dossier, actor, when)
        return self.core.commit(dossier)

    def recipient(
        self, establishment_id: str, service_id: str | None, practitioner_id: str | None, channel: str | None,
        *, field_prefix: str,
    ) -> Json:
        """Who a send goes to, checked against the directory (service of that establishment,
        practitioner practising there as a clinician), with the establishment's region/department."""
        est = self.core.load(Establishment, establishment_id, "établissement destinataire")
        if service_id and service_id not in est.services:
            raise InvalidFieldError(f"{field_prefix}service_id", f"service inconnu dans {est.name}")
        if practitioner_id:
            p = self.core.load(Practitioner, practitioner_id, "professionnel destinataire")
            if not p.practises_as_clinician(str(est.id)):
                raise InvalidFieldError(f"{field_prefix}practitioner_id", f"ce professionnel n'exerce pas à {est.name}")
        return {
            "establishment_id": str(est.id),
            "service_id": service_id or None,
            "practitioner_id": str(parse_uuid(practitioner_id, "professionnel")) if practitioner_id else None,
            "region": est.region,
            "department": est.department,
            "channel": code(Channel, channel, "channel") if channel else None,
        }
