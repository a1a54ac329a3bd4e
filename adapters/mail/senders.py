"""Where mails go: an SMTP server (aiosmtplib, STARTTLS required or implicit TLS), or the outbox
folder as `.eml` files when no server is configured (the embedded default: `make run` shows them)."""

from __future__ import annotations

import asyncio
import os
import re
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from adapters.private_files import create_private, private_dir
from adapters.settings import SettingsError

SMTP_TIMEOUT = 30.0  # seconds for each SMTP step (connect, TLS, each command)


class MailSender(Protocol):
    """Hands one mail over; raises on refusal or failure (the delivery loop retries)."""

    async def send(self, message: EmailMessage) -> None: ...


class PermanentMailError(Exception):
    """The server refused the mail for good (5xx): retrying later is still tried, but the error says so."""


@dataclass(frozen=True)
class SmtpSender:
    """Sends over SMTP: `smtp://` requires STARTTLS (port 587 by default), `smtps://` is TLS from the
    first byte (465); user and password from the URL; `ca_file` is the CA bundle trusted for the
    server's certificate (else the system's)."""

    url: str
    ca_file: Path | None = None
    mail_from: str = "relais@localhost"
    timeout: float = SMTP_TIMEOUT
    _tls: ssl.SSLContext = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        u = urlparse(self.url)
        if u.scheme not in ("smtp", "smtps") or not u.hostname:
            raise SettingsError("RELAIS_SMTP_URL : smtp://utilisateur:motdepasse@hôte:587 ou smtps://… attendu")
        object.__setattr__(self, "_tls", self.tls_context())  # once: a CA file that cannot be read fails at start

    @property
    def implicit_tls(self) -> bool:
        return urlparse(self.url).scheme == "smtps"

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    async def send(self, message: EmailMessage) -> None:
        import aiosmtplib

        u = urlparse(self.url)
        sender = parseaddr(str(message["From"] or self.mail_from))[1] or parseaddr(self.mail_from)[1]
        await aiosmtplib.send(
            message, sender=sender, recipients=[parseaddr(str(message["To"]))[1]],
            hostname=u.hostname, port=u.port or (465 if self.implicit_tls else 587),
            username=unquote(u.username) if u.username else None,
            password=unquote(u.password) if u.password else None,
            use_tls=self.implicit_tls, start_tls=False if self.implicit_tls else True,  # smtp://: STARTTLS or nothing
            tls_context=self._tls, timeout=self.timeout,
        )


SAFE = re.compile(r"[^A-Za-z0-9_.@-]+")


@dataclass(frozen=True)
class OutboxSender:
    """Writes each mail as `<outbox>/<UTC timestamp>-<id>.eml`, created 0600 in a 0700 folder, whole or
    not at all (written to a hidden temporary name, flushed, then renamed)."""

    folder: Path

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self.write, message)

    def write(self, message: EmailMessage) -> Path:
        folder = private_dir(self.folder)
        os.chmod(folder, 0o700)
        ident = SAFE.sub("", str(message["Message-ID"] or "").strip("<>").partition("@")[0]) or "mail"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        final = folder / f"{stamp}-{ident}.eml"
        temporary = folder / f".{final.name}.tmp"
        data = message.as_bytes()
        fd = create_private(temporary)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, final)
        return final


@dataclass(frozen=True)
class OutboxEntry:
    name: str
    size: int
    modified: datetime


def list_outbox(folder: Path, limit: int = 200) -> list[OutboxEntry]:
    """The outbox's mails, newest first (at most `limit`)."""
    if not folder.is_dir():
        return []
    entries = []
    for path in folder.glob("*.eml"):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        entries.append(OutboxEntry(path.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
    entries.sort(key=lambda e: e.name, reverse=True)
    return entries[:limit]


NAME = re.compile(r"^[0-9]{8}T[0-9]{12}Z-[A-Za-z0-9_.@-]+\.eml$")


def read_outbox(folder: Path, name: str) -> str | None:
    """One outbox mail as text, or None when the name is not an outbox file's (no path escapes)."""
    if not NAME.match(name):
        return None
    path = folder / name
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return None
