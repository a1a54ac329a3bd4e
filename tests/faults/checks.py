"""What must hold after a fault and a restart: nothing acknowledged lost, nothing duplicated, every
acknowledged instance whole and recorded, the read models equal to a rebuild from the log, and the
live inbox still delivering."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import psycopg.rows
from pydicom import dcmread

from adapters.settings import Settings
from application import Relais
from entrypoints.bootstrap import build_app, upgrade
from projections.runner import PROJECTIONS, catch_up, status
from tests.faults.load import RECIPIENT, Acks, Clinician, Load, pixel_digest
from tests.faults.servers import PrivatePostgres, wait_until


@dataclass
class Counts:
    events: int = 0
    created: int = 0
    sent: int = 0
    instances: int = 0
    rows_compared: int = 0

    def __str__(self) -> str:
        return (f"{self.events} events read, {self.created} acknowledged creations and {self.sent} sends found once, "
                f"{self.instances} acknowledged instances whole and recorded, {self.rows_compared} read-model rows equal to a rebuild")


def app_on(url: str) -> Relais:
    return build_app(Settings(database_url=url, tables_ready=True))


def settle(app: Relais, timeout: float = 60) -> int:
    """Waits until every projection has written every event of its topics; returns the log's head."""
    def caught_up() -> bool:
        return all(s.lag == 0 for s in status(app))
    wait_until(caught_up, timeout, "projections caught up with the log")
    with psycopg.connect(_url_of(app), autocommit=True) as conn:
        return int(conn.execute("SELECT coalesce(max(notification_id), 0) FROM relais_events").fetchone()[0])


def _url_of(app: Relais) -> str:
    e = app.env
    return f"postgresql://{e['POSTGRES_USER']}@{e['POSTGRES_HOST']}:{e['POSTGRES_PORT']}/{e['POSTGRES_DBNAME']}"


def check_events(app: Relais, acks: Acks, counts: Counts, service_id: str) -> None:
    """Every acknowledged command is in the log exactly once; nothing tried is there twice. The load addresses
    `service_id`; a stroke request also gets its establishment's preset recipient, counted apart."""
    questions: Counter[str] = Counter()
    addressed: Counter[tuple[str, str | None]] = Counter()
    sent: Counter[str] = Counter()
    ids: list[int] = []
    start = 1
    while True:
        page = app.recorder.select_notifications(start=start, limit=500)
        if not page:
            break
        for n in page:
            ids.append(n.id)
            if n.topic == "relais:Dossier.Created":
                questions[app.mapper.to_domain_event(n).question] += 1
            elif n.topic == "relais:Dossier.RecipientAddressed":
                addressed[(str(n.originator_id), app.mapper.to_domain_event(n).recipient.get("service_id"))] += 1
            elif n.topic == "relais:Dossier.Sent":
                sent[str(n.originator_id)] += 1
        start = page[-1].id + 1
    assert len(ids) == len(set(ids))
    counts.events = len(ids)
    lost = [t for t in acks.created if questions[t] != 1]
    assert not lost, f"acknowledged creations not in the log exactly once: {[(t, questions[t]) for t in lost]}"
    twice = [t for t in acks.tokens if questions[t] > 1]
    assert not twice, f"creations recorded twice: {twice}"
    assert all(n <= 1 for n in addressed.values()), f"a recipient addressed twice: {addressed.most_common(3)}"
    for did in acks.created.values():
        assert sent[did] <= 1, (did, sent[did])
    assert all(addressed[(d, service_id)] == 1 for d in acks.addressed), "an acknowledged recipient is missing"
    assert all(sent[d] == 1 for d in acks.sent), "an acknowledged send is missing"
    counts.created, counts.sent = len(acks.created), len(acks.sent)


def check_instances(app: Relais, data_dir: Path, acks: Acks, load: Load, counts: Counts) -> None:
    """Every instance storescu was told is stored is on disk, whole (pydicom reads it, same pixels) and recorded."""
    root = data_dir / "dicom"
    with psycopg.connect(_url_of(app), autocommit=True) as conn:
        recorded = {r[0] for r in conn.execute("SELECT sop_instance_uid FROM img_instances")}
    for sop, source in acks.stored.items():
        found = list(root.glob(f"*/{load.study_uid}/{sop}.dcm"))
        assert len(found) == 1, f"acknowledged instance {sop}: {found}"
        assert pixel_digest(found[0]) == pixel_digest(source), f"instance {sop} differs from what was sent"
        assert sop in recorded, f"acknowledged instance {sop} not recorded"
    for path in root.glob("*/*/*.dcm"):  # nothing half-written in place, acknowledged or not
        dcmread(path)
    counts.instances = len(acks.stored)


def _rows(conn: psycopg.Connection, table: str) -> list[tuple]:
    return sorted(tuple(map(repr, row)) for row in conn.execute(f'SELECT * FROM "{table}"'))


def check_rebuild(postgres: PrivatePostgres, app: Relais, head: int, counts: Counts) -> None:
    """Every read model equals the same read model rebuilt from zero, from a copy of the log up to `head`."""
    url = postgres.create_database(f"rebuild_{uuid.uuid4().hex[:8]}")
    upgrade(Settings(database_url=url))
    source_url = _url_of(app)
    with psycopg.connect(source_url) as src, psycopg.connect(url) as dst:
        with src.cursor().copy(f"COPY (SELECT * FROM relais_events WHERE notification_id <= {head} "
                               "ORDER BY notification_id) TO STDOUT (FORMAT binary)") as out, \
                dst.cursor().copy("COPY relais_events FROM STDIN (FORMAT binary)") as into:
            for chunk in out:
                into.write(chunk)
        dst.commit()
    rebuilt = app_on(url)
    try:
        env = Settings(database_url=url, tables_ready=True).eventsourcing_env()
        for name in PROJECTIONS:
            catch_up(name, env, rebuilt, timeout=120)
    finally:
        rebuilt.close()
    with psycopg.connect(source_url, autocommit=True) as live, psycopg.connect(url, autocommit=True) as fresh:
        for name, (_, view_class) in PROJECTIONS.items():
            for table in view_class.tables:
                ours, theirs = _rows(live, table), _rows(fresh, table)
                assert ours == theirs, (f"read model {name}, table {table}: {len(ours)} rows live, {len(theirs)} rebuilt; "
                                        f"only live: {sorted(set(ours) - set(theirs))[:3]}, "
                                        f"only rebuilt: {sorted(set(theirs) - set(ours))[:3]}")
                counts.rows_compared += len(ours)
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


class InboxListener:
    """A signed-in recipient's browser on /inbox/stream: the events it receives, in a queue."""

    def __init__(self, base: str):
        self.clinician = Clinician(base, RECIPIENT.rpps)
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.clinician.login()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        name = ""
        try:
            with self.clinician.client.stream("GET", "/inbox/stream", timeout=httpx.Timeout(10, read=60)) as response:
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        name = line.removeprefix("event: ")
                    elif line.startswith("data: ") and name:
                        if name == "ready":
                            self.ready.set()
                        self.events.put((name, line.removeprefix("data: ")))
                        name = ""
        except BaseException as e:  # noqa: BLE001 - closed at the end, or the server went away
            self.error = e

    def wait_for(self, dossier_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                name, data = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if name == "inbox" and json.loads(data).get("dossier") == dossier_id:
                return True
        return False

    def close(self) -> None:
        self.clinician.close()


def live_inbox_delivers(platform, load: Load, timeout: float = 20) -> bool:  # type: ignore[no-untyped-def]
    """A dossier sent now to the recipient's establishment reaches the recipient's open stream."""
    from tests.faults.load import REQUESTER

    listener = InboxListener(platform.base)
    sender = Clinician(platform.base, REQUESTER.rpps)
    try:
        if not listener.ready.wait(15):
            return False
        did = load.flow(sender, f"faute-{load.label}-live-{uuid.uuid4().hex[:8]}")
        return listener.wait_for(did, timeout)
    finally:
        sender.close()
        listener.close()


def verify(postgres: PrivatePostgres, platform, load: Load) -> Counts:  # type: ignore[no-untyped-def]
    """Every check but the live inbox, after the load has stopped."""
    counts = Counts()
    app = app_on(platform.env["RELAIS_DATABASE_URL"])
    try:
        head = settle(app)
        check_events(app, load.acks, counts, load.directory["neuroradio"])
        check_instances(app, platform.data_dir, load.acks, load, counts)
        check_rebuild(postgres, app, head, counts)
    finally:
        app.close()
    return counts


def positions(url: str) -> dict[str, tuple[int, int]]:
    """Each projection's (position, head of its topics), on a connection of our own."""
    from projections.status import projection_status

    with psycopg.connect(url, autocommit=True) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as curs:
        out = {}
        for name, (projection_class, _) in PROJECTIONS.items():
            s = projection_status(curs, name, tuple(projection_class.topics))
            out[name] = (s.position, s.head)
        return out
