"""Settings read from the environment: the one place (with the process entry points) that reads it."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from adapters.settings import Settings, SettingsError, postgres_env

ENV_DOC = {
    "RELAIS_DATABASE_URL": (
        "PostgreSQL URL (postgresql://user:password@host:port/dbname). Unset: embedded PostgreSQL under RELAIS_DATA_DIR."
    ),
    "RELAIS_DATA_DIR": "Data folder (embedded database, blobs, received DICOM). Default ./var",
    "RELAIS_CIPHER_KEY": "Base64 AES key (16, 24 or 32 bytes): event payloads encrypted at rest with AES-GCM.",
    "RELAIS_REDIS_URL": "Redis URL for jobs (arq) and web sessions. Unset: jobs run in-process, sessions in memory.",
    "RELAIS_SECRET_KEY": (
        "Secret for signing session and CSRF cookies (32+ characters). Unset: random per start (sessions lost on restart)."
    ),
    "RELAIS_HTTP_HOST": "Web listen address. Default 127.0.0.1",
    "RELAIS_HTTP_PORT": "Web listen port. Default 8000",
    "RELAIS_DICOM_HOST": "DICOM node listen address. Default 127.0.0.1",
    "RELAIS_DICOM_PORT": "DICOM node listen port. Default 11112",
    "RELAIS_DICOM_AET": "AE title of the platform's DICOM node. Default RELAIS",
    "RELAIS_DICOM_WORKERS": (
        "Processes serving DICOM associations (one accepts, the least busy serves; parallel associations need several). "
        "Default: the number of CPUs, at most 4"
    ),
    "RELAIS_IMPORT_USER_MAX_BYTES": (
        "Bytes one user's imaging imports in progress (uploaded, not yet confirmed) may take in total. Default 20 GiB"
    ),
    "RELAIS_DICOM_MAX_ASSOCIATIONS_PER_PEER": (
        "DICOM associations at a time from one address; more are refused and logged. Default 8"
    ),
    "RELAIS_SECURE_COOKIES": "1 to mark cookies Secure (behind HTTPS). Default 0",
    "RELAIS_LOG_LEVEL": "Python log level. Default INFO",
    "RELAIS_TABLES_READY": (
        "1: the tables exist, do not create them (set by relais up and the DICOM node for the processes they start). "
        "Default unset"
    ),
    "RELAIS_SMTP_URL": (
        "Mail server: smtp://user:password@host:587 (STARTTLS) or smtps://user:password@host:465 (TLS). "
        "Unset: mails are written as .eml files under RELAIS_DATA_DIR/outbox/ and listed on /admin/mails"
    ),
    "RELAIS_SMTP_CA_FILE": "PEM file of the CA that signed the mail server's certificate (an internal CA). Default: system CAs",
    "RELAIS_MAIL_FROM": "Sender of the platform's mails. Default « Relais <relais@localhost> »",
    "RELAIS_PUBLIC_URL": (
        "Address users open (https://relais.example.org), for the links in mails. Default http://RELAIS_HTTP_HOST:RELAIS_HTTP_PORT"
    ),
    "RELAIS_TRUSTED_PROXIES": (
        "Comma-separated addresses or CIDR networks of reverse proxies whose X-Forwarded-For gives the client address "
        "(login throttling). Default none: the socket peer is the client"
    ),
}


def settings_from_environ(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of this process from `environ` (default: the process environment), validated."""
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
    per_peer_raw = env.get("RELAIS_DICOM_MAX_ASSOCIATIONS_PER_PEER", "").strip()
    if per_peer_raw and (not per_peer_raw.isdigit() or not 1 <= int(per_peer_raw) <= 1000):
        raise SettingsError(
            f"RELAIS_DICOM_MAX_ASSOCIATIONS_PER_PEER : nombre de 1 à 1000 attendu, pas « {per_peer_raw} »"
        )
    import_max_raw = env.get("RELAIS_IMPORT_USER_MAX_BYTES", "").strip()
    if import_max_raw and (not import_max_raw.isdigit() or int(import_max_raw) < 1024**2):
        raise SettingsError(f"RELAIS_IMPORT_USER_MAX_BYTES : nombre d'octets (1 Mio au moins) attendu, pas « {import_max_raw} »")
    proxies: tuple[str, ...] = ()
    for proxy in (p.strip() for p in env.get("RELAIS_TRUSTED_PROXIES", "").split(",") if p.strip()):
        try:  # normalised: uvicorn takes "10.0.0.0/8", not "10.0.0.1/8"
            proxies += (str(ipaddress.ip_network(proxy, strict=False)),)
        except ValueError:
            raise SettingsError(f"RELAIS_TRUSTED_PROXIES : adresse ou réseau invalide « {proxy} »") from None
    url = env.get("RELAIS_DATABASE_URL") or None
    if url:
        postgres_env(url)  # validates
    smtp = (env.get("RELAIS_SMTP_URL") or "").strip() or None
    if smtp:
        parsed = urlsplit(smtp)
        if parsed.scheme not in ("smtp", "smtps") or not parsed.hostname:
            raise SettingsError("RELAIS_SMTP_URL : smtp://utilisateur:motdepasse@hôte:587 ou smtps://… attendu")
    ca_file = (env.get("RELAIS_SMTP_CA_FILE") or "").strip()
    if ca_file and not Path(ca_file).is_file():
        raise SettingsError(f"RELAIS_SMTP_CA_FILE : fichier introuvable « {ca_file} »")
    public = (env.get("RELAIS_PUBLIC_URL") or "").strip()
    if public and urlsplit(public).scheme not in ("http", "https"):
        raise SettingsError("RELAIS_PUBLIC_URL : adresse http(s)://… attendue")
    return Settings(
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
        dicom_max_associations_per_peer=int(per_peer_raw) if per_peer_raw else 8,
        import_user_max_bytes=int(import_max_raw) if import_max_raw else 20 * 1024**3,
        secure_cookies=env.get("RELAIS_SECURE_COOKIES", "0") in ("1", "true", "yes"),
        log_level=(env.get("RELAIS_LOG_LEVEL") or "INFO").upper(),
        tables_ready=env.get("RELAIS_TABLES_READY", "") == "1",
        trusted_proxies=proxies,
        smtp_url=smtp,
        smtp_ca_file=Path(ca_file) if ca_file else None,
        mail_from=(env.get("RELAIS_MAIL_FROM") or "").strip() or "Relais <relais@localhost>",
        public_url=public,
    )
