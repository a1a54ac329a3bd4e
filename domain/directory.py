"""Directory aggregates: establishments (with services/teams), practitioners, DICOM nodes."""

from __future__ import annotations

import ipaddress
import re
from datetime import date, datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.deadlines import Delays
from domain.errors import DirectoryError, InvalidFieldError
from domain.values import Json, Role

_NS = uuid5(NAMESPACE_URL, "https://relais.invalid/directory")


def establishment_id(finess: str) -> UUID:
    """Deterministic id: one establishment per FINESS, enforced by the event store."""
    return uuid5(_NS, f"finess:{finess}")


def practitioner_id(rpps: str) -> UUID:
    return uuid5(_NS, f"rpps:{rpps}")


def node_id(aet: str) -> UUID:
    return uuid5(_NS, f"aet:{aet}")


def service_id(establishment: UUID, code: str) -> UUID:
    return uuid5(establishment, f"service:{code}")


HOST_RE = re.compile(r"[A-Za-z0-9.\-:]{1,253}")
MAX_CALLING_ADDRESSES = 32


def check_calling_addresses(entries: list[str]) -> list[str]:
    """The addresses a node may call the platform from, checked and written canonically: IP addresses,
    networks in CIDR notation (`10.0.0.0/24`) or host names; duplicates dropped, order kept."""
    out: list[str] = []
    for raw in entries:
        entry = (raw or "").strip()
        if not entry:
            continue
        if "/" in entry:
            try:
                entry = str(ipaddress.ip_network(entry, strict=True))
            except ValueError:
                loose = None
                try:
                    loose = ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    pass
                hint = f" (réseau {loose} ?)" if loose is not None else ""
                raise InvalidFieldError("addresses", f"réseau invalide « {entry[:60]} »{hint}") from None
        else:
            try:
                entry = str(ipaddress.ip_address(entry))
            except ValueError:
                if not HOST_RE.fullmatch(entry) or ":" in entry:
                    raise InvalidFieldError(
                        "addresses", f"adresse invalide « {entry[:60]} » : adresse IP, réseau (10.0.0.0/24) ou nom d'hôte"
                    ) from None
                entry = entry.lower()
        if entry not in out:
            out.append(entry)
    if len(out) > MAX_CALLING_ADDRESSES:
        raise InvalidFieldError("addresses", f"au plus {MAX_CALLING_ADDRESSES} adresses par nœud")
    return out


class Establishment(Aggregate):
    """A healthcare establishment identified by its FINESS, with its services and teams."""

    TOPIC = "relais:Establishment"

    @staticmethod
    def create_id(finess: str, **_: object) -> UUID:
        return establishment_id(finess)

    class Created(Aggregate.Created):
        """An establishment entered the directory."""

        TOPIC = "relais:Establishment.Created"

        finess: str
        name: str
        department: str
        region: str
        occurred_at: datetime
        actor: Json

    class Renamed(Aggregate.Event):
        TOPIC = "relais:Establishment.Renamed"

        name: str
        actor: Json
        occurred_at: datetime

    class ServiceAdded(Aggregate.Event):
        """A service, team or on-call pool (`kind`) added to the establishment."""

        TOPIC = "relais:Establishment.ServiceAdded"

        service_id: str
        code: str
        name: str
        specialty: str
        kind: str
        actor: Json
        occurred_at: datetime

    class ServiceDeadlineSet(Aggregate.Event):
        """A recipient service's own delays for one workflow and urgency (`urgency` "*": all of them),
        overriding the platform's table (domain/deadlines.py); `accept`/`answer` in minutes, both 0:
        the override removed."""

        TOPIC = "relais:Establishment.ServiceDeadlineSet"

        service_id: str
        workflow: str
        urgency: str
        accept: int
        answer: int
        actor: Json
        occurred_at: datetime

    class ServiceEscalationSet(Aggregate.Event):
        """Where a service's sends not accepted in time are escalated: an on-call pool (`to_service_id`)
        or a backup practitioner (`to_practitioner_id`) of the same establishment; both None: the
        default (the establishment's on-call pool of the same specialty)."""

        TOPIC = "relais:Establishment.ServiceEscalationSet"

        service_id: str
        to_service_id: str | None
        to_practitioner_id: str | None
        actor: Json
        occurred_at: datetime

    class DefaultRecipientSet(Aggregate.Event):
        """Where this establishment's requests of one workflow are addressed by default (preset on the
        compose page): `target` {establishment_id, service_id, practitioner_id} — possibly another
        establishment (the region's stroke on-call pool at the CHU) — or None: no default any more."""

        TOPIC = "relais:Establishment.DefaultRecipientSet"

        workflow: str
        target: Json | None
        actor: Json
        occurred_at: datetime

    @event(Created)
    def __init__(self, *, finess: str, name: str, department: str, region: str, occurred_at: datetime, actor: Json):
        self.finess = finess
        self.name = name
        self.department = department
        self.region = region
        self.services: dict[str, Json] = {}

    def rename(self, *, name: str, actor: Json, occurred_at: datetime) -> None:
        if name != self.name:
            self._renamed(name=name, actor=actor, occurred_at=occurred_at)

    @event(Renamed)
    def _renamed(self, name: str, actor: Json, occurred_at: datetime) -> None:
        self.name = name

    def add_service(self, *, code: str, name: str, specialty: str, kind: str, actor: Json, occurred_at: datetime) -> str:
        sid = str(service_id(self.id, code))
        if sid in self.services:
            raise InvalidFieldError("code", f"service « {code} » déjà présent dans l'établissement")
        if kind not in ("service", "team", "on_call_pool"):
            raise InvalidFieldError("kind", "type attendu : service, team ou on_call_pool")
        self._service_added(
            service_id=sid, code=code, name=name, specialty=specialty, kind=kind, actor=actor, occurred_at=occurred_at
        )
        return sid

    @event(ServiceAdded)
    def _service_added(
        self, service_id: str, code: str, name: str, specialty: str, kind: str, actor: Json, occurred_at: datetime
    ) -> None:
        self.services[service_id] = {
            "service_id": service_id, "code": code, "name": name, "specialty": specialty, "kind": kind
        }

    def _service(self, service_id: str) -> Json:
        try:
            return self.services[service_id]
        except KeyError:
            raise InvalidFieldError("service", f"service inconnu dans {self.name}") from None

    def set_service_deadline(
        self, *, service_id: str, workflow: str, urgency: str, accept: int, answer: int, actor: Json, occurred_at: datetime,
    ) -> None:
        """Overrides the delays of one workflow (and urgency, or "*") for sends to this service; 0, 0 removes it."""
        service = self._service(service_id)
        if (accept, answer) != (0, 0):
            Delays(accept, answer)  # checks them
        key = f"{workflow}/{urgency}"
        current = service.get("deadlines", {}).get(key)
        if (current or {"accept": 0, "answer": 0}) == {"accept": accept, "answer": answer}:
            return
        self._service_deadline_set(
            service_id=service_id, workflow=workflow, urgency=urgency, accept=accept, answer=answer, actor=actor,
            occurred_at=occurred_at,
        )

    @event(ServiceDeadlineSet)
    def _service_deadline_set(
        self, service_id: str, workflow: str, urgency: str, accept: int, answer: int, actor: Json, occurred_at: datetime,
    ) -> None:
        deadlines = dict(self.services[service_id].get("deadlines", {}))
        if (accept, answer) == (0, 0):
            deadlines.pop(f"{workflow}/{urgency}", None)
        else:
            deadlines[f"{workflow}/{urgency}"] = {"accept": accept, "answer": answer}
        self.services[service_id]["deadlines"] = deadlines

    def set_service_escalation(
        self, *, service_id: str, to_service_id: str | None, to_practitioner_id: str | None, actor: Json,
        occurred_at: datetime,
    ) -> None:
        """Names where this service's late sends are escalated (None, None: back to the default)."""
        service = self._service(service_id)
        if to_service_id and to_practitioner_id:
            raise InvalidFieldError("to", "une astreinte ou un professionnel, pas les deux")
        if to_service_id:
            self._service(to_service_id)
            if to_service_id == service_id:
                raise InvalidFieldError("to", "un service ne s'escalade pas vers lui-même")
        current = service.get("escalation") or {"to_service_id": None, "to_practitioner_id": None}
        if current == {"to_service_id": to_service_id, "to_practitioner_id": to_practitioner_id}:
            return
        self._service_escalation_set(
            service_id=service_id, to_service_id=to_service_id, to_practitioner_id=to_practitioner_id, actor=actor,
            occurred_at=occurred_at,
        )

    @event(ServiceEscalationSet)
    def _service_escalation_set(
        self, service_id: str, to_service_id: str | None, to_practitioner_id: str | None, actor: Json,
        occurred_at: datetime,
    ) -> None:
        self.services[service_id]["escalation"] = {"to_service_id": to_service_id, "to_practitioner_id": to_practitioner_id}

    @property
    def default_recipients(self) -> dict[str, Json]:
        """workflow -> {establishment_id, service_id, practitioner_id} (none before DefaultRecipientSet)."""
        defaults: dict[str, Json] = self.__dict__.get("_default_recipients", {})
        return {k: dict(v) for k, v in defaults.items()}

    def set_default_recipient(self, *, workflow: str, target: Json | None, actor: Json, occurred_at: datetime) -> None:
        """Sets (or with None removes) the default recipient of one workflow; the application has
        checked that the target exists (establishment, its service, a clinician practising there)."""
        if target is not None:
            if not target.get("establishment_id"):
                raise InvalidFieldError("to_establishment", "établissement destinataire attendu")
            target = {k: target.get(k) or None for k in ("establishment_id", "service_id", "practitioner_id")}
        if self.default_recipients.get(workflow) != target:
            self._default_recipient_set(workflow=workflow, target=target, actor=actor, occurred_at=occurred_at)

    @event(DefaultRecipientSet)
    def _default_recipient_set(self, workflow: str, target: Json | None, actor: Json, occurred_at: datetime) -> None:
        defaults = dict(self.__dict__.get("_default_recipients", {}))
        if target is None:
            defaults.pop(workflow, None)
        else:
            defaults[workflow] = dict(target)
        self._default_recipients = defaults


class Practitioner(Aggregate):
    """A professional identified by RPPS, with memberships (establishment → services) and roles."""

    TOPIC = "relais:Practitioner"

    @staticmethod
    def create_id(rpps: str, **_: object) -> UUID:
        return practitioner_id(rpps)

    class Created(Aggregate.Created):
        """A practitioner entered the directory."""

        TOPIC = "relais:Practitioner.Created"

        rpps: str
        family_name: str
        given_name: str
        profession: str
        specialty: str
        email: str
        occurred_at: datetime
        actor: Json

    class MembershipSet(Aggregate.Event):
        """The practitioner's roles and services in one establishment (joined, or changed)."""

        TOPIC = "relais:Practitioner.MembershipSet"

        establishment_id: str
        roles: list[str]
        service_ids: list[str]
        actor: Json
        occurred_at: datetime

    class MembershipEnded(Aggregate.Event):
        TOPIC = "relais:Practitioner.MembershipEnded"

        establishment_id: str
        actor: Json
        occurred_at: datetime

    class Deactivated(Aggregate.Event):
        TOPIC = "relais:Practitioner.Deactivated"

        actor: Json
        occurred_at: datetime

    class AwaySet(Aggregate.Event):
        """The practitioner is away (until `until`, a date, or until they come back: None) or back
        (`away` false): meanwhile their service is told what happens to the dossiers they asked for."""

        TOPIC = "relais:Practitioner.AwaySet"

        away: bool
        until: str | None
        actor: Json
        occurred_at: datetime

    @event(Created)
    def __init__(
        self,
        *,
        rpps: str,
        family_name: str,
        given_name: str,
        profession: str,
        specialty: str,
        email: str,
        occurred_at: datetime,
        actor: Json,
    ):
        self.rpps = rpps
        self.family_name = family_name
        self.given_name = given_name
        self.profession = profession
        self.specialty = specialty
        self.email = email
        self.memberships: dict[str, Json] = {}
        self.active = True

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()

    def practises_as_clinician(self, establishment_id: str) -> bool:
        """Active and a clinician of that establishment: who a send, an escalation or a default may name."""
        membership = self.memberships.get(str(establishment_id))
        return bool(self.active and membership and Role.CLINICIAN in membership["roles"])

    def join(
        self, *, establishment_id: str, roles: list[str], service_ids: list[str], actor: Json, occurred_at: datetime
    ) -> None:
        if not roles:
            raise InvalidFieldError("role", "au moins un rôle")
        current = self.memberships.get(establishment_id)
        if current and sorted(current["roles"]) == sorted(roles) and sorted(current["service_ids"]) == sorted(
            service_ids
        ):
            return
        self._joined(
            establishment_id=establishment_id, roles=sorted(roles), service_ids=sorted(service_ids),
            actor=actor, occurred_at=occurred_at,
        )

    @event(MembershipSet)
    def _joined(
        self, establishment_id: str, roles: list[str], service_ids: list[str], actor: Json, occurred_at: datetime
    ) -> None:
        self.memberships[establishment_id] = {"roles": roles, "service_ids": service_ids}

    def leave(self, *, establishment_id: str, actor: Json, occurred_at: datetime) -> None:
        if establishment_id not in self.memberships:
            raise DirectoryError("ce professionnel n'est pas membre de cet établissement")
        self._left(establishment_id=establishment_id, actor=actor, occurred_at=occurred_at)

    @event(MembershipEnded)
    def _left(self, establishment_id: str, actor: Json, occurred_at: datetime) -> None:
        del self.memberships[establishment_id]

    def deactivate(self, *, actor: Json, occurred_at: datetime) -> None:
        if self.active:
            self._deactivated(actor=actor, occurred_at=occurred_at)

    @event(Deactivated)
    def _deactivated(self, actor: Json, occurred_at: datetime) -> None:
        self.active = False

    @property
    def away(self) -> Json:
        """{"away": bool, "until": ISO date or None} (not away before any AwaySet)."""
        away: Json = self.__dict__.get("_away", {"away": False, "until": None})
        return dict(away)

    def set_away(self, *, away: bool, until: str | None, actor: Json, occurred_at: datetime) -> None:
        if not away:
            until = None
        elif until is not None:
            try:
                until = date.fromisoformat(until).isoformat()
            except ValueError:
                raise InvalidFieldError("until", "date de retour invalide (AAAA-MM-JJ)") from None
        if {"away": away, "until": until} != self.away:
            self._away_set(away=away, until=until, actor=actor, occurred_at=occurred_at)

    @event(AwaySet)
    def _away_set(self, away: bool, until: str | None, actor: Json, occurred_at: datetime) -> None:
        self._away = {"away": away, "until": until}


class DicomNode(Aggregate):
    """A DICOM application entity (a hospital gateway or PACS) allowed to talk to the platform."""

    TOPIC = "relais:DicomNode"

    @staticmethod
    def create_id(aet: str, **_: object) -> UUID:
        return node_id(aet)

    class Created(Aggregate.Created):
        """A DICOM node entered the directory; `kind` says what it is (gateway, PACS)."""

        TOPIC = "relais:DicomNode.Created"

        aet: str
        host: str
        port: int
        establishment_id: str
        kind: str
        occurred_at: datetime
        actor: Json

    class Moved(Aggregate.Event):
        """The node's network address changed."""

        TOPIC = "relais:DicomNode.Moved"

        host: str
        port: int
        actor: Json
        occurred_at: datetime

    class CallingAddressesSet(Aggregate.Event):
        """The addresses the node may call the platform from besides its host (IP addresses, CIDR
        networks, host names); `unverified`: its calls are accepted from any address (a gateway behind
        a NAT whose address is not known), « adresse non vérifiée »."""

        TOPIC = "relais:DicomNode.CallingAddressesSet"

        addresses: list[str]
        unverified: bool
        actor: Json
        occurred_at: datetime

    class RetrieveMethodSet(Aggregate.Event):
        """How the platform retrieves from this PACS: "move" (C-MOVE) or "get" (C-GET)."""

        TOPIC = "relais:DicomNode.RetrieveMethodSet"

        method: str
        actor: Json
        occurred_at: datetime

    @event(Created)
    def __init__(
        self, *, aet: str, host: str, port: int, establishment_id: str, kind: str, occurred_at: datetime, actor: Json
    ):
        self.aet = aet
        self.host = host
        self.port = port
        self.establishment_id = establishment_id
        self.kind = kind
        self.active = True

    def move(self, *, host: str, port: int, actor: Json, occurred_at: datetime) -> None:
        if (host, port) != (self.host, self.port):
            self._moved(host=host, port=port, actor=actor, occurred_at=occurred_at)

    @event(Moved)
    def _moved(self, host: str, port: int, actor: Json, occurred_at: datetime) -> None:
        self.host = host
        self.port = port

    @property
    def calling_addresses(self) -> list[str]:
        """Where the node may call from besides its host (none before CallingAddressesSet)."""
        addresses: list[str] = self.__dict__.get("_calling_addresses", [])
        return list(addresses)

    @property
    def unverified(self) -> bool:
        """True: calls are accepted from any address (off unless set)."""
        return bool(self.__dict__.get("_unverified", False))

    def set_calling_addresses(self, *, addresses: list[str], unverified: bool, actor: Json, occurred_at: datetime) -> None:
        addresses = check_calling_addresses(addresses)
        if (addresses, bool(unverified)) != (self.calling_addresses, self.unverified):
            self._calling_addresses_set(addresses=addresses, unverified=bool(unverified), actor=actor, occurred_at=occurred_at)

    @event(CallingAddressesSet)
    def _calling_addresses_set(self, addresses: list[str], unverified: bool, actor: Json, occurred_at: datetime) -> None:
        self._calling_addresses = list(addresses)
        self._unverified = unverified

    @property
    def retrieve_method(self) -> str:
        """How the platform retrieves from this PACS: C-MOVE to our node (default) or C-GET."""
        method: str = self.__dict__.get("_retrieve_method", "move")  # absent before RetrieveMethodSet
        return method

    def set_retrieve_method(self, *, method: str, actor: Json, occurred_at: datetime) -> None:
        if method not in ("move", "get"):
            raise InvalidFieldError("retrieve_method", "méthode attendue : move (C-MOVE) ou get (C-GET)")
        if method != self.retrieve_method:
            self._retrieve_method_set(method=method, actor=actor, occurred_at=occurred_at)

    @event(RetrieveMethodSet)
    def _retrieve_method_set(self, method: str, actor: Json, occurred_at: datetime) -> None:
        self._retrieve_method = method
