"""MDT sessions read model: sessions (upcoming and past, per establishment) and their agenda with decisions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from application.mdt import SessionDetails
from domain.mdt import SESSION_TYPES, MdtSession
from projections.base import PostgresView


@dataclass(frozen=True)
class SessionRow:
    id: str
    session_type: str
    title: str
    starts_at: datetime
    duration_minutes: int
    place: str
    video_url: str
    specialties: tuple[str, ...]
    establishment_id: str
    service_id: str
    coordinator_id: str
    cancelled: bool
    dossiers: int  # registered, not withdrawn
    decisions: int

    @property
    def label(self) -> str:
        return str(SESSION_TYPES.get(self.session_type, {}).get("label", self.session_type))

    @property
    def ends_at(self) -> datetime:
        return self.starts_at + timedelta(minutes=self.duration_minutes)


@dataclass(frozen=True)
class DossierSessionRow:
    """A dossier's place on one session's agenda, with the decision when there is one."""

    session: SessionRow
    registered_at: datetime
    withdrawn: bool
    decision: str | None
    decided_at: datetime | None
    fiche: dict[str, Any]
    participants: list[dict[str, Any]]


_SESSION_COLUMNS = """s.id::text, s.session_type, s.title, s.starts_at, s.duration_minutes, s.place, s.video_url,
    s.specialties, s.establishment_id::text, s.service_id::text, s.coordinator_id::text, s.cancelled,
    (SELECT count(*) FROM mdt_agenda a WHERE a.session_id = s.id AND NOT a.withdrawn)::int AS dossiers,
    (SELECT count(*) FROM mdt_agenda a WHERE a.session_id = s.id AND a.decision IS NOT NULL)::int AS decisions"""


def _session(row: DictRow) -> SessionRow:
    return SessionRow(**{**{k: row[k] for k in SessionRow.__dataclass_fields__}, "specialties": tuple(row["specialties"])})


class PostgresMdtView(PostgresView):
    ddl = (
        """CREATE TABLE IF NOT EXISTS mdt_sessions (
            id uuid PRIMARY KEY, session_type text NOT NULL, title text NOT NULL, starts_at timestamptz NOT NULL,
            duration_minutes integer NOT NULL, place text NOT NULL, video_url text NOT NULL, specialties text[] NOT NULL,
            establishment_id uuid NOT NULL, service_id uuid NOT NULL, coordinator_id uuid NOT NULL,
            participants jsonb NOT NULL, cancelled boolean NOT NULL DEFAULT false, sequence integer NOT NULL DEFAULT 0)""",
        "CREATE INDEX IF NOT EXISTS mdt_sessions_establishment_idx ON mdt_sessions (establishment_id, starts_at)",
        """CREATE TABLE IF NOT EXISTS mdt_agenda (
            session_id uuid NOT NULL, dossier_id uuid NOT NULL, send_id text NOT NULL, registered_at timestamptz NOT NULL,
            withdrawn boolean NOT NULL DEFAULT false, decision text, decided_at timestamptz,
            fiche jsonb NOT NULL DEFAULT '{}', participants jsonb NOT NULL DEFAULT '[]',
            PRIMARY KEY (session_id, dossier_id))""",
        "CREATE INDEX IF NOT EXISTS mdt_agenda_dossier_idx ON mdt_agenda (dossier_id)",
        # the invitations to send (adapters/mail/ics.py delivers them): one row per participant with an address and
        # per version of the session (its `sequence`); never dropped by a rebuild, so never sent twice
        """CREATE TABLE IF NOT EXISTS mdt_invitations (
            id uuid PRIMARY KEY, session_id uuid NOT NULL, sequence integer NOT NULL, practitioner_id uuid NOT NULL,
            address text NOT NULL, state text NOT NULL DEFAULT 'pending', attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(), last_error text, sent_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now())""",
        "CREATE INDEX IF NOT EXISTS mdt_invitations_due ON mdt_invitations (next_attempt_at) WHERE state = 'pending'",
    )
    tables = ("mdt_sessions", "mdt_agenda")  # what a rebuild drops: never the invitations (mdt_invitations)
    schema_version = 1

    def sessions(self, establishment_id: str, practitioner_id: str, *, upcoming: bool, now: datetime,
                 limit: int = 100) -> list[SessionRow]:
        """Sessions organised by the establishment or to which the practitioner is invited: upcoming (not over,
        soonest first) or past (latest first)."""
        order = "ASC" if upcoming else "DESC"
        compare = ">=" if upcoming else "<"
        rows = self.query(
            f"""SELECT {_SESSION_COLUMNS} FROM mdt_sessions s
                WHERE (s.establishment_id = %(e)s OR s.participants @> %(p)s)
                  AND s.starts_at + make_interval(mins => s.duration_minutes) {compare} %(now)s
                ORDER BY s.starts_at {order} LIMIT %(limit)s""",
            {"e": establishment_id, "p": Jsonb([{"practitioner_id": practitioner_id}]), "now": now, "limit": limit},
        )
        return [_session(r) for r in rows]

    def open_for(self, establishment_id: str, now: datetime) -> list[SessionRow]:
        """Sessions of the establishment a dossier can still be registered to (not cancelled, not over)."""
        return [s for s in self.sessions(establishment_id, "", upcoming=True, now=now) if not s.cancelled
                and s.establishment_id == establishment_id]

    def of_dossier(self, dossier_id: str) -> list[DossierSessionRow]:
        """The sessions a dossier was registered to, with their decisions, in session order."""
        rows = self.query(
            f"""SELECT {_SESSION_COLUMNS}, a.registered_at, a.withdrawn, a.decision, a.decided_at, a.fiche,
                       a.participants AS decision_participants
                FROM mdt_agenda a JOIN mdt_sessions s ON s.id = a.session_id
                WHERE a.dossier_id = %s ORDER BY s.starts_at""", (dossier_id,),
        )
        return [DossierSessionRow(
            session=_session(r), registered_at=r["registered_at"], withdrawn=r["withdrawn"], decision=r["decision"],
            decided_at=r["decided_at"], fiche=dict(r["fiche"] or {}), participants=list(r["decision_participants"] or []),
        ) for r in rows]

    def decisions_for(self, dossier_id: str) -> list[DossierSessionRow]:
        """The MDT decisions on a dossier (the fiche RCP of each), for the dossier page and the report."""
        return [r for r in self.of_dossier(dossier_id) if r.decision is not None]


MAIL_CHANNEL = "relais_mail"  # the mail delivery loop's wake-up (adapters/mail/delivery.py)

INVITE = """INSERT INTO mdt_invitations (id, session_id, sequence, practitioner_id, address)
    SELECT md5(s.id::text || ':' || s.sequence || ':' || p.id::text)::uuid, s.id, s.sequence, p.id, p.email
    FROM mdt_sessions s JOIN dir_practitioners p
      ON s.participants @> jsonb_build_array(jsonb_build_object('practitioner_id', p.id::text))
    WHERE s.id = %s AND p.email <> '' AND p.active AND s.starts_at + make_interval(mins => s.duration_minutes) > now()
    ON CONFLICT (id) DO NOTHING"""
"""The session's invitation (its current sequence) to each participant with an address, unless the session is
over (a rebuild, or a first start on older events, invites nobody to the past); then the delivery loop is woken."""


def invite(curs: Cursor[DictRow], session_id: Any) -> None:
    curs.execute(INVITE, (session_id,))
    if curs.rowcount:
        curs.execute("SELECT pg_notify(%s, '')", (MAIL_CHANNEL,))


def invitation_details(curs: Cursor[DictRow], session_id: str) -> SessionDetails | None:
    """What an invitation says of a session, read from this read model and the directory's (no patient data:
    no agenda); None if the session is not (yet) in the read model."""
    curs.execute(
        """SELECT s.*, e.name AS establishment_name, coalesce(sv.name, '') AS service_name,
                  trim(c.given_name || ' ' || c.family_name) AS coordinator_name, c.rpps AS coordinator_rpps,
                  c.email AS coordinator_email
           FROM mdt_sessions s JOIN dir_establishments e ON e.id = s.establishment_id
           LEFT JOIN dir_services sv ON sv.id = s.service_id LEFT JOIN dir_practitioners c ON c.id = s.coordinator_id
           WHERE s.id = %s""", (session_id,))
    row = curs.fetchone()
    if row is None:
        return None
    curs.execute(
        """SELECT p.id::text AS practitioner_id, trim(p.given_name || ' ' || p.family_name) AS name, p.rpps, p.specialty,
                  p.email
           FROM jsonb_array_elements(%s::jsonb) x JOIN dir_practitioners p ON p.id = (x->>'practitioner_id')::uuid""",
        (Jsonb(row["participants"]),))
    participants = tuple(dict(r) for r in curs.fetchall())
    starts = row["starts_at"]
    return SessionDetails(
        id=str(row["id"]), version=0, session_type=row["session_type"],
        label=str(SESSION_TYPES.get(row["session_type"], {}).get("label", row["session_type"])), title=row["title"],
        starts_at=starts, ends_at=starts + timedelta(minutes=row["duration_minutes"]),
        duration_minutes=row["duration_minutes"], place=row["place"], video_url=row["video_url"],
        specialties=tuple(row["specialties"]), participants=participants,
        coordinator={"practitioner_id": str(row["coordinator_id"]), "name": row["coordinator_name"] or "",
                     "rpps": row["coordinator_rpps"] or "", "email": row["coordinator_email"] or ""},
        establishment_id=str(row["establishment_id"]), establishment_name=row["establishment_name"],
        service_id=str(row["service_id"]), service_name=row["service_name"], agenda=(), attendance=(), quorum={},
        sequence=row["sequence"], cancelled={"reason": "", "at": ""} if row["cancelled"] else None, may_manage=False,
    )


class MdtProjection(Projection[PostgresMdtView]):
    """Keeps the sessions and their agenda in step with the MdtSession events."""

    name = "mdt"
    topics = (
        "relais:MdtSession.Created",
        "relais:MdtSession.Rescheduled",
        "relais:MdtSession.DossierRegistered",
        "relais:MdtSession.DossierWithdrawn",
        "relais:MdtSession.DecisionRecorded",
        "relais:MdtSession.Cancelled",
    )

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.apply(tracking)

    @process_event.register
    def _(self, e: MdtSession.Created, tracking: Tracking) -> None:
        def write(c: Cursor[DictRow]) -> None:
            c.execute(
                """INSERT INTO mdt_sessions (id, session_type, title, starts_at, duration_minutes, place, video_url,
                       specialties, establishment_id, service_id, coordinator_id, participants)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING""",
                (e.originator_id, e.session_type, e.title, e.starts_at, e.duration_minutes, e.place, e.video_url,
                 list(e.specialties), e.establishment_id, e.service_id, e.coordinator_id,
                 Jsonb([{"practitioner_id": p["practitioner_id"]} for p in e.participants])),
            )
            invite(c, e.originator_id)

        self.view.apply(tracking, write)

    @process_event.register
    def _(self, e: MdtSession.Rescheduled, tracking: Tracking) -> None:
        def write(c: Cursor[DictRow]) -> None:
            c.execute(
                """UPDATE mdt_sessions SET starts_at = %s, duration_minutes = %s, place = %s, video_url = %s,
                       sequence = sequence + 1 WHERE id = %s""",
                (e.starts_at, e.duration_minutes, e.place, e.video_url, e.originator_id),
            )
            invite(c, e.originator_id)

        self.view.apply(tracking, write)

    @process_event.register
    def _(self, e: MdtSession.Cancelled, tracking: Tracking) -> None:
        def write(c: Cursor[DictRow]) -> None:
            c.execute("UPDATE mdt_sessions SET cancelled = true, sequence = sequence + 1 WHERE id = %s", (e.originator_id,))
            invite(c, e.originator_id)

        self.view.apply(tracking, write)

    @process_event.register
    def _(self, e: MdtSession.DossierRegistered, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: c.execute(
            """INSERT INTO mdt_agenda (session_id, dossier_id, send_id, registered_at) VALUES (%s, %s, %s, %s)
               ON CONFLICT (session_id, dossier_id) DO UPDATE SET withdrawn = false, send_id = excluded.send_id,
                   registered_at = excluded.registered_at""",
            (e.originator_id, e.dossier_id, e.send_id, e.occurred_at),
        ))

    @process_event.register
    def _(self, e: MdtSession.DossierWithdrawn, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: c.execute(
            "UPDATE mdt_agenda SET withdrawn = true WHERE session_id = %s AND dossier_id = %s",
            (e.originator_id, e.dossier_id),
        ))

    @process_event.register
    def _(self, e: MdtSession.DecisionRecorded, tracking: Tracking) -> None:
        self.view.apply(tracking, lambda c: c.execute(
            """UPDATE mdt_agenda SET decision = %s, decided_at = %s, fiche = %s, participants = %s
               WHERE session_id = %s AND dossier_id = %s""",
            (e.decision, e.occurred_at, Jsonb(dict(e.fiche)), Jsonb(list(e.participants)), e.originator_id, e.dossier_id),
        ))
