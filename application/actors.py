"""Who acts: a practitioner in one role and establishment, checked against the directory."""

from __future__ import annotations

from dataclasses import dataclass

from application.base import SYSTEM_ACTOR, Core, parse_uuid
from application.errors import ForbiddenError, NotFoundError
from domain.directory import Practitioner
from domain.dossier import Dossier
from domain.values import Actor, Json, Role


@dataclass(frozen=True)
class Acting:
    """Who asks for a command through a session: the practitioner, exactly the establishment and role
    the session acts in (never guessed), and the token of the form submitted ("" when none): a form
    sent again with the same token runs nothing again (see `DossierCommands.run`).

    The web passes one to every command; a plain practitioner id (the command line, the demo data,
    tests) acts as a clinician of the establishment through which they take part in the dossier."""

    practitioner_id: str
    establishment_id: str
    role: str
    token: str = ""
    version_required: bool = False
    """The form changes a dossier the user was shown (a step of the draft, an action on the dossier page,
    a control adding or removing one item): it must name the version the user read (see
    `commands.require_version`)."""


Who = Acting | str
"""A command's caller: a session's `Acting`, or a practitioner id."""


class Actors:
    """Resolves user ids into actors; refuses (ForbiddenError) who does not hold the role."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def actor_for(
        self, *, practitioner_id: str, establishment_id: str | None = None, role: str = Role.CLINICIAN,
    ) -> Actor:
        """Who acts: checks the practitioner is active and holds `role` in the establishment."""
        try:
            p = self.core.load(Practitioner, practitioner_id, "professionnel")
        except NotFoundError:
            raise ForbiddenError("utilisateur inconnu") from None
        if not p.active:
            raise ForbiddenError("compte désactivé")
        candidates = [
            (eid, m) for eid, m in p.memberships.items()
            if role in m["roles"] and (establishment_id is None or eid == str(parse_uuid(establishment_id, "établissement")))
        ]
        if not candidates:
            raise ForbiddenError(f"rôle « {role} » non attribué à cet utilisateur pour cet établissement")
        if len(candidates) > 1 and establishment_id is None:
            raise ForbiddenError("précisez pour quel établissement vous agissez")
        eid, m = candidates[0]
        return Actor(
            practitioner_id=str(p.id), role=role, establishment_id=eid,
            service_ids=tuple(m["service_ids"]), name=p.display_name,
        )

    def on_dossier(
        self, dossier: Dossier, actor_id: str, establishment_id: str | None, role: str = Role.CLINICIAN,
    ) -> Actor:
        """The actor, for the establishment through which they take part in this dossier.

        A practitioner working in several establishments acts for the one named, else for the
        one that is the dossier's requester or one of its recipients.
        """
        if establishment_id is not None:
            return self.actor_for(practitioner_id=actor_id, establishment_id=establishment_id, role=role)
        try:
            return self.actor_for(practitioner_id=actor_id, role=role)
        except ForbiddenError:
            involved = [dossier.requester["establishment_id"], *(s["establishment_id"] for s in dossier.sends.values())]
            for eid in involved:
                try:
                    return self.actor_for(practitioner_id=actor_id, establishment_id=eid, role=role)
                except ForbiddenError:
                    continue
            raise

    def acting(self, who: Who, establishment_id: str | None = None, role: str = Role.CLINICIAN) -> Actor:
        """The actor outside any dossier: exactly the session's establishment and role for an
        `Acting`; else the practitioner in `role` (for `establishment_id`, or their only one)."""
        if isinstance(who, Acting):
            return self.actor_for(
                practitioner_id=who.practitioner_id, establishment_id=who.establishment_id, role=who.role,
            )
        return self.actor_for(practitioner_id=who, establishment_id=establishment_id, role=role)

    def of(self, who: Who, dossier: Dossier, role: str = Role.CLINICIAN) -> Actor:
        """The actor of a command on `dossier`: exactly the session's establishment and role for an
        `Acting`; for a practitioner id, a clinician of an establishment taking part in the dossier."""
        if isinstance(who, Acting):
            return self.actor_for(
                practitioner_id=who.practitioner_id, establishment_id=who.establishment_id, role=who.role,
            )
        return self.on_dossier(dossier, who, None, role)

    def admin(self, admin_id: str | None) -> Json:
        """The administrator acting on the directory; `None` means the platform itself (CLI, seed)."""
        if admin_id is None:
            return dict(SYSTEM_ACTOR)
        return self.actor_for(practitioner_id=admin_id, role=Role.ADMIN).as_dict()
