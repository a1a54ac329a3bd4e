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

import logging
import queue
import select
import socket
import socketserver
import time
from typing import TYPE_CHECKING, Any, cast

from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

if TYPE_CHECKING:  # pragma: no cover
    from pynetdicom.transport import AssociationSocket

LOGGER = logging.getLogger("pynetdicom.dul")
ASSOC_LOGGER = logging.getLogger("pynetdicom.association")

IDLE_WAIT_SECONDS = 0.005  # the longest a quiet association waits before checking its timers


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
    sleeping 1 ms before each look at its queue."""

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


def nodelay(event: evt.Event) -> None:
    """EVT_ESTABLISHED handler: Nagle off on the association's socket (field notes: with it,
    1,000 images take 55 s instead of 1 s)."""
    try:
        transport = event.assoc.dul.socket
        if transport is not None and transport.socket is not None:
            transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):  # pragma: no cover
        pass


class WakingRequestHandler(RequestHandler):
    """pynetdicom's handler of an incoming connection, its association a `WakingAssociation`
    on a `WakingDUL`."""

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        assoc.__class__ = WakingAssociation  # same state, only the reactor loop differs
        use_waking_dul(assoc)
        return assoc


class NodeServer(ThreadedAssociationServer):
    """The node's pynetdicom server: associations on `WakingDUL`s. Made with `AE.make_server`
    (not `start_server`), so it is not in the AE's list of running servers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("request_handler", WakingRequestHandler)
        super().__init__(*args, **kwargs)

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
