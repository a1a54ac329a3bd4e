"""Directory read model: establishments, services, practitioners, memberships, DICOM nodes."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from domain.directory import DicomNode, Establishment, Practitioner
from domain.specialties import like_pattern, search_terms
from projections.base import PostgresView
from projections.search import folded_sql


@dataclass(frozen=True)
class EstablishmentRow:
    id: str
    finess: str
    name: str
    department: str
    region: str


@dataclass(frozen=True)
class ServiceRow:
    id: str
    establishment_id: str
    name: str
    kind: str  # service, team, on_call_pool
    specialty: str = ""
    code: str = ""


@dataclass(frozen=True)
class SearchHit:
    """One directory entry found by a search: an establishment itself, one of its services (or teams or
    on-call pools), or one of its clinicians; `rank` 0 an on-call pool, 1 a service or team, 2 a clinician
    matched by their own name or specialty, 3 found by the establishment's name, FINESS or department."""

    establishment_id: str
    service_id: str | None
    practitioner_id: str | None
    rank: int


@dataclass(frozen=True)
class PersonRow:
    """A practitioner as named on pages."""

    id: str
    given_name: str
    family_name: str

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()


@dataclass(frozen=True)
class PractitionerRow:
    id: str
    rpps: str
    family_name: str
    given_name: str
    profession: str
    specialty: str
    active: bool
    establishment_finess: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class NodeRow:
    id: str
    aet: str
    host: str
    port: int
    kind: str
    establishment_finess: str
    addresses: tuple[str, ...] = ()  # calling addresses besides its host
    unverified: bool = False  # « adresse non vérifiée »


@dataclass(frozen=True)
class NodePeer:
    """What the DICOM node needs to admit a node's calls: its establishment and where it may call from."""

    establishment_id: str
    addresses: tuple[str, ...]  # its host first, then its calling addresses (IPs, CIDR networks, host names)
    unverified: bool  # « adresse non vérifiée »: calls accepted from any address


def _normalized_sql(expression: str) -> str:
    """domain.specialties.normalized in SQL (what is typed goes through the Python one)."""
    folded = f"replace(replace({folded_sql(expression)}, 'œ', 'oe'), 'æ', 'ae')"
    return f"trim(regexp_replace({folded}, '[^a-z0-9]+', ' ', 'g'))"


# What the recipient search reads of each row, normalized once when the row is written (a generated
# column): with 3,000 establishments, 15,000 services and 20,000 clinicians, normalizing them at every
# search took 2.5 to 34 s per search (« AVC »: 34 s); read stored, 30 to 90 ms.
_SEARCH_COLUMNS = [
    ("dir_establishments", "name || ' ' || finess || ' ' || department"),
    ("dir_services", "name || ' ' || specialty || ' ' || code || ' ' || "
                     "CASE kind WHEN 'on_call_pool' THEN 'astreinte' WHEN 'team' THEN 'equipe' ELSE '' END"),
    ("dir_practitioners", "family_name || ' ' || given_name || ' ' || specialty"),
]


NODES_CHANNEL = "relais_dicom_nodes"
"""Notified (payload: the AE title) in the transaction that writes a node's row: running DICOM nodes
listen to it and read the directory again at once."""


@dataclass(frozen=True)
class Standing:
    """What the directory says now of a practitioner: active or not, their roles per establishment."""

    active: bool
    roles: dict[str, frozenset[str]]  # establishment id -> roles

    def holds(self, establishment_id: str, role: str) -> bool:
        return role in self.roles.get(establishment_id, frozenset())


STANDING_TTL = 5.0
"""Seconds a practitioner's standing is kept by a web process: a deactivation or a role removed takes
effect on the first request after at most this long (plus the directory projection's lag)."""


class DirectoryView(Protocol):
    def establishments(self) -> list[EstablishmentRow]: ...
    def services(self) -> list[ServiceRow]: ...
    def people(self) -> list[PersonRow]: ...
    def clinicians_of(self, establishment_id: str) -> list[PersonRow]: ...
    def search(self, q: str, limit: int = 12) -> list[EstablishmentRow]: ...
    def search_hits(self, q: str, limit: int = 12) -> list[SearchHit]: ...
    def practitioners(self) -> list[PractitionerRow]: ...
    def nodes(self) -> list[NodeRow]: ...
    def node_aets(self) -> set[str]: ...


class PostgresDirectoryView(PostgresView):
    ddl = (
        """CREATE TABLE IF NOT EXISTS dir_establishments (
            id uuid PRIMARY KEY, finess text UNIQUE NOT NULL, name text NOT NULL,
            department text NOT NULL, region text NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS dir_services (
            id uuid PRIMARY KEY, establishment_id uuid NOT NULL, code text NOT NULL, name text NOT NULL,
            specialty text NOT NULL, kind text NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS dir_practitioners (
            id uuid PRIMARY KEY, rpps text UNIQUE NOT NULL, family_name text NOT NULL, given_name text NOT NULL,
            profession text NOT NULL, specialty text NOT NULL, email text NOT NULL, active boolean NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS dir_memberships (
            practitioner_id uuid NOT NULL, establishment_id uuid NOT NULL, roles text[] NOT NULL,
            service_ids text[] NOT NULL, PRIMARY KEY (practitioner_id, establishment_id))""",
        """CREATE TABLE IF NOT EXISTS dir_nodes (
            id uuid PRIMARY KEY, aet text UNIQUE NOT NULL, host text NOT NULL, port integer NOT NULL,
            establishment_id uuid NOT NULL, kind text NOT NULL, active boolean NOT NULL)""",
        # where a node may call from besides its host; unverified: from anywhere (tables made before: added)
        "ALTER TABLE dir_nodes ADD COLUMN IF NOT EXISTS addresses text[] NOT NULL DEFAULT '{}'",
        "ALTER TABLE dir_nodes ADD COLUMN IF NOT EXISTS unverified boolean NOT NULL DEFAULT false",
        # deadlines and escalation per recipient service, absence of a requester (issue 12: added columns)
        "ALTER TABLE dir_services ADD COLUMN IF NOT EXISTS deadlines jsonb NOT NULL DEFAULT '{}'",
        "ALTER TABLE dir_services ADD COLUMN IF NOT EXISTS escalate_to_service_id uuid",
        "ALTER TABLE dir_services ADD COLUMN IF NOT EXISTS escalate_to_practitioner_id uuid",
        "ALTER TABLE dir_practitioners ADD COLUMN IF NOT EXISTS away boolean NOT NULL DEFAULT false",
        "ALTER TABLE dir_practitioners ADD COLUMN IF NOT EXISTS away_until date",
        # the recipient search's text of each row (issue 13)
        *(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS search text GENERATED ALWAYS AS ({_normalized_sql(text)}) STORED"
          for table, text in _SEARCH_COLUMNS),
    )
    tables = ("dir_establishments", "dir_services", "dir_practitioners", "dir_memberships", "dir_nodes")
    standing_ttl: float = STANDING_TTL

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._standings: dict[str, tuple[float, Standing | None]] = {}
        self._standings_lock = threading.Lock()

    def standing(self, practitioner_id: str) -> Standing | None:
        """The practitioner's standing (None: not in the read model yet), read at most `standing_ttl`
        seconds ago: the one cache of it, asked by the login guard on every request (one indexed
        query per user every 5 s)."""
        now = time.monotonic()
        with self._standings_lock:
            cached = self._standings.get(practitioner_id)
        if cached is not None and now - cached[0] < self.standing_ttl:
            return cached[1]
        rows = self.query(
            """SELECT p.active, m.establishment_id::text AS eid, m.roles FROM dir_practitioners p
               LEFT JOIN dir_memberships m ON m.practitioner_id = p.id WHERE p.id = %s""",
            (practitioner_id,),
        )
        standing = None
        if rows:
            standing = Standing(
                active=bool(rows[0]["active"]),
                roles={r["eid"]: frozenset(r["roles"]) for r in rows if r["eid"] is not None},
            )
        with self._standings_lock:
            if len(self._standings) > 10_000:  # users of one web process: far fewer; never unbounded
                self._standings.clear()
            self._standings[practitioner_id] = (now, standing)
        return standing

    def forget_standings(self) -> None:
        """Drops the cached standings (the next request reads the directory again)."""
        with self._standings_lock:
            self._standings.clear()

    def establishments(self) -> list[EstablishmentRow]:
        rows = self.query("SELECT id::text, finess, name, department, region FROM dir_establishments ORDER BY finess")
        return [EstablishmentRow(**r) for r in rows]

    def services(self) -> list[ServiceRow]:
        rows = self.query("SELECT id::text, establishment_id::text, name, kind, specialty, code FROM dir_services")
        return [ServiceRow(**r) for r in rows]

    def people(self) -> list[PersonRow]:
        """Every practitioner's name (active or not: past events name them too)."""
        return [PersonRow(**r) for r in self.query("SELECT id::text, given_name, family_name FROM dir_practitioners")]

    def clinicians_of(self, establishment_id: str) -> list[PersonRow]:
        """The active clinicians of an establishment, by name."""
        rows = self.query(
            """SELECT p.id::text, p.given_name, p.family_name FROM dir_memberships m
               JOIN dir_practitioners p ON p.id = m.practitioner_id
               WHERE m.establishment_id = %s AND 'clinician' = ANY(m.roles) AND p.active
               ORDER BY p.family_name, p.given_name""", (establishment_id,),
        )
        return [PersonRow(**r) for r in rows]

    def search(self, q: str, limit: int = 12) -> list[EstablishmentRow]:
        """The establishments found by `search_hits`, best first."""
        order = list(dict.fromkeys(h.establishment_id for h in self.search_hits(q, limit)))
        if not order:
            return []
        rows = {r["id"]: EstablishmentRow(**r) for r in self.query(
            "SELECT id::text, finess, name, department, region FROM dir_establishments WHERE id = ANY(%s::uuid[])", (order,)
        )}
        return [rows[i] for i in order if i in rows]

    def search_hits(self, q: str, limit: int = 12) -> list[SearchHit]:
        """What a clinician typed, found in the directory: every word typed (or one of its synonyms,
        domain/specialties.py) in an entry's text — its establishment's name, FINESS and department, plus
        a service's name, specialty and code (« astreinte » for a pool) or a clinician's name and
        specialty — accents and case ignored. The hits of the `limit` best establishments, best first:
        establishments by their best hit (on-call pools, then services, clinicians, the establishment
        itself), then by name."""
        terms = search_terms(q)
        if not terms:
            return []
        params: dict[str, Any] = {"limit": limit}

        def holds(document: str, every: bool) -> str:
            words = []
            for i, alternatives in enumerate(terms):
                likes = []
                for j, term in enumerate(alternatives):
                    params[f"t{i}_{j}"] = like_pattern(term)
                    likes.append(f"{document} LIKE %(t{i}_{j})s")
                words.append("(" + " OR ".join(likes) + ")")
            return (" AND " if every else " OR ").join(words)

        rows = self.query(
            f"""WITH entries AS (
                    SELECT e.id AS eid, NULL::uuid AS sid, NULL::uuid AS pid, 3 AS kind_rank,
                           ' ' || e.search || ' ' AS doc, ' ' AS own
                    FROM dir_establishments e
                  UNION ALL
                    SELECT e.id, s.id, NULL, CASE s.kind WHEN 'on_call_pool' THEN 0 ELSE 1 END,
                           ' ' || e.search || ' ' || s.search || ' ', ' ' || s.search || ' '
                    FROM dir_services s JOIN dir_establishments e ON e.id = s.establishment_id
                  UNION ALL
                    SELECT e.id, NULL, p.id, 2, ' ' || e.search || ' ' || p.search || ' ', ' ' || p.search || ' '
                    FROM dir_memberships m JOIN dir_practitioners p ON p.id = m.practitioner_id
                    JOIN dir_establishments e ON e.id = m.establishment_id
                    WHERE 'clinician' = ANY(m.roles) AND p.active),
                hits AS MATERIALIZED (
                    SELECT eid, sid, pid, CASE WHEN {holds("own", every=False)} THEN kind_rank ELSE 3 END AS rank
                    FROM entries WHERE {holds("doc", every=True)}),
                best AS (
                    SELECT h.eid, min(h.rank) AS best, min(e.name) AS name FROM hits h
                    JOIN dir_establishments e ON e.id = h.eid GROUP BY h.eid ORDER BY best, name LIMIT %(limit)s)
                SELECT h.eid::text AS establishment_id, h.sid::text AS service_id, h.pid::text AS practitioner_id, h.rank
                FROM hits h JOIN best b ON b.eid = h.eid ORDER BY b.best, b.name, b.eid, h.rank""",
            params,
        )
        return [SearchHit(**r) for r in rows]

    def practitioners(self) -> list[PractitionerRow]:
        rows = self.query(
            """SELECT p.id::text, p.rpps, p.family_name, p.given_name, p.profession, p.specialty, p.active,
                      coalesce(e.finess, '') AS establishment_finess, coalesce(m.roles, '{}') AS roles
               FROM dir_practitioners p
               LEFT JOIN dir_memberships m ON m.practitioner_id = p.id
               LEFT JOIN dir_establishments e ON e.id = m.establishment_id
               ORDER BY p.family_name, p.given_name, e.finess"""
        )
        return [PractitionerRow(**dict(r, roles=tuple(r["roles"]))) for r in rows]

    def nodes(self) -> list[NodeRow]:
        rows = self.query(
            """SELECT n.id::text, n.aet, n.host, n.port, n.kind, coalesce(e.finess, '') AS establishment_finess,
                      n.addresses, n.unverified
               FROM dir_nodes n LEFT JOIN dir_establishments e ON e.id = n.establishment_id
               WHERE n.active ORDER BY n.aet"""
        )
        return [NodeRow(**dict(r, addresses=tuple(r["addresses"]))) for r in rows]

    def node_aets(self) -> set[str]:
        return {r["aet"] for r in self.query("SELECT aet FROM dir_nodes WHERE active")}

    def pacs_of(self, establishment_id: str) -> list[NodeRow]:
        """The active PACS nodes of an establishment (query/retrieve from the dossier form)."""
        rows = self.query(
            """SELECT n.id::text, n.aet, n.host, n.port, n.kind, coalesce(e.finess, '') AS establishment_finess
               FROM dir_nodes n LEFT JOIN dir_establishments e ON e.id = n.establishment_id
               WHERE n.active AND n.kind = 'pacs' AND n.establishment_id = %s ORDER BY n.aet""",
            (establishment_id,),
        )
        return [NodeRow(**r) for r in rows]

    def node_peers(self) -> dict[str, NodePeer]:
        """AE title -> establishment and calling addresses of every active node (the SCP's admission check)."""
        rows = self.query(
            "SELECT aet, establishment_id::text AS eid, host, addresses, unverified FROM dir_nodes WHERE active"
        )
        return {
            r["aet"]: NodePeer(
                establishment_id=r["eid"], addresses=tuple(dict.fromkeys([r["host"], *r["addresses"]])),
                unverified=bool(r["unverified"]),
            )
            for r in rows
        }


class DirectoryProjection(Projection[PostgresDirectoryView]):
    """Keeps the directory tables in step with the directory's events."""

    name = "directory"
    topics = (
        "relais:Establishment.Created",
        "relais:Establishment.Renamed",
        "relais:Establishment.ServiceAdded",
        "relais:Establishment.ServiceDeadlineSet",
        "relais:Establishment.ServiceEscalationSet",
        "relais:Practitioner.Created",
        "relais:Practitioner.MembershipSet",
        "relais:Practitioner.MembershipEnded",
        "relais:Practitioner.Deactivated",
        "relais:Practitioner.AwaySet",
        "relais:DicomNode.Created",
        "relais:DicomNode.Moved",
        "relais:DicomNode.CallingAddressesSet",
    )

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.apply(tracking)

    @process_event.register
    def _(self, e: Establishment.Created, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: c.execute(
            "INSERT INTO dir_establishments VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (e.originator_id, e.finess, e.name, e.department, e.region),
        ))

    @process_event.register
    def _(self, e: Establishment.Renamed, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: c.execute(
            "UPDATE dir_establishments SET name = %s WHERE id = %s", (e.name, e.originator_id)
        ))

    @process_event.register
    def _(self, e: Establishment.ServiceAdded, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: c.execute(
            """INSERT INTO dir_services (id, establishment_id, code, name, specialty, kind)
               VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING""",
            (e.service_id, e.originator_id, e.code, e.name, e.specialty, e.kind),
        ))

    @process_event.register
    def _(self, e: Establishment.ServiceDeadlineSet, tracking: Tracking) -> None:
        key = f"{e.workflow}/{e.urgency}"
        if (e.accept, e.answer) == (0, 0):
            self.view.apply(tracking, lambda c: c.execute(
                "UPDATE dir_services SET deadlines = deadlines - %s WHERE id = %s", (key, e.service_id)
            ))
        else:
            self.view.apply(tracking, lambda c: c.execute(
                "UPDATE dir_services SET deadlines = deadlines || jsonb_build_object(%s::text, %s::jsonb) WHERE id = %s",
                (key, Jsonb({"accept": e.accept, "answer": e.answer}), e.service_id),
            ))

    @process_event.register
    def _(self, e: Establishment.ServiceEscalationSet, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: c.execute(
            "UPDATE dir_services SET escalate_to_service_id = %s, escalate_to_practitioner_id = %s WHERE id = %s",
            (e.to_service_id, e.to_practitioner_id, e.service_id),
        ))

    @process_event.register
    def _(self, e: Practitioner.AwaySet, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: c.execute(
            "UPDATE dir_practitioners SET away = %s, away_until = %s WHERE id = %s", (e.away, e.until, e.originator_id)
        ))

    @process_event.register
    def _(self, e: Practitioner.Created, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: c.execute(
            """INSERT INTO dir_practitioners (id, rpps, family_name, given_name, profession, specialty, email, active)
               VALUES (%s, %s, %s, %s, %s, %s, %s, true) ON CONFLICT (id) DO NOTHING""",
            (e.originator_id, e.rpps, e.family_name, e.given_name, e.profession, e.specialty, e.email),
        ))

    @process_event.register
    def _(self, e: Practitioner.MembershipSet, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: c.execute(
            """INSERT INTO dir_memberships VALUES (%s, %s, %s, %s)
               ON CONFLICT (practitioner_id, establishment_id)
               DO UPDATE SET roles = EXCLUDED.roles, service_ids = EXCLUDED.service_ids""",
            (e.originator_id, e.establishment_id, list(e.roles), list(e.service_ids)),
        ))

    @process_event.register
    def _(self, e: Practitioner.MembershipEnded, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: c.execute(
            "DELETE FROM dir_memberships WHERE practitioner_id = %s AND establishment_id = %s",
            (e.originator_id, e.establishment_id),
        ))

    @process_event.register
    def _(self, e: Practitioner.Deactivated, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: c.execute(
            "UPDATE dir_practitioners SET active = false WHERE id = %s", (e.originator_id,)
        ))

    @process_event.register
    def _(self, e: DicomNode.Created, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: _node_changed(c.execute(
            """INSERT INTO dir_nodes (id, aet, host, port, establishment_id, kind, active)
               VALUES (%s, %s, %s, %s, %s, %s, true) ON CONFLICT (id) DO NOTHING""",
            (e.originator_id, e.aet, e.host, e.port, e.establishment_id, e.kind),
        ), e.originator_id))

    @process_event.register
    def _(self, e: DicomNode.Moved, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: _node_changed(c.execute(
            "UPDATE dir_nodes SET host = %s, port = %s WHERE id = %s", (e.host, e.port, e.originator_id)
        ), e.originator_id))

    @process_event.register
    def _(self, e: DicomNode.CallingAddressesSet, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: _node_changed(c.execute(
            "UPDATE dir_nodes SET addresses = %s, unverified = %s WHERE id = %s",
            (list(e.addresses), e.unverified, e.originator_id),
        ), e.originator_id))


def _node_changed(curs: Cursor[DictRow], node_id: object) -> None:
    """Tells the running DICOM nodes, when this transaction commits, that a node's row changed."""
    curs.execute("SELECT pg_notify(%s, aet) FROM dir_nodes WHERE id = %s", (NODES_CHANNEL, node_id))
