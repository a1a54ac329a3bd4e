"""`relais up`: the whole platform as one process tree, stopped cleanly on Ctrl-C / SIGTERM."""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger("relais.up")

PR_SET_PDEATHSIG = 1
STOP_GRACE_SECONDS = 10.0
FAST_FAILURE_SECONDS = 10.0
MAX_FAST_FAILURES = 3


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Children get SIGTERM if the supervisor dies, so that no orphan is left behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    name: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    fast_failures: int = 0
    restarts: int = 0
    history: list[int] = field(default_factory=list)


class Supervisor:
    """Starts each part as a `relais` subprocess (`command` + the child's arguments), restarts one
    that dies, stops all together."""

    def __init__(self, children: list[Child], env: dict[str, str], command: list[str]):
        self.children = children
        self.env = env
        self.command = command
        self.stop = threading.Event()
        self.failed: str | None = None

    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(
            [*self.command, *child.args],
            env={**self.env, "PGAPPNAME": f"relais-{child.name}"}, preexec_fn=die_with_parent,
            start_new_session=True,
        )
        child.started = time.monotonic()
        log.info("%s démarré (pid %s)", child.name, child.process.pid)

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def watch(self) -> None:
        """Until stopped: restarts children that exit; gives up on one that keeps failing at start."""
        while not self.stop.wait(0.5):
            for child in self.children:
                code = child.process.poll() if child.process else None
                if code is None:
                    continue
                lived = time.monotonic() - child.started
                child.fast_failures = child.fast_failures + 1 if lived < FAST_FAILURE_SECONDS else 0
                log.error("%s s'est arrêté (code %s) après %.1f s", child.name, code, lived)
                if child.fast_failures >= MAX_FAST_FAILURES:
                    self.failed = f"{child.name} échoue au démarrage ({child.fast_failures} fois) : arrêt de la plateforme"
                    log.error(self.failed)
                    self.stop.set()
                    return
                child.restarts += 1
                time.sleep(min(30.0, 2.0 ** child.fast_failures))
                self._spawn(child)

    def shutdown(self) -> None:
        """SIGTERM to every child, SIGKILL to those still alive after the grace period."""
        alive = [(c.name, c.process) for c in self.children if c.process and c.process.poll() is None]
        for _, process in alive:
            try:
                process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, process in alive:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
                log.info("%s arrêté", name)
            except subprocess.TimeoutExpired:
                log.warning("%s ne répond pas : arrêt forcé", name)
                process.kill()
                process.wait()


class PortUnavailableError(RuntimeError):
    """A port the platform must listen on is taken (or its address is not this machine's)."""


def check_ports(ports: Iterable[tuple[str, str, int, str]]) -> None:
    """Raises PortUnavailableError naming the first of `ports` — (what, host, port, variable) — that
    cannot be listened on now; binds as the servers do (SO_REUSEADDR: a port in TIME_WAIT is free)."""
    for what, host, port, variable in ports:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise PortUnavailableError(
                        f"le port {what} {host}:{port} est déjà utilisé par un autre programme : "
                        f"arrêtez-le ou choisissez un autre port ({variable})"
                    ) from None
                raise PortUnavailableError(
                    f"le port {what} {host}:{port} ne peut pas être ouvert ({e.strerror}) : vérifiez l'adresse et le port ({variable})"
                ) from None


def wait_healthy(url: str, timeout: float, stop: threading.Event, pid: Callable[[], int | None]) -> bool:
    """True once `url` (a /health) answers 200 from our own web process: its body's `pid` is `pid()`,
    the web child's. Another server answering on the port (taken after the check) is not ready."""
    deadline = time.monotonic() + timeout
    warned = False
    while time.monotonic() < deadline and not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback health URL
                answered = json.load(r).get("pid") if r.status == 200 else None
            expected = pid()
            if answered is not None and answered == expected:
                return True
            if not warned:
                log.error("un autre serveur que le service web de Relais (pid %s) répond sur %s", expected, url)
                warned = True
        except (OSError, ValueError, AttributeError):
            pass
        time.sleep(0.1)
    return False


def install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        log.info("signal %s reçu : arrêt en cours", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, handler)


def child_env(base: Mapping[str, str], database_url: str, secret_key: str) -> dict[str, str]:
    env = dict(base)
    env["RELAIS_DATABASE_URL"] = database_url
    env["RELAIS_SECRET_KEY"] = secret_key
    env["RELAIS_TABLES_READY"] = "1"  # relais up ran the upgrade before starting its children
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
