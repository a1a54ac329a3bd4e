"""A real SMTP server on loopback for tests and benchmarks: aiosmtpd with STARTTLS (or implicit TLS)
and AUTH, on a self-signed certificate made here with `cryptography`, recording what it accepts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USER, PASSWORD = "relais", "s3cret mot de passe"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (also its own CA): (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relais-test-smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    at: float

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Recorder:
    """The server's handler: accepts (or refuses, per `refuse`) and records every message."""

    received: list[Received] = field(default_factory=list)
    refuse: str | None = None  # e.g. "451 4.3.0 essayez plus tard": DATA answered with it
    on_message: Callable[[Received], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return self.refuse
        item = Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content),
                        time.time())  # wall clock: comparable with the database's times
        with self.lock:
            self.received.append(item)
        if self.on_message is not None:
            self.on_message(item)
        return "250 2.0.0 OK"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.received)} mails received, {count} expected")


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == USER.encode() and data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TlsController(Controller):
    """aiosmtpd's controller, whose readiness probe also speaks implicit TLS when the server does."""

    def __init__(self, *args: Any, implicit: ssl.SSLContext | None = None, **kwargs: Any):
        super().__init__(*args, ssl_context=implicit, **kwargs)
        self._implicit = implicit

    def _trigger_server(self) -> None:
        if self._implicit is None:
            return super()._trigger_server()
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        with socket.create_connection((self.hostname, self.port), timeout=5) as raw:
            with client.wrap_socket(raw) as s:
                s.recv(1024)
        return None


class SmtpServer:
    """aiosmtpd on 127.0.0.1: STARTTLS required (or implicit TLS with `implicit_tls`), AUTH required."""

    def __init__(self, folder: Path, implicit_tls: bool = False):
        self.cert, self.key = make_certificate(folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        self.context = context
        self.recorder = Recorder()
        self.port = free_port()
        self.implicit_tls = implicit_tls
        self.controller = self._controller()
        self.running = False

    def _controller(self) -> TlsController:
        kwargs: dict[str, Any] = dict(auth_required=True, authenticator=authenticate)
        if self.implicit_tls:
            # aiosmtpd 1.4 does not see Python 3.11's TLS transport as TLS: it would hide AUTH (the
            # connection is TLS from the first byte all the same)
            kwargs["auth_require_tls"] = False
            return TlsController(self.recorder, hostname="127.0.0.1", port=self.port, implicit=self.context, **kwargs)
        return TlsController(self.recorder, hostname="127.0.0.1", port=self.port, tls_context=self.context,
                             require_starttls=True, **kwargs)

    @property
    def url(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"{scheme}://{USER}:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{self.port}"

    def start(self) -> SmtpServer:
        """Starts (or starts again, on the same port, after `stop`) the server."""
        if not self.running:
            self.controller = self._controller()
            self.controller.start()
            self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self.controller.stop()
            self.running = False
