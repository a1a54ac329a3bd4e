"""Builds, once and eagerly, what a Relais process needs from its Settings: the application, pools,
views, stores, the job table and its context, and the web services. Nothing below `entrypoints/`
builds infrastructure; everything there receives what it needs from here."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TypeVar

from litestar import Litestar
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from adapters import pgpipeline
from adapters.blobs import BlobStore
from adapters.credentials import Credentials
from adapters.database import DictPool
from adapters.dicom.export import Exporter, export_study
from adapters.dicom.importcleanup import ImportSweeper
from adapters.dicom.retrieve import Retriever, retrieve_study
from adapters.dicom.storage import InstanceStore
from adapters.jobs import ArqJobs, InlineJobs, JobContext, Jobs, JobTable, ping
from adapters.live import LiveFeed
from adapters.mail.delivery import CHANNEL as MAIL_CHANNEL
from adapters.mail.delivery import MailDelivery, deliver_mail
from adapters.mail.ics import InvitationDelivery
from adapters.mail.senders import MailSender, OutboxSender, SmtpSender
from adapters.notification_prefs import PreferenceStore
from adapters.report.issuer import ReportIssuer, issue_report
from adapters.scheduler import fire_deadlines
from adapters.settings import Settings, conninfo
from application import Relais
from projections.access import PostgresAccessView
from projections.directory import DirectoryProjection, PostgresDirectoryView
from projections.imaging import PostgresImagingView
from projections.inbox import CHANNEL, PostgresInboxView
from projections.mdt import MdtProjection, PostgresMdtView
from projections.milestones import MilestonesProjection, PostgresMilestonesView
from projections.notification_centre import CHANNEL as NOTIFICATIONS_CHANNEL
from projections.notification_centre import NotificationCentre
from projections.runner import PROJECTIONS, open_view
from projections.statistics import PostgresStatisticsView, StatisticsProjection
from web import report_html
from web.app import create_app
from web.authentication import LocalPasswordAuthenticator
from web.names import Names
from web.services import ImagingServices, Services

# Every job a worker (or the in-process runner) knows, by the name it is enqueued under.
JOBS: JobTable = {
    "ping": ping, "retrieve_study": retrieve_study, "export_study": export_study,
    "fire_deadlines": fire_deadlines,  # ctx["deadlines"]: set by `relais worker` (entrypoints/worker.py)
    "deliver_mail": deliver_mail,  # ctx["mail"]: build_mail_delivery(settings, enqueue=False), set by `relais worker`
    "issue_report": issue_report,  # ctx["reports"]: the opinion report PDF of a send (job_context)
}


V = TypeVar("V")


def open_view_as(kind: type[V], name: str, env: dict[str, str]) -> V:
    """The read model `name` (opened without following the log), typed as its view class."""
    view = open_view(name, env)
    assert isinstance(view, kind), (name, type(view))
    return view


def install_process_fixes() -> None:
    """Process-wide fixes of libraries, installed before any connection is opened (idempotent):
    psycopg's pipeline made to finish sending before it waits (`adapters/pgpipeline.py`)."""
    pgpipeline.install()


def build_app(settings: Settings) -> Relais:
    """The Relais application on the configured store (tables created if missing)."""
    install_process_fixes()
    return Relais(env=settings.eventsourcing_env())


@contextmanager
def open_app(settings: Settings) -> Iterator[Relais]:
    """The application for one command, closed (its connections returned) when the command ends."""
    app = build_app(settings)
    try:
        yield app
    finally:
        app.close()


def build_pool(settings: Settings, max_size: int = 10) -> DictPool:
    """A psycopg pool for read models and credentials (rows as dicts)."""
    assert settings.database_url
    install_process_fixes()
    return ConnectionPool(
        conninfo(settings.database_url), min_size=1, max_size=max_size, open=True,
        kwargs={"autocommit": True, "row_factory": dict_row}, name="relais",
    )


def upgrade(settings: Settings) -> list[str]:
    """Creates every table (events, snapshots, read models, tracking, credentials). Idempotent."""
    settings = replace(settings, tables_ready=False)  # whatever RELAIS_TABLES_READY says
    app = build_app(settings)
    done = ["relais_events", "relais_snapshots"]
    env = settings.eventsourcing_env()
    for name in PROJECTIONS:
        view = open_view(name, env)
        view.create_table()
        view.datastore.close()
        done.append(f"{name} (+ {name}_tracking)")
    pool = build_pool(settings, max_size=1)
    try:
        Credentials(pool).create_table()
        PreferenceStore(pool).create_table()
        with pool.connection() as conn:
            # Per-topic head and lag of the projections (status on every /health call).
            conn.execute(
                "CREATE INDEX IF NOT EXISTS relais_events_topic_idx ON relais_events (topic, notification_id)"
            )
    finally:
        pool.close()
    done.append("relais_credentials")
    done.append("notification_preferences")
    done.append("relais_events_topic_idx")
    app.close()
    return done


def job_context(settings: Settings, app: Relais, store: InstanceStore | None = None) -> JobContext:
    """What the job functions find in their `ctx`: the retriever and the exporter on `app` and the
    process's instance store (one made here when none is given), the report issuer (PDFs in the blob store)."""
    store = store or InstanceStore(settings.dicom_root)
    return {
        "retriever": Retriever(app=app, store=store, our_aet=settings.dicom_aet),
        "exporter": Exporter(app=app, store=store, our_aet=settings.dicom_aet),
        "reports": ReportIssuer(app, BlobStore(settings.data_dir), report_html.render),
    }


def build_jobs(settings: Settings, app: Relais, store: InstanceStore) -> Jobs:
    """Jobs on Redis for `relais worker` when configured, else run in this process on `app` and `store`."""
    if settings.redis_url:
        return ArqJobs(settings.redis_url)
    return InlineJobs(JOBS, job_context(settings, app, store))


def session_store(settings: Settings) -> Store:
    """Web sessions: in Redis when configured (shared by processes), else in this process's memory."""
    if settings.redis_url:
        return RedisStore.with_client(url=settings.redis_url, namespace="relais_sessions")
    return MemoryStore()


def build_web_services(settings: Settings) -> Services:
    """Everything one web process's pages use, built now (the web app closes it when it stops)."""
    relais = build_app(settings)
    pool = build_pool(settings)
    credentials = Credentials(pool)
    env = dict(settings.eventsourcing_env(), CREATE_TABLE="no")  # tables are made by `relais db upgrade`, no DDL here
    small = dict(settings.small_pool_env(), CREATE_TABLE="no")
    directory = PostgresDirectoryView.on_pool(pool, DirectoryProjection.name)  # names and DICOM nodes alike
    store = InstanceStore(settings.dicom_root)
    imaging = ImagingServices(
        studies=open_view_as(PostgresImagingView, "imaging", small), directory=directory,
        store=store, jobs=build_jobs(settings, relais, store), our_aet=settings.dicom_aet,
    )
    return Services(
        settings=settings, relais=relais, pool=pool, credentials=credentials,
        authenticator=LocalPasswordAuthenticator(relais, credentials),
        inbox=open_view_as(PostgresInboxView, "inbox", env), access_log=open_view_as(PostgresAccessView, "access", env),
        names=Names(directory), blobs=BlobStore(settings.data_dir),
        statistics=PostgresStatisticsView.on_pool(pool, StatisticsProjection.name),
        imaging=imaging,
        session_store=session_store(settings),
        live=LiveFeed(conninfo(settings.database_url or ""), CHANNEL),
        notifications=NotificationCentre(pool),
        notification_feed=LiveFeed(conninfo(settings.database_url or ""), NOTIFICATIONS_CHANNEL,
                                   application_name="relais-live-notifications"),
        preferences=PreferenceStore(pool),
        mdt=PostgresMdtView.on_pool(pool, MdtProjection.name),
        milestones=PostgresMilestonesView.on_pool(pool, MilestonesProjection.name),
    )


def web_secret(settings: Settings) -> str:
    """The key signing CSRF cookies: the configured one, else a random one for this process."""
    return settings.secret_key or secrets.token_urlsafe(32)


def build_web_app(settings: Settings) -> Litestar:
    """The web application of one process, on services built for it now; it sweeps abandoned imaging
    imports (the web process owns them) at start and every hour."""
    app = create_app(build_web_services(settings), web_secret(settings))
    sweeper = ImportSweeper(settings.data_dir / "imports")
    app.on_startup.append(sweeper.start)
    app.on_shutdown.insert(0, sweeper.stop)
    return app


def mail_sender(settings: Settings) -> MailSender:
    """SMTP when RELAIS_SMTP_URL is set, else .eml files in <data_dir>/outbox."""
    if settings.smtp_url:
        return SmtpSender(settings.smtp_url, ca_file=settings.smtp_ca_file, mail_from=settings.mail_from)
    return OutboxSender(settings.outbox)


def build_mail_delivery(settings: Settings, *, enqueue: bool = True) -> MailDelivery:
    """The notification mails' delivery loop (`relais scheduler`): woken by NOTIFY relais_mail, each
    attempt an arq job when Redis is configured (`enqueue`), else run in the loop's process. The worker
    builds it with `enqueue=False` to run the attempts. Its owner calls `close()`."""
    assert settings.database_url
    pool, sender = build_pool(settings, max_size=4), mail_sender(settings)
    # the MDT sessions' invitations go out on the same passes, in the loop's process (not as jobs)
    invitations = InvitationDelivery(pool, sender, mail_from=settings.mail_from, base_url=settings.base_url)
    return MailDelivery(
        pool, sender, mail_from=settings.mail_from, base_url=settings.base_url,
        feed=LiveFeed(conninfo(settings.database_url), MAIL_CHANNEL, application_name="relais-mail") if enqueue else None,
        jobs=ArqJobs(settings.redis_url) if settings.redis_url and enqueue else None,
        also=[invitations.tick] if enqueue else [],
    )
