"""The DICOM node over several processes: one accepts the connections, the least busy worker
serves each association (pynetdicom runs one Python thread per association, and a process uses
one core at a time: parallel associations need processes).

The accepting process listens on RELAIS_DICOM_PORT and hands every accepted connection to a
worker over a Unix socket pair (`socket.send_fds`); the worker serves it with its own
pynetdicom server, reading connections from that pair instead of listening. Workers tell the
acceptor when an association ends, so that the next one goes to the least busy worker. A worker
that dies is started again; the connections it held are lost (their senders retry), the others
go on.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.dicom.reactor import NodeServer
from adapters.supervisor import die_with_parent

log = logging.getLogger("relais.dicom")

CHANNEL_FD_ENV = "RELAIS_DICOM_CHANNEL_FD"
ENDED = b"-"  # worker -> acceptor: one of its associations is over, "-<peer address>\n"
READY = b"R"  # worker -> acceptor: its server is serving, connections may come
STOP_GRACE_SECONDS = 10.0
RESTART_DELAY_SECONDS = 1.0
FAST_FAILURE_SECONDS = 10.0
MAX_FAST_FAILURES = 3  # quick failures in a row that stop a node none of whose workers ever served
MAX_RESTART_DELAY_SECONDS = 30.0


class ChannelServer(NodeServer):
    """A pynetdicom server whose connections arrive over `channel` (a Unix socket) instead of
    being accepted on a listening socket; `address` is the public one, for the association's
    records only."""

    def __init__(self, *args: Any, channel: socket.socket, **kwargs: Any) -> None:
        self.channel = channel
        self.lost_acceptor = threading.Event()
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        if self.socket is not None:  # the listening socket socketserver made: not used
            self.socket.close()
        self.socket = self.channel

    def server_activate(self) -> None:
        pass

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        msg, fds, _flags, _addr = socket.recv_fds(self.channel, 64, 4)
        if not fds:
            if not msg:  # the acceptor is gone: nothing more will come
                self.lost_acceptor.set()
            raise OSError("pas de connexion reçue")
        for extra in fds[1:]:
            os.close(extra)
        conn = socket.socket(fileno=fds[0])
        conn.setblocking(True)
        if self.ae.network_timeout is not None:
            conn.settimeout(self.ae.network_timeout)
        try:
            return conn, conn.getpeername()
        except OSError:
            conn.close()
            self.ended(msg[1:].decode("ascii", "replace"))  # the acceptor sends "+<peer address>"
            raise

    def ready(self) -> None:
        """Tells the acceptor that this worker serves: connections are handed only to such workers."""
        self.channel.send(READY)

    def ended(self, host: str) -> None:
        """Tells the acceptor that one of this worker's connections, from `host`, is over."""
        try:
            self.channel.send(ENDED + host.encode("ascii", "replace") + b"\n")
        except OSError:
            pass


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    channel: socket.socket | None = None
    active: int = 0
    ready: bool = False
    started: float = 0.0
    dispatched: int = 0
    fast_failures: int = 0
    peers: Counter[str] = field(default_factory=Counter)  # its connections per peer address
    pending: bytes = b""  # the start of a message not yet whole


class Acceptor:
    """Accepts on (host, port) and dispatches each connection to the least busy of `count`
    workers, each a `relais scp` process started with the `RELAIS_DICOM_CHANNEL_FD` variable. At
    most `per_peer` connections at a time come from one address: more are closed at once, logged."""

    def __init__(
        self, *, host: str, port: int, count: int, env: Mapping[str, str], command: list[str], per_peer: int | None = 8,
    ):
        self.host, self.port, self.count, self.per_peer = host, port, count, per_peer
        self.peers: Counter[str] = Counter()
        self.env = dict(env)
        self.command = command  # starts one worker: `relais scp`, told its channel by CHANNEL_FD_ENV
        self.workers = [_Worker(i) for i in range(count)]
        self.listener: socket.socket | None = None
        self.selector = selectors.DefaultSelector()
        self.failed: str | None = None
        self.served = False  # some worker was ready once: the configuration works

    # ------------------------------------------------------------------ workers

    def _spawn(self, worker: _Worker) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            env = {**self.env, CHANNEL_FD_ENV: str(theirs.fileno()),
                   "PGAPPNAME": f"relais-dicom-{worker.index + 1}"}
            worker.process = subprocess.Popen(
                self.command, env=env,
                pass_fds=[theirs.fileno()], preexec_fn=die_with_parent,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        worker.channel, worker.active, worker.ready, worker.started = ours, 0, False, time.monotonic()
        self.selector.register(ours, selectors.EVENT_READ, worker)
        log.info("nœud DICOM : processus %d/%d démarré (pid %s)", worker.index + 1, self.count, worker.process.pid)

    def _retire(self, worker: _Worker) -> None:
        self.peers -= worker.peers  # its connections are lost with it
        worker.peers.clear()
        worker.pending = b""
        if worker.channel is not None:
            self.selector.unregister(worker.channel)
            worker.channel.close()
            worker.channel = None
        worker.ready = False

    def _check_workers(self, stop: threading.Event) -> None:
        for w in self.workers:
            code = w.process.poll() if w.process else None
            if w.process is not None and code is None:
                continue
            if w.process is not None:
                log.error("nœud DICOM : le processus %d s'est arrêté (code %s), %d association(s) perdue(s)",
                          w.index + 1, code, w.active)
                lived = time.monotonic() - w.started
                w.fast_failures = w.fast_failures + 1 if lived < FAST_FAILURE_SECONDS else 0
                if w.fast_failures >= MAX_FAST_FAILURES and not self.served:
                    self.failed = f"nœud DICOM : le processus {w.index + 1} échoue au démarrage ({w.fast_failures} fois)"
                    log.error(self.failed)
                    stop.set()
                w.process = None
                self._retire(w)
                w.started = time.monotonic()
            elif time.monotonic() - w.started >= self._restart_delay(w):
                self._spawn(w)

    def _restart_delay(self, w: _Worker) -> float:
        """Seconds before starting again a worker that stopped: 1, then twice as long after each quick
        failure (a worker that cannot start while PostgreSQL is away), at most 30; the node goes on
        with its other workers meanwhile."""
        return min(MAX_RESTART_DELAY_SECONDS, RESTART_DELAY_SECONDS * float(2 ** max(0, w.fast_failures - 1)))

    # ------------------------------------------------------------------ accepting

    def open(self) -> Acceptor:
        """Listens (raises OSError if the port is taken) and starts the workers. Connections are
        accepted once a worker is ready (until then they wait in the listening queue)."""
        self.listener = socket.create_server((self.host, self.port), backlog=128)
        self.listener.setblocking(False)
        for w in self.workers:
            self._spawn(w)
        return self

    def _accepting(self) -> None:
        """Accepts only while some worker is ready to serve."""
        listener = self.listener
        if listener is None:
            return
        listening = listener in self.selector.get_map()
        wanted = any(w.ready and w.channel is not None for w in self.workers)
        if wanted and not listening:
            self.selector.register(listener, selectors.EVENT_READ, None)
        elif listening and not wanted:
            self.selector.unregister(listener)

    def _dispatch(self, conn: socket.socket, host: str) -> None:
        ready = [(w, w.channel) for w in self.workers if w.ready and w.channel is not None]
        if not ready:
            log.error("nœud DICOM : aucun processus disponible, connexion de %s fermée", host)
            conn.close()
            return
        if self.per_peer is not None and self.peers[host] >= self.per_peer:
            log.warning(
                "connexion de %s refusée : déjà %d associations ouvertes depuis cette adresse (limite par pair)",
                host, self.per_peer,
            )
            conn.close()
            return
        worker, channel = min(ready, key=lambda r: (r[0].active, r[0].dispatched))
        try:
            socket.send_fds(channel, [b"+" + host.encode("ascii", "replace")], [conn.fileno()])
            worker.active += 1
            worker.dispatched += 1
            worker.peers[host] += 1
            self.peers[host] += 1
        except OSError:
            log.exception("nœud DICOM : connexion non transmise au processus %d", worker.index + 1)
        finally:
            conn.close()

    def serve(self, stop: threading.Event) -> None:
        log.info("nœud DICOM à l'écoute sur %s:%s (%d processus)", self.host, self.port, self.count)
        while not stop.is_set():
            for key, _ in self.selector.select(timeout=0.5):
                if key.data is None:  # the listener (registered only while open)
                    if self.listener is None:
                        continue
                    try:
                        conn, address = self.listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    self._dispatch(conn, str(address[0]))
                    continue
                worker: _Worker = key.data
                if worker.channel is None:  # registered only while it has one
                    continue
                try:
                    data = worker.channel.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    self._heard(worker, data)
                else:  # the worker is gone; _check_workers restarts it
                    self._retire(worker)
            self._check_workers(stop)
            self._accepting()

    def _heard(self, worker: _Worker, data: bytes) -> None:
        """Messages from a worker: READY, or ENDED and the peer address with a newline."""
        data = worker.pending + data
        while data:
            if data[:1] == READY:
                data = data[1:]
                if not worker.ready:
                    worker.ready = self.served = True
                    log.info("nœud DICOM : processus %d/%d prêt", worker.index + 1, self.count)
            elif data[:1] == ENDED:
                end = data.find(b"\n")
                if end < 0:
                    break  # the rest comes with the next read
                host, data = data[1:end].decode("ascii", "replace"), data[end + 1:]
                worker.active = max(0, worker.active - 1)
                if worker.peers[host] > 0:
                    worker.peers[host] -= 1
                    self.peers[host] -= 1
                worker.peers += Counter()  # drops the zeros
                self.peers += Counter()
            else:
                data = data[1:]
        worker.pending = data

    def close(self) -> None:
        if self.listener is not None:
            if self.listener in self.selector.get_map():
                self.selector.unregister(self.listener)
            self.listener.close()
            self.listener = None
        running = [(w.index, w.process) for w in self.workers if w.process is not None and w.process.poll() is None]
        for _, process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for index, process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("nœud DICOM : le processus %d ne s'arrête pas, arrêt forcé", index + 1)
                process.kill()
                process.wait()
        for w in self.workers:
            self._retire(w)
        self.selector.close()


def channel_from_fd(fd: str | None) -> socket.socket | None:
    """In a worker: the Unix socket its connections come from, from the CHANNEL_FD_ENV variable's
    value (None when not a worker)."""
    if not fd:
        return None
    return socket.socket(fileno=int(fd))
