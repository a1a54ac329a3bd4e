"""Directory use cases: establishments, services, practitioners and DICOM nodes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

from application.actors import Actors
from application.base import Core, parse_uuid
from application.errors import AlreadyExistsError, ForbiddenError, NotFoundError
from domain import directory as ids
from domain.deadlines import ANY_URGENCY, DEFAULT_DELAYS
from domain.directory import HOST_RE, DicomNode, Establishment, Practitioner
from domain.errors import InvalidFieldError
from domain.identifiers import check_department, check_finess, check_region, check_rpps, region_of
from domain.values import Json, NodeKind, Role, Urgency, Workflow, code, text

PROFESSIONS = ("physician", "radiologist", "nurse", "manipulator", "pharmacist", "midwife", "other")


@dataclass(frozen=True)
class EstablishmentInfo:
    id: str
    finess: str
    name: str
    department: str
    region: str
    services: tuple[Json, ...]


@dataclass(frozen=True)
class PractitionerInfo:
    id: str
    rpps: str
    family_name: str
    given_name: str
    profession: str
    specialty: str
    email: str
    active: bool
    memberships: dict[str, Json]


@dataclass(frozen=True)
class NodeInfo:
    id: str
    aet: str
    host: str
    port: int
    establishment_id: str
    kind: str
    addresses: tuple[str, ...] = ()  # where it may call from besides its host
    unverified: bool = False  # « adresse non vérifiée »: calls accepted from any address


def _host(host: str) -> str:
    host = (host or "").strip()
    if not HOST_RE.fullmatch(host):
        raise InvalidFieldError("host", "nom d'hôte ou adresse IP invalide")
    return host


def _port(port: int | str) -> int:
    try:
        number = int(port)
    except (TypeError, ValueError):
        raise InvalidFieldError("port", "port numérique attendu") from None
    if not 1 <= number <= 65535:
        raise InvalidFieldError("port", "port entre 1 et 65535")
    return number


class DirectoryUseCases:
    """Use cases of the directory; `admin_id=None` means the platform itself (CLI, seed)."""

    def __init__(self, core: Core, actors: Actors) -> None:
        self.core = core
        self.actors = actors

    def add_establishment(
        self, *, finess: str, name: str, department: str, region: str | None = None, admin_id: str | None = None
    ) -> str:
        finess = check_finess(finess)
        department = check_department(department)
        region = check_region(region) if region else region_of(department)
        name = text(name, "name", max_len=200)
        est = Establishment(
            finess=finess, name=name, department=department, region=region,
            occurred_at=self.core.clock(), actor=self.actors.admin(admin_id),
        )
        try:
            self.core.commit(est)
        except Exception as e:  # the deterministic id makes a second FINESS a version clash
            if self.core.exists(est.id):
                raise AlreadyExistsError(f"l'établissement FINESS {finess} existe déjà") from None
            raise e
        return str(est.id)

    def add_service(
        self, *, establishment_id: str, code: str, name: str, specialty: str = "", kind: str = "service",
        admin_id: str | None = None,
    ) -> str:
        est = self.core.load(Establishment, establishment_id, "établissement")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", code or ""):
            raise InvalidFieldError("code", "code de service : minuscules, chiffres, - et _ (40 max.)")
        sid = est.add_service(
            code=code, name=text(name, "name", max_len=200), specialty=text(specialty, "specialty", max_len=100, required=False),
            kind=kind, actor=self.actors.admin(admin_id), occurred_at=self.core.clock(),
        )
        self.core.commit(est)
        return sid

    def add_practitioner(
        self, *, rpps: str, family_name: str, given_name: str, establishment_id: str, roles: list[str],
        profession: str = "physician", specialty: str = "", email: str = "", service_ids: list[str] | None = None,
        admin_id: str | None = None,
    ) -> str:
        rpps = check_rpps(rpps)
        roles = sorted({code(Role, r, "role") for r in roles})
        if not roles:
            raise InvalidFieldError("role", "au moins un rôle")
        if profession not in PROFESSIONS:
            raise InvalidFieldError("profession", f"profession inconnue (attendu : {', '.join(PROFESSIONS)})")
        email = text(email, "email", max_len=200, required=False)
        if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise InvalidFieldError("email", "adresse électronique invalide")
        est = self.core.load(Establishment, establishment_id, "établissement")
        service_ids = list(service_ids or [])
        for sid in service_ids:
            if sid not in est.services:
                raise InvalidFieldError("service_id", f"service inconnu dans {est.name}")
        actor = self.actors.admin(admin_id)
        if self.core.exists(ids.practitioner_id(rpps)):
            raise AlreadyExistsError(f"le professionnel RPPS {rpps} existe déjà")
        p = Practitioner(
            rpps=rpps, family_name=text(family_name, "family_name", max_len=100).upper(),
            given_name=text(given_name, "given_name", max_len=100, required=False),
            profession=profession, specialty=text(specialty, "specialty", max_len=100, required=False),
            email=email, occurred_at=self.core.clock(), actor=actor,
        )
        p.join(establishment_id=str(est.id), roles=roles, service_ids=service_ids, actor=actor, occurred_at=self.core.clock())
        try:
            self.core.commit(p)
        except Exception:
            if self.core.exists(p.id):
                raise AlreadyExistsError(f"le professionnel RPPS {rpps} existe déjà") from None
            raise
        return str(p.id)

    def set_membership(
        self, *, practitioner_id: str, establishment_id: str, roles: list[str], service_ids: list[str] | None = None,
        admin_id: str | None = None,
    ) -> None:
        p = self.core.load(Practitioner, practitioner_id, "professionnel")
        est = self.core.load(Establishment, establishment_id, "établissement")
        for sid in service_ids or []:
            if sid not in est.services:
                raise InvalidFieldError("service_id", f"service inconnu dans {est.name}")
        p.join(
            establishment_id=str(est.id), roles=sorted({code(Role, r, "role") for r in roles}),
            service_ids=list(service_ids or []), actor=self.actors.admin(admin_id), occurred_at=self.core.clock(),
        )
        self.core.commit(p)

    def end_membership(self, *, practitioner_id: str, establishment_id: str, admin_id: str | None = None) -> None:
        """The practitioner no longer works for this establishment (every role there withdrawn)."""
        p = self.core.load(Practitioner, practitioner_id, "professionnel")
        est = self.core.load(Establishment, establishment_id, "établissement")
        p.leave(establishment_id=str(est.id), actor=self.actors.admin(admin_id), occurred_at=self.core.clock())
        self.core.commit(p)

    def deactivate_practitioner(self, *, practitioner_id: str, admin_id: str | None = None) -> None:
        """The account is closed: the practitioner can no longer sign in nor act (their sessions end)."""
        p = self.core.load(Practitioner, practitioner_id, "professionnel")
        p.deactivate(actor=self.actors.admin(admin_id), occurred_at=self.core.clock())
        self.core.commit(p)

    def set_service_deadline(
        self, *, establishment_id: str, service_code: str, workflow: str, urgency: str = ANY_URGENCY,
        accept_minutes: int, answer_minutes: int, admin_id: str | None = None,
    ) -> None:
        """A recipient service's own delays for a workflow (and urgency, or all): see domain/deadlines.py.
        0 and 0 remove the override (the platform's table applies again)."""
        est = self.core.load(Establishment, establishment_id, "établissement")
        workflow = code(Workflow, workflow, "workflow")
        if workflow not in DEFAULT_DELAYS:
            raise InvalidFieldError("workflow", "pas de délai pour ce parcours")
        if urgency != ANY_URGENCY:
            urgency = code(Urgency, urgency, "urgency")
        est.set_service_deadline(
            service_id=str(ids.service_id(est.id, service_code)), workflow=workflow, urgency=urgency,
            accept=accept_minutes, answer=answer_minutes, actor=self.actors.admin(admin_id), occurred_at=self.core.clock(),
        )
        self.core.commit(est)

    def set_service_escalation(
        self, *, establishment_id: str, service_code: str, to_service_code: str | None = None,
        to_practitioner_id: str | None = None, admin_id: str | None = None,
    ) -> None:
        """Where a service's sends not accepted in time go as well: an on-call pool or team of the same
        establishment, or a backup practitioner practising there; neither: the default rule."""
        est = self.core.load(Establishment, establishment_id, "établissement")
        to_practitioner = None
        if to_practitioner_id:
            p = self.core.load(Practitioner, to_practitioner_id, "professionnel")
            if not p.practises_as_clinician(str(est.id)):
                raise InvalidFieldError("to_practitioner_id", f"ce professionnel n'exerce pas à {est.name}")
            to_practitioner = str(p.id)
        est.set_service_escalation(
            service_id=str(ids.service_id(est.id, service_code)),
            to_service_id=str(ids.service_id(est.id, to_service_code)) if to_service_code else None,
            to_practitioner_id=to_practitioner, actor=self.actors.admin(admin_id), occurred_at=self.core.clock(),
        )
        self.core.commit(est)

    def set_default_recipient(
        self, *, establishment_id: str, workflow: str, to_establishment_id: str | None = None,
        to_service_code: str | None = None, to_practitioner_id: str | None = None, admin_id: str | None = None,
    ) -> None:
        """Where the establishment's requests of `workflow` are addressed by default (the compose page
        presets it): an establishment — possibly another one, the region's on-call pool at the CHU —
        with one of its services or pools and/or a clinician practising there; no target: removed."""
        est = self.core.load(Establishment, establishment_id, "établissement")
        workflow = code(Workflow, workflow, "workflow")
        target: Json | None = None
        if to_establishment_id:
            to = self.core.load(Establishment, to_establishment_id, "établissement destinataire")
            service_id = None
            if to_service_code:
                service_id = str(ids.service_id(to.id, to_service_code))
                if service_id not in to.services:
                    raise InvalidFieldError("to_service", f"service « {to_service_code} » inconnu dans {to.name}")
            practitioner = None
            if to_practitioner_id:
                p = self.core.load(Practitioner, to_practitioner_id, "professionnel")
                if not p.practises_as_clinician(str(to.id)):
                    raise InvalidFieldError("to_practitioner", f"ce professionnel n'exerce pas à {to.name}")
                practitioner = str(p.id)
            target = {"establishment_id": str(to.id), "service_id": service_id, "practitioner_id": practitioner}
        elif to_service_code or to_practitioner_id:
            raise InvalidFieldError("to_establishment", "établissement destinataire attendu")
        est.set_default_recipient(
            workflow=workflow, target=target, actor=self.actors.admin(admin_id), occurred_at=self.core.clock()
        )
        self.core.commit(est)

    def default_recipients(self, *, establishment_id: str) -> dict[str, Json]:
        """workflow -> {establishment_id, service_id, practitioner_id}: every default of the establishment."""
        return self.core.load(Establishment, establishment_id, "établissement").default_recipients

    def default_recipient(self, establishment_id: str, workflow: str) -> Json | None:
        """The recipient preset for a request of `workflow` from `establishment_id`: its setting
        ({establishment_id, service_id, practitioner_id}), else None. A practitioner named there who no
        longer practises at the target is left out (the establishment and service stay)."""
        try:
            est = self.core.load(Establishment, establishment_id, "établissement")
        except NotFoundError:
            return None
        target = est.default_recipients.get(str(workflow))
        if target is None:
            return None
        if target.get("practitioner_id"):
            try:
                p = self.core.load(Practitioner, target["practitioner_id"], "professionnel")
            except NotFoundError:
                p = None
            if p is None or not p.practises_as_clinician(target["establishment_id"]):
                target = dict(target, practitioner_id=None)
        return target

    def set_away(
        self, *, practitioner_id: str, away: bool, until: str | None = None, admin_id: str | None = None,
    ) -> None:
        """The practitioner is away (until a date, or until they say they are back) or back: meanwhile
        their service is told what happens to the dossiers they asked for. `admin_id` the practitioner
        themself (their preferences page), an administrator, or None (the command line)."""
        p = self.core.load(Practitioner, practitioner_id, "professionnel")
        if admin_id is not None and admin_id == str(p.id):
            if not p.active:
                raise ForbiddenError("compte désactivé")
            actor: Json = {"practitioner_id": str(p.id), "role": Role.CLINICIAN.value, "establishment_id": "",
                           "service_ids": [], "name": p.display_name}
        else:
            actor = self.actors.admin(admin_id)
        p.set_away(away=away, until=until or None, actor=actor, occurred_at=self.core.clock())
        self.core.commit(p)

    def add_node(
        self, *, aet: str, host: str, port: int, establishment_id: str, kind: str,
        addresses: list[str] | None = None, unverified: bool = False, admin_id: str | None = None,
    ) -> str:
        """A DICOM node; it may call the platform from its `host` and from `addresses` (IP addresses,
        CIDR networks, host names), or from anywhere if `unverified` (a NAT'd gateway)."""
        aet = (aet or "").strip()
        if not re.fullmatch(r"[A-Za-z0-9_\-. ]{1,16}", aet) or aet != aet.strip():
            raise InvalidFieldError("aet", "titre AE DICOM : 1 à 16 caractères ASCII, sans « \\ »")
        host, port = _host(host), _port(port)
        kind = code(NodeKind, kind, "kind")
        est = self.core.load(Establishment, establishment_id, "établissement")
        if self.core.exists(ids.node_id(aet)):
            raise AlreadyExistsError(f"le nœud DICOM {aet} existe déjà")
        actor = self.actors.admin(admin_id)
        node = DicomNode(
            aet=aet, host=host, port=port, establishment_id=str(est.id), kind=kind,
            occurred_at=self.core.clock(), actor=actor,
        )
        node.set_calling_addresses(addresses=list(addresses or []), unverified=unverified, actor=actor, occurred_at=self.core.clock())
        try:
            self.core.commit(node)
        except Exception:
            if self.core.exists(node.id):
                raise AlreadyExistsError(f"le nœud DICOM {aet} existe déjà") from None
            raise
        return str(node.id)

    def move_node(self, *, aet: str, host: str, port: int, admin_id: str | None = None) -> int | None:
        """The node's network address changed (where the platform reaches it, and calls from it)."""
        node = self.core.load(DicomNode, ids.node_id(aet), "nœud DICOM")
        node.move(host=_host(host), port=_port(port), actor=self.actors.admin(admin_id), occurred_at=self.core.clock())
        return self.core.commit(node)

    def set_node_addresses(
        self, *, aet: str, addresses: list[str], unverified: bool, admin_id: str | None = None
    ) -> int | None:
        """Where the node may call from besides its host; `unverified`: from anywhere."""
        node = self.core.load(DicomNode, ids.node_id(aet), "nœud DICOM")
        node.set_calling_addresses(
            addresses=addresses, unverified=unverified, actor=self.actors.admin(admin_id), occurred_at=self.core.clock(),
        )
        return self.core.commit(node)

    # ------------------------------------------------------------------ lookups

    def establishment(self, *, establishment_id: str | None = None, finess: str | None = None) -> EstablishmentInfo:
        key = str(ids.establishment_id(check_finess(finess))) if finess is not None else str(establishment_id)
        e = self.core.load(Establishment, key, "établissement")
        return EstablishmentInfo(
            id=str(e.id), finess=e.finess, name=e.name, department=e.department, region=e.region,
            services=tuple(e.services.values()),
        )

    def practitioner(self, *, practitioner_id: str | None = None, rpps: str | None = None) -> PractitionerInfo:
        key = str(ids.practitioner_id(check_rpps(rpps))) if rpps is not None else str(practitioner_id)
        p = self.core.load(Practitioner, key, "professionnel")
        return PractitionerInfo(
            id=str(p.id), rpps=p.rpps, family_name=p.family_name, given_name=p.given_name,
            profession=p.profession, specialty=p.specialty, email=p.email, active=p.active,
            memberships={k: dict(v) for k, v in p.memberships.items()},
        )

    def node(self, *, aet: str) -> NodeInfo:
        n = self.core.load(DicomNode, ids.node_id(aet), "nœud DICOM")
        return NodeInfo(
            id=str(n.id), aet=n.aet, host=n.host, port=n.port, establishment_id=n.establishment_id, kind=n.kind,
            addresses=tuple(n.calling_addresses), unverified=n.unverified,
        )

    def directory_ids(self) -> dict[str, list[UUID]]:
        """Ids of every establishment, practitioner and node, from the log's created events."""
        topics = {
            "establishments": "relais:Establishment.Created",
            "practitioners": "relais:Practitioner.Created",
            "nodes": "relais:DicomNode.Created",
        }
        out: dict[str, list[UUID]] = {k: [] for k in topics}
        reverse = {v: k for k, v in topics.items()}
        start = 1
        while True:
            batch = self.core.store.recorder.select_notifications(start=start, limit=1000, topics=list(topics.values()))
            if not batch:
                return out
            for n in batch:
                out[reverse[n.topic]].append(parse_uuid(n.originator_id, "id"))
            start = batch[-1].id + 1

    def set_node_retrieve_method(self, *, aet: str, method: str, admin_id: str | None = None) -> int | None:
        """C-MOVE to our node (default) or C-GET, per PACS (a new event on the node)."""
        node = self.core.load(DicomNode, ids.node_id(aet), "nœud DICOM")
        node.set_retrieve_method(method=method, actor=self.actors.admin(admin_id), occurred_at=self.core.clock())
        return self.core.commit(node)
