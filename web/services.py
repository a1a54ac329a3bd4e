"""The objects a web process shares between requests: application, pool, credentials, authenticator."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import ConnectionPool

from adapters.blobs import BlobStore
from adapters.bootstrap import build_app, build_pool
from adapters.credentials import Credentials
from adapters.settings import Settings
from application import Relais
from projections.access import PostgresAccessView
from projections.inbox import PostgresInboxView
from projections.runner import open_view
from web.auth import Authenticator, LocalPasswordAuthenticator
from web.names import Names


@dataclass
class Services:
    settings: Settings
    relais: Relais
    pool: ConnectionPool
    credentials: Credentials
    authenticator: Authenticator
    inbox: PostgresInboxView
    access_log: PostgresAccessView
    names: Names
    blobs: BlobStore

    def close(self) -> None:
        self.pool.close()
        self.relais.close()
        self.inbox.datastore.close()
        self.access_log.datastore.close()


def build_services(settings: Settings) -> Services:
    """Builds the infrastructure of one web process from its settings."""
    relais = build_app(settings)
    pool = build_pool(settings)
    credentials = Credentials(pool)
    env = dict(settings.eventsourcing_env(), CREATE_TABLE="no")  # tables are made by `relais db upgrade`, no DDL here
    return Services(
        settings=settings, relais=relais, pool=pool, credentials=credentials,
        authenticator=LocalPasswordAuthenticator(relais, credentials),
        inbox=open_view("inbox", env), access_log=open_view("access", env),  # type: ignore[arg-type]
        names=Names(pool), blobs=BlobStore(settings.data_dir),
    )
