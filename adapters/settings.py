"""Settings of a Relais process, read once from the environment by a composition root."""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

ENV_DOC = {
    "RELAIS_DATABASE_URL": "PostgreSQL URL (postgresql://user:password@host:port/dbname). Unset: embedded PostgreSQL under RELAIS_DATA_DIR.",
    "RELAIS_DATA_DIR": "Data folder (embedded database, blobs, received DICOM). Default ./var",
    "RELAIS_CIPHER_KEY": "Base64 AES key (16, 24 or 32 bytes): event payloads encrypted at rest with AES-GCM.",
    "RELAIS_REDIS_URL": "Redis URL for jobs (arq) and web sessions. Unset: jobs run in-process, sessions in memory.",
    "RELAIS_SECRET_KEY": "Secret for signing session and CSRF cookies (32+ characters). Unset: random per start (sessions lost on restart).",
    "RELAIS_HTTP_HOST": "Web listen address. Default 127.0.0.1",
    "RELAIS_HTTP_PORT": "Web listen port. Default 8000",
    "RELAIS_DICOM_HOST": "DICOM node listen address. Default 127.0.0.1",
    "RELAIS_DICOM_PORT": "DICOM node listen port. Default 11112",
    "RELAIS_DICOM_AET": "AE title of the platform's DICOM node. Default RELAIS",
    "RELAIS_DICOM_WORKERS": "Processes serving DICOM associations (one accepts, the least busy serves; parallel associations need several). Default: the number of CPUs, at most 4",
    "RELAIS_SECURE_COOKIES": "1 to mark cookies Secure (behind HTTPS). Default 0",
    "RELAIS_LOG_LEVEL": "Python log level. Default INFO",
    "RELAIS_TABLES_READY": "1: the tables exist, do not create them (set by relais up and the DICOM node for the processes they start). Default unset",
}


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
    secure_cookies: bool = False
    log_level: str = "INFO"
    tables_ready: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if environ is None else environ)

        def port(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise SettingsError(f"{name} : port invalide « {raw} »")
            return int(raw)

        key = env.get("RELAIS_CIPHER_KEY") or None
        if key:
            try:
                raw = base64.b64decode(key, validate=True)
            except (binascii.Error, ValueError):
                raise SettingsError("RELAIS_CIPHER_KEY : base64 attendu") from None
            if len(raw) not in (16, 24, 32):
                raise SettingsError("RELAIS_CIPHER_KEY : clé AES de 16, 24 ou 32 octets attendue")
        secret = env.get("RELAIS_SECRET_KEY") or None
        if secret and len(secret) < 32:
            raise SettingsError("RELAIS_SECRET_KEY : 32 caractères au moins")
        aet = env.get("RELAIS_DICOM_AET", "RELAIS").strip()
        if not 0 < len(aet) <= 16:
            raise SettingsError("RELAIS_DICOM_AET : 1 à 16 caractères")
        workers_raw = env.get("RELAIS_DICOM_WORKERS", "").strip()
        if workers_raw and (not workers_raw.isdigit() or not 1 <= int(workers_raw) <= 64):
            raise SettingsError(f"RELAIS_DICOM_WORKERS : nombre de 1 à 64 attendu, pas « {workers_raw} »")
        workers = int(workers_raw) if workers_raw else max(1, min(os.cpu_count() or 1, 4))
        url = env.get("RELAIS_DATABASE_URL") or None
        if url:
            postgres_env(url)  # validates
        return cls(
            database_url=url,
            data_dir=Path(env.get("RELAIS_DATA_DIR") or "var").resolve(),
            cipher_key=key,
            redis_url=env.get("RELAIS_REDIS_URL") or None,
            secret_key=secret,
            http_host=env.get("RELAIS_HTTP_HOST") or "127.0.0.1",
            http_port=port("RELAIS_HTTP_PORT", 8000),
            dicom_host=env.get("RELAIS_DICOM_HOST") or "127.0.0.1",
            dicom_port=port("RELAIS_DICOM_PORT", 11112),
            dicom_aet=aet,
            dicom_workers=workers,
            secure_cookies=env.get("RELAIS_SECURE_COOKIES", "0") in ("1", "true", "yes"),
            log_level=(env.get("RELAIS_LOG_LEVEL") or "INFO").upper(),
            tables_ready=env.get("RELAIS_TABLES_READY", "") == "1",
        )

    def with_database(self, url: str) -> "Settings":
        return replace(self, database_url=url)

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
