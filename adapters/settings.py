"""Settings of a Relais process (a value object: `entrypoints/settings.py` reads them from the environment)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    data_dir: Path = Path("var")
    cipher_key: str | None = None
    redis_url: str | None = None
    secret_key: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    dicom_host: str = "127.0.0.1"
    dicom_port: int = 11112
    dicom_aet: str = "RELAIS"
    dicom_workers: int = 1
    dicom_max_associations_per_peer: int = 8  # connections at a time from one address; more are refused
    import_user_max_bytes: int = 20 * 1024**3  # one user's imaging imports in progress, in total on disk
    secure_cookies: bool = False
    log_level: str = "INFO"
    tables_ready: bool = False
    trusted_proxies: tuple[str, ...] = ()  # addresses/networks whose X-Forwarded-For is believed
    smtp_url: str | None = None  # smtp://user:pass@host:587 (STARTTLS) or smtps://… ; None: mails to <data_dir>/outbox
    smtp_ca_file: Path | None = None  # a CA bundle to trust for the SMTP server's certificate (an internal CA)
    mail_from: str = "Relais <relais@localhost>"
    public_url: str = ""  # the address users open, for links in mails; "" : http://<http_host>:<http_port>
    extra_env: dict[str, str] = field(default_factory=dict)

    def with_database(self, url: str) -> Settings:
        return replace(self, database_url=url)

    @property
    def base_url(self) -> str:
        """Where users reach the web, without a trailing slash (links in mails)."""
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    @property
    def outbox(self) -> Path:
        """Where mails are written as .eml files when no SMTP server is configured (`<data_dir>/outbox`)."""
        return self.data_dir / "outbox"

    @property
    def dicom_root(self) -> Path:
        """Where received DICOM instances live (`<data_dir>/dicom`)."""
        return self.data_dir / "dicom"

    def small_pool_env(self) -> dict[str, str]:
        """eventsourcing env for the read-only views of a process: one connection, two more under load
        (the platform's processes share PostgreSQL's max_connections)."""
        return dict(self.eventsourcing_env(), POSTGRES_POOL_SIZE="1", POSTGRES_MAX_OVERFLOW="2")

    def eventsourcing_env(self) -> dict[str, str]:
        """The `env` given to eventsourcing applications and projection runners."""
        if not self.database_url:
            raise SettingsError("aucune base de données résolue (RELAIS_DATABASE_URL)")
        env = postgres_env(self.database_url)
        env["PERSISTENCE_MODULE"] = "eventsourcing.postgres"
        env["POSTGRES_POOL_SIZE"] = "2"  # connections kept open per pool (one per datastore)
        env["POSTGRES_MAX_OVERFLOW"] = "8"  # more on demand, closed when idle
        env["POSTGRES_CONNECT_TIMEOUT"] = "5"
        env["POSTGRES_LOCK_TIMEOUT"] = "5"
        if self.tables_ready:
            # created by `relais db upgrade` / the parent process; processes starting together
            # would otherwise all replace eventsourcing's insert function at once and collide
            # ("tuple concurrently updated")
            env["CREATE_TABLE"] = "no"
        if self.cipher_key:
            env["CIPHER_TOPIC"] = "eventsourcing.cryptography:AESCipher"
            env["CIPHER_KEY"] = self.cipher_key
        env.update(self.extra_env)
        return env


def postgres_env(url: str) -> dict[str, str]:
    """POSTGRES_* variables for eventsourcing from a PostgreSQL URL (host may be a socket folder)."""
    u = urlparse(url)
    if u.scheme not in ("postgresql", "postgres"):
        raise SettingsError("RELAIS_DATABASE_URL : URL postgresql://… attendue")
    query = parse_qs(u.query)
    host = unquote(u.hostname or "") or query.get("host", [""])[0] or "127.0.0.1"
    return {
        "POSTGRES_DBNAME": unquote(u.path.lstrip("/")) or "postgres",
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(u.port or query.get("port", ["5432"])[0]),
        "POSTGRES_USER": unquote(u.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(u.password or ""),
    }


def conninfo(url: str) -> str:
    """A libpq connection string for psycopg from the same URL."""
    e = postgres_env(url)
    parts = {
        "dbname": e["POSTGRES_DBNAME"], "host": e["POSTGRES_HOST"], "port": e["POSTGRES_PORT"],
        "user": e["POSTGRES_USER"], "connect_timeout": "5",
    }
    if e["POSTGRES_PASSWORD"]:
        parts["password"] = e["POSTGRES_PASSWORD"]
    return " ".join(f"{k}='{v}'" for k, v in parts.items())
