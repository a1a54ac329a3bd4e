"""The objects a web process shares between requests: application, pool, credentials, authenticator."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import ConnectionPool

from adapters.bootstrap import build_app, build_pool
from adapters.credentials import Credentials
from adapters.settings import Settings
from application import Relais
from web.auth import Authenticator, LocalPasswordAuthenticator


@dataclass
class Services:
    settings: Settings
    relais: Relais
    pool: ConnectionPool
    credentials: Credentials
    authenticator: Authenticator

    def close(self) -> None:
        self.pool.close()
        self.relais.close()


def build_services(settings: Settings) -> Services:
    """Builds the infrastructure of one web process from its settings."""
    relais = build_app(settings)
    pool = build_pool(settings)
    credentials = Credentials(pool)
    return Services(
        settings=settings, relais=relais, pool=pool, credentials=credentials,
        authenticator=LocalPasswordAuthenticator(relais, credentials),
    )
