"""pynetdicom's upper layer, woken by events instead of polling, for the node's associations.

pynetdicom's DUL thread sleeps 1 ms whenever a loop found nothing to do ("TODO: try and make
this event based", dul.py). On a C-STORE exchange that sleep lands twice per instance: between
the peer's next request arriving and the thread noticing it, and between our response being
queued and the thread sending it. Measured on this node (1,000 CT instances from dcmtk storescu
over one association): ≈ 0.9 ms of a 6–7 ms round trip.

`WakingDUL` keeps pynetdicom's reactor loop as it is (copied from pynetdicom 3.0.4,
`DULServiceProvider.run_reactor`) and only replaces that sleep by a `select` on the peer's socket
and on a wake-up socket written whenever a primitive is queued for sending: the thread wakes as
soon as there is something to do, and polls 5x less often when idle. `WakingAssociation` does the
same for the association's own loop (`Association._run_reactor`, which sleeps 1 ms before each
look at its message queue): it waits on that queue. The library version is
pinned (requirements.lock); tests/adapters/test_reactor.py checks the copied loop still matches
the installed one.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import queue
import select
import socket
import socketserver
import struct
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

if TYPE_CHECKING:  # pragma: no cover
    from pynetdicom.transport import AssociationSocket

LOGGER = logging.getLogger("pynetdicom.dul")
ASSOC_LOGGER = logging.getLogger("pynetdicom.association")
log = logging.getLogger("relais.dicom")

IDLE_WAIT_SECONDS = 0.005  # the longest a quiet association waits before checking its timers
# Before an association is established (the peer unidentified: its calling AE title is in the
# A-ASSOCIATE-RQ itself) no PDU longer than this is read; an A-ASSOCIATE-RQ proposing all
# 128 presentation contexts with several transfer syntaxes each is ≈ 30 KB.
UNIDENTIFIED_PDU_LIMIT = 256 * 1024
PDU_TYPES = (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07)


class WakingDUL(DULServiceProvider):
    def __init__(self, assoc: Any) -> None:
        super().__init__(assoc)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):  # already awake (buffer full) or finished
            pass

    def send_pdu(self, primitive: Any) -> None:
        super().send_pdu(primitive)
        self._wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._wake()

    def pdu_limit(self) -> int | None:
        """The longest PDU read from the peer: UNIDENTIFIED_PDU_LIMIT until the association is
        established, then the maximum length we announced (None: unlimited, announced as 0)."""
        assoc = self.assoc
        if not assoc.is_established:
            return UNIDENTIFIED_PDU_LIMIT
        local = assoc.acceptor if assoc.is_acceptor else assoc.requestor
        announced = local.maximum_length or 0
        return max(announced, UNIDENTIFIED_PDU_LIMIT) if announced else None

    def _read_pdu_data(self) -> None:
        # pynetdicom 3.0.4 DULServiceProvider._read_pdu_data, shortened, with one addition: a PDU
        # longer than pdu_limit() is not read (pynetdicom reads whatever length the peer
        # declares, up to 4 GiB, into memory): the connection is aborted.
        sock = cast("AssociationSocket", self.socket)
        try:
            head = sock.recv(6)
            pdu_type, _, pdu_length = struct.unpack(">BBL", head)
        except (OSError, TimeoutError, struct.error):  # the peer closed the connection
            connected = sock._is_connected
            sock.close()  # at once (puts Evt17, transport connection closed, if it was open)
            if not connected:
                self.event_queue.put("Evt17")
            return
        if pdu_type not in PDU_TYPES:
            LOGGER.error(f"Unknown PDU type received '0x{pdu_type:02X}'")
            self.event_queue.put("Evt19")  # unrecognised or invalid PDU
            return
        limit = self.pdu_limit()
        if limit is not None and pdu_length > limit:
            address = getattr(self.assoc.requestor, "address", "?") if self.assoc.is_acceptor else "?"
            log.warning(
                "PDU de %d octets refusé (limite %d octets%s), connexion de %s interrompue",
                pdu_length, limit, "" if self.assoc.is_established else " avant identification du pair", address,
            )
            self._abort_now()
            return
        try:
            body = sock.recv(pdu_length)
        except (OSError, TimeoutError):
            LOGGER.error("Connection closed before the entire PDU was received")
            self.event_queue.put("Evt17")
            return
        if len(body) != pdu_length:
            self.event_queue.put("Evt17")
            return
        try:
            head += body
            pdu, event = self._decode_pdu(head)
            self.event_queue.put(event)
        except Exception as exc:
            LOGGER.error("Unable to decode the received PDU data")
            LOGGER.exception(exc)
            self.event_queue.put("Evt19")
            return
        self._recv_pdu.put(pdu)

    def _abort_now(self) -> None:
        """Sends an A-ABORT (service provider, invalid PDU parameter value) and closes the
        connection without reading what the peer sends: the association ends."""
        abort = A_ABORT_RQ()
        abort.source, abort.reason_diagnostic = 0x02, 0x06
        sock = cast("AssociationSocket", self.socket)
        try:
            sock.send(abort.encode())
        except Exception:  # pragma: no cover - the peer may be gone
            pass
        sock.close()  # puts Evt17 (transport connection closed) on the queue

    def _idle_wait(self) -> None:
        sock = self.socket.socket if self.socket is not None else None
        waiting = [self._wake_r]
        if sock is not None and sock.fileno() >= 0:
            waiting.append(sock)
        try:
            ready, _, _ = select.select(waiting, [], [], IDLE_WAIT_SECONDS)
        except (OSError, ValueError):  # the peer's socket closed meanwhile
            time.sleep(self._run_loop_delay)
            return
        if self._wake_r in ready:
            try:
                while self._wake_r.recv(4096):
                    pass
            except (BlockingIOError, OSError):
                pass

    def run_reactor(self) -> None:
        try:
            self._run_reactor()
        finally:
            self._wake_r.close()
            self._wake_w.close()

    def _run_reactor(self) -> None:
        # pynetdicom 3.0.4 DULServiceProvider.run_reactor, the sleep replaced by _idle_wait()
        # Main DUL loop
        self._idle_timer.start()
        self.socket = cast("AssociationSocket", self.socket)
        sleep = False

        while True:
            # Let the assoc reactor off the leash
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
                # When single-stepping the reactor, sleep between events so that
                # test code has time to run.
                sleep = True

            if sleep:
                self._idle_wait()

            if self._kill_thread:
                break

            # Check the ARTIM timer first so its event is placed on the queue
            #   ahead of any other events this loop
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")

            # Check the connection for incoming data
            try:
                # We can either encode and send a primitive **OR**
                #   receive and decode a PDU per loop of the reactor
                if self._process_recv_primitive():  # encode (sent by state machine)
                    pass
                elif self._is_transport_event():  # receive and decode PDU
                    self._idle_timer.restart()
            except Exception as exc:
                LOGGER.error("Exception in DUL.run(), aborting association")
                LOGGER.exception(exc)
                # Bypass the state machine and send an A-ABORT
                #   we do it this way because an exception here will mess up
                #   the state machine and we can't guarantee it'll get sent
                #   otherwise
                abort_pdu = A_ABORT_RQ()
                abort_pdu.source = 0x02
                abort_pdu.reason_diagnostic = 0x00
                self.socket.send(abort_pdu.encode())
                self.assoc.is_aborted = True
                self.assoc.is_established = False
                # Hard shutdown of the Association and DUL reactors
                self.assoc._kill = True
                self._kill_thread = True
                return

            # Check the event queue to see if there is anything to do
            try:
                event = self.event_queue.get(block=False)
            # If the queue is empty, return to the start of the loop
            except queue.Empty:
                sleep = True
                continue

            self.state_machine.do_action(event)
            sleep = False


class WakingAssociation(Association):
    """An acceptor association whose reactor waits for the next DIMSE message instead of
    sleeping 1 ms before each look at its queue. `on_end` is called when its thread ends."""

    on_end: Callable[[], None] | None = None

    def run(self) -> None:
        try:
            super().run()
        finally:
            if self.on_end is not None:
                self.on_end()

    def _await_message(self) -> None:
        waiting = self.dimse.msg_queue
        with waiting.not_empty:
            if not waiting.queue:
                waiting.not_empty.wait(IDLE_WAIT_SECONDS)

    def _serve_waiting(self) -> None:
        """Serves the DIMSE request waiting on the queue, if any (an acceptor serves requests)."""
        context_id, msg = self.dimse.get_msg(block=False)
        if msg:
            self._serve_request(msg, cast(int, context_id))

    def _run_reactor(self) -> None:
        # pynetdicom 3.0.4 Association._run_reactor, the sleep replaced by _await_message() and its
        # look at the DIMSE queue by _serve_waiting()
        self._is_paused = False
        while not self._kill:
            self._await_message()

            # A race condition may occur if the Acceptor uses the send_*()
            #   methods as the received DIMSE message may be taken off the
            #   queue before the send_*() method gets to it, so we allow
            #   the reactor to be paused
            # We also need to be careful that the reactor actually stops
            #   before attempting DIMSE or ACSE messaging
            # Will block until `_reactor_checkpoint` is set()
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            # Check with the DIMSE provider to see if a completely decoded
            #   message is available
            self._serve_waiting()

            # Check for release request from the peer
            if self.is_established and self.acse.is_release_requested():
                # Send A-RELEASE response
                self.acse.send_release(is_response=True)
                ASSOC_LOGGER.info("Association Released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return

            # Check for abort from either locally or the peer
            if self.acse.is_aborted():
                log_msg = "Association Aborted"
                if self.acse.is_aborted("a-p-abort"):
                    log_msg += " (A-P-ABORT)"
                ASSOC_LOGGER.info(log_msg)
                # Ensure that EVT_ASCE_RECV fires for subscribers
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            # Check if the DULServiceProvider thread is still running
            #   DUL.is_alive() is inherited from threading.thread
            if not self.dul.is_alive():
                self.kill()
                return

            # Check if network_timeout has expired
            if self.dul.idle_timer_expired():
                ASSOC_LOGGER.error("Network timeout reached")
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()

                self.kill()
                return


class RequestorAssociation(WakingAssociation):
    """An association we requested (query/retrieve, export). Its reactor never takes a DIMSE message
    off the queue: every message that comes on it answers a send_*() that is waiting for it (the
    C-STOREs of a C-GET included, served by send_c_get's own loop). pynetdicom's reactor looks at
    the queue, and between a send_*() pausing it and the request leaving there is a moment where it
    can take the answer itself and drop it ("Received unexpected C-FIND service message"): a series
    missing from a C-FIND, seen on a loaded machine, and the retrieve then short of its instances."""

    def _await_message(self) -> None:
        time.sleep(0.001)  # pynetdicom's own pace: the queue is not ours to wait on

    def _serve_waiting(self) -> None:
        return None


def as_requestor(assoc: Any) -> None:
    """Runs a not yet started association we request with `RequestorAssociation`'s reactor, on a
    `WakingDUL`."""
    assoc.__class__ = RequestorAssociation  # same state, only the reactor loop differs
    use_waking_dul(assoc)


class RequestorAE(AE):
    """An AE whose associations are `RequestorAssociation`s on a `WakingDUL`: woken by the peer's
    socket and by queued primitives instead of pynetdicom's 1 ms sleeps, and never losing an answer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        quiet_pynetdicom()
        super().__init__(*args, **kwargs)

    def _create_socket(self, assoc: Any, address: Any, tls_args: Any) -> Any:
        as_requestor(assoc)
        return super()._create_socket(assoc, address, tls_args)


def use_waking_dul(assoc: Any) -> None:
    """Puts a not yet started association on a `WakingDUL`, with what it already gave its own
    DUL: the peer's socket (if any yet), the timers' timeouts and the events waiting (an
    acceptor's "connection open", Evt5)."""
    plain = assoc.dul
    dul = WakingDUL(assoc)
    dul.socket, dul.artim_timer, dul._idle_timer = plain.socket, plain.artim_timer, plain._idle_timer
    dul.event_queue = plain.event_queue
    assoc.dul = dul


@dataclass(frozen=True)
class Spill:
    """Where the data set of a C-STORE request goes once it passes `threshold` bytes: to a file
    from `create()` (descriptor, path), written as its fragments arrive instead of accumulating in
    memory. The file begins with `prefix(command set, transfer syntax, calling AE title)` (the
    instance's Part 10 header), so that it is the instance file once received."""

    threshold: int
    create: Callable[[], tuple[int, Path]]
    prefix: Callable[[Dataset, str, str], bytes]


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _SpillFile:
    """A spilled data set's file: removed when its buffer is dropped unless it was moved away."""

    def __init__(self, fd: int, path: Path):
        self.fd: int | None = fd
        self.path = path

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


class SpillingBuffer(io.BytesIO):
    """A received data set: in memory (this BytesIO) up to `threshold` bytes, then in a file.

    Once spilled, `spilled` is the file (its first `offset` bytes the prefix) and the BytesIO is
    empty; `finish()` closes it for reading. The file is removed if this buffer is dropped and the
    file was not moved away (an association aborted mid-transfer, an instance refused)."""

    def __init__(self, threshold: int, spill: Spill, prefix: Callable[[], bytes]):
        super().__init__()
        self.threshold, self._spill, self._prefix = threshold, spill, prefix
        self.spilled: _SpillFile | None = None
        self.offset = 0

    def write(self, data: Any) -> int:
        if self.spilled is not None:
            assert self.spilled.fd is not None
            _write_all(self.spilled.fd, data)
            return len(data)
        written = super().write(data)
        if self.tell() > self.threshold:
            self._to_file()
        return written

    def _to_file(self) -> None:
        fd, path = self._spill.create()
        spilled = _SpillFile(fd, path)
        weakref.finalize(self, spilled.discard)
        prefix = self._prefix()
        _write_all(fd, prefix)
        with self.getbuffer() as view:
            _write_all(fd, view)
        self.seek(0)
        self.truncate()
        self.spilled, self.offset = spilled, len(prefix)

    def finish(self) -> Path | None:
        """The file of a spilled data set, closed (None if it stayed in memory)."""
        if self.spilled is None:
            return None
        self.spilled.close()
        return self.spilled.path

    def discard(self) -> None:
        """Removes the spilled file unless it was moved away (stored)."""
        if self.spilled is not None:
            self.spilled.discard()


class SpillingDIMSE(DIMSEServiceProvider):
    """The DIMSE provider of a node association: each message's data set is a `SpillingBuffer`.
    A message arriving while two others wait to be served is spilled whatever its size (a peer
    sending requests without waiting for the answers does not pile them up in memory)."""

    spill: Spill

    def receive_primitive(self, primitive: Any) -> None:
        if self.message is None:
            message = self.message = DIMSEMessage()
            threshold = 0 if self.msg_queue.qsize() >= 2 else self.spill.threshold
            message.data_set = SpillingBuffer(threshold, self.spill, lambda: self._prefix(message))
        super().receive_primitive(primitive)

    def _prefix(self, message: DIMSEMessage) -> bytes:
        assoc = self.assoc
        context = assoc._accepted_cx[cast(int, message.context_id)]
        return self.spill.prefix(
            message.command_set, str(context.transfer_syntax[0]), assoc.requestor.ae_title,
        )


def nodelay(event: evt.Event) -> None:
    """EVT_ESTABLISHED handler: Nagle off on the association's socket (field notes: with it,
    1,000 images take 55 s instead of 1 s)."""
    try:
        transport = event.assoc.dul.socket
        if transport is not None and transport.socket is not None:
            transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):  # pragma: no cover
        pass


def _host(client_address: Any) -> str:
    return str(client_address[0]) if isinstance(client_address, tuple) and client_address else str(client_address)


class _Once:
    def __init__(self, action: Callable[[], object]):
        self.action: Callable[[], object] | None = action
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            action, self.action = self.action, None
        if action is not None:
            action()


class WakingRequestHandler(RequestHandler):
    """pynetdicom's handler of an incoming connection, its association a `WakingAssociation`
    on a `WakingDUL`."""

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        assoc.__class__ = WakingAssociation  # same state, only the reactor loop differs
        use_waking_dul(assoc)
        server = self.server
        if isinstance(server, NodeServer):
            if server.spill is not None:
                assoc.dimse.__class__ = SpillingDIMSE
                cast(SpillingDIMSE, assoc.dimse).spill = server.spill
            # the connection's place under the per-peer cap is freed when its socket closes (a
            # connection closed before any A-ASSOCIATE-RQ would otherwise hold it until the ACSE
            # timeout), or at the latest when its association's thread ends
            release = _Once(functools.partial(server.released, _host(self.client_address)))
            cast(WakingAssociation, assoc).on_end = release
            transport = assoc.dul.socket
            if transport is not None:
                close = transport.close

                def closing() -> None:
                    try:
                        close()
                    finally:
                        release()

                transport.close = closing  # type: ignore[method-assign]
        return assoc


class NodeServer(ThreadedAssociationServer):
    """The node's pynetdicom server: associations on `WakingDUL`s, large data sets spilled to
    disk as they arrive (`spill`, when set), at most `per_peer` connections at a time from one
    address (more are closed at once, logged). Made with `AE.make_server` (not `start_server`),
    so it is not in the AE's list of running servers."""

    spill: Spill | None = None
    per_peer: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("request_handler", WakingRequestHandler)
        self._peers: Counter[str] = Counter()
        self._peers_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        host = _host(client_address)
        with self._peers_lock:
            if self.per_peer is not None and self._peers[host] >= self.per_peer:
                over = True
            else:
                self._peers[host] += 1
                over = False
        if over:
            log.warning(
                "connexion de %s refusée : déjà %d associations ouvertes depuis cette adresse (limite par pair)",
                host, self.per_peer,
            )
            self.refused(client_address)
            return False
        return True

    def refused(self, client_address: Any) -> None:
        """A connection closed by the per-peer limit (a worker tells its acceptor)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        super().handle_error(request, client_address)  # the connection failed before its association started
        self.released(_host(client_address))

    def released(self, host: str) -> None:
        """One connection from `host` is over."""
        with self._peers_lock:
            self._peers[host] -= 1
            if self._peers[host] <= 0:
                del self._peers[host]

    def shutdown(self) -> None:
        socketserver.BaseServer.shutdown(self)
        self.server_close()


def quiet_pynetdicom() -> None:
    """Turns off pynetdicom's standard event handlers unless this process logs at DEBUG.

    They format a report of every PDU and DIMSE message for its INFO/DEBUG loggers whether or not
    anything is logged — for a C-STORE request that includes copying the whole data set just to
    say it is "Present" (`msg.data_set.getvalue()`). Our own handlers log what matters
    (associations accepted or refused, instances refused)."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        _config.LOG_HANDLER_LEVEL = "none"
