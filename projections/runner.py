"""Projection runners: follow the event log, report positions and lag, rebuild from zero."""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.postgres import PostgresDatastore, PostgresRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.utils import Environment

from application import Relais
from projections.access import AccessProjection, PostgresAccessView
from projections.base import BufferedProjection, PostgresView, StalePositionError, fetch_one
from projections.directory import DirectoryProjection, PostgresDirectoryView
from projections.imaging import ImagingProjection, PostgresImagingView
from projections.inbox import InboxProjection, PostgresInboxView
from projections.mdt import MdtProjection, PostgresMdtView
from projections.milestones import MilestonesProjection, PostgresMilestonesView
from projections.notifications import NotificationsProjection, PostgresNotificationsView
from projections.statistics import PostgresStatisticsView, StatisticsProjection
from projections.status import ProjectionStatus, projection_status

log = logging.getLogger("relais.projections")

# Projection[Any]: each projection class is generic in its own view class (its pair here)
PROJECTIONS: dict[str, tuple[type[Projection[Any]], type[PostgresView]]] = {
    "directory": (DirectoryProjection, PostgresDirectoryView),
    "inbox": (InboxProjection, PostgresInboxView),
    "access": (AccessProjection, PostgresAccessView),
    "statistics": (StatisticsProjection, PostgresStatisticsView),
    "imaging": (ImagingProjection, PostgresImagingView),
    "notifications": (NotificationsProjection, PostgresNotificationsView),
    "mdt": (MdtProjection, PostgresMdtView),
    "milestones": (MilestonesProjection, PostgresMilestonesView),
}


class UnknownProjectionError(KeyError):
    def __str__(self) -> str:
        return f"projection inconnue « {self.args[0]} » (connues : {', '.join(PROJECTIONS)})"


def _entry(name: str) -> tuple[type[Projection[Any]], type[PostgresView]]:
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise UnknownProjectionError(name) from None


def open_view(name: str, env: dict[str, str]) -> PostgresView:
    """The view (read model) of a projection, without following the log (for queries)."""
    projection_class, view_class = _entry(name)
    factory = InfrastructureFactory[PostgresView].construct(env=Environment(projection_class.name, env))
    return factory.tracking_recorder(view_class)


def _datastore(app: Relais) -> PostgresDatastore:
    """The application's PostgreSQL datastore: the log is read on its pool."""
    recorder = app.recorder
    if not isinstance(recorder, PostgresRecorder):
        raise TypeError(f"projections follow a PostgreSQL event store, not {type(recorder).__name__}")
    return recorder.datastore


def log_head(app: Relais, topics: tuple[str, ...]) -> tuple[int, int]:
    """(last notification id of these topics, total) in the log."""
    with _datastore(app).get_connection() as conn, conn.cursor() as curs:
        curs.execute("SELECT coalesce(max(notification_id), 0) AS head FROM relais_events WHERE topic = ANY(%s)", (list(topics),))
        return fetch_one(curs)["head"], 0


def status(app: Relais, env: dict[str, str] | None = None, names: list[str] | None = None) -> list[ProjectionStatus]:
    """Position, head of the log and lag of each projection, on the application's own pool."""
    with _datastore(app).get_connection() as conn, conn.cursor() as curs:
        projections = [_entry(name)[0] for name in names or list(PROJECTIONS)]
        return [projection_status(curs, p.name, p.topics) for p in projections]


class Follower:
    """One projection following the log: the library's runner, plus, for a buffered
    projection, a flusher thread that writes the last events when the log goes quiet."""

    tick = 0.02  # seconds between two looks of the flusher thread

    def __init__(self, name: str, env: dict[str, str]):
        projection_class, view_class = _entry(name)
        self.name = name
        self.error: BaseException | None = None
        self.failed = False  # an error was raised: what is buffered must not be written
        self.runner: ProjectionRunner[Relais, PostgresView] = ProjectionRunner(
            application_class=Relais, projection_class=projection_class, view_class=view_class, env=env
        )
        self.runner.__enter__()
        self.projection = self.runner.projection
        # the projection when it is buffered (batches, a flusher thread); None when it writes each event
        self.buffer = self.projection if isinstance(self.projection, BufferedProjection) else None
        self._stopping = threading.Event()
        self._flusher: threading.Thread | None = None
        if self.buffer is not None:
            self._flusher = threading.Thread(target=self._flush_loop, args=(self.buffer,), name=f"flush-{name}", daemon=True)
            self._flusher.start()

    def _flush_loop(self, buffer: BufferedProjection[PostgresView]) -> None:
        while not self._stopping.wait(self.tick) and not self.runner.is_interrupted.is_set():
            try:
                buffer.flush_if_due()
            except BaseException as e:  # the runner stops; run_forever/wait re-raise it
                self.error = e
                self.runner.stop()
                return

    def _raise(self) -> None:
        if self.error is not None:
            self.failed = True
            error, self.error = self.error, None
            raise error

    def run_forever(self, timeout: float | None = None) -> None:
        """Blocks up to `timeout`; raises what stopped the runner (processing, flushing or writing)."""
        try:
            self.runner.run_forever(timeout=timeout)
            if self.buffer is not None:
                self.buffer.raise_error()
        except BaseException:
            self.failed = True
            raise
        self._raise()

    def position(self) -> int:
        if self.buffer is not None:
            return self.buffer.committed
        return self.runner.view.position()

    def wait(self, position: int, timeout: float) -> None:
        """Blocks until everything up to `position` is written (a buffered projection hands its
        batch over as soon as it has folded that far)."""
        deadline = time.monotonic() + timeout
        while self.position() < position:
            if self.buffer is not None and self.buffer.last_processed >= position:
                self.buffer.flush(wait=False)
            if self.runner.is_interrupted.is_set():
                self.run_forever(0)
                self._raise()
                raise RuntimeError(f"projection {self.name} arrêtée avant la position {position}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"projection {self.name} : position {position} non atteinte en {timeout:.0f} s")
            self.run_forever(timeout=0.01 if self.buffer is not None else 0.05)

    def close(self) -> None:
        """Stops following; a buffered projection writes what it holds (clean stop)."""
        self._stopping.set()
        if self._flusher is not None:
            self._flusher.join()
        try:
            try:
                self.runner.__exit__(None, None, None)
            except BaseException:
                self.failed = True
                raise
            self._raise()
            if self.buffer is not None and not self.failed:
                self.buffer.flush(wait=True)
        finally:
            if self.buffer is not None:
                self.buffer.close()
            self.runner.view.datastore.close()


def catch_up(name: str, env: dict[str, str], app: Relais, timeout: float = 60.0) -> None:
    """Processes every event recorded so far, in this process, then returns.

    If another process follows the same projection meanwhile (a runner), the batches of the
    one that is late are refused (StalePositionError): this one starts again from where the
    other got, until the head of the log is written by either.
    """
    projection_class, _ = _entry(name)
    head, _ = log_head(app, tuple(projection_class.topics))
    deadline = time.monotonic() + timeout
    small = {**env, "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "0"}  # one query: one connection
    while True:
        view = open_view(name, small)
        try:
            if view.position() >= head:
                return
        finally:
            view.datastore.close()
        follower = Follower(name, env)
        try:
            follower.wait(head, timeout=max(0.0, deadline - time.monotonic()))
            return
        except StalePositionError:
            log.info("projection %s : suivie aussi par un autre processus, reprise à sa position", name)
            if time.monotonic() > deadline:
                raise TimeoutError(f"projection {name} : position {head} non atteinte en {timeout:.0f} s") from None
        finally:
            try:
                follower.close()
            except StalePositionError:
                pass


def rebuild(name: str, env: dict[str, str], app: Relais, timeout: float = 3600.0) -> None:
    """Drops the read model and processes the whole log again (Python's GC frozen meanwhile)."""
    view = open_view(name, env)
    view.reset()
    view.datastore.close()
    gc.collect()
    gc.freeze()
    try:
        catch_up(name, env, app, timeout=timeout)
    finally:
        gc.unfreeze()
    view = open_view(name, {**env, "POSTGRES_POOL_SIZE": "1"})
    try:
        view.analyze()
    finally:
        view.datastore.close()


MAX_BACKOFF = 5.0  # seconds at most between two restarts of a failed follower (following again within 10 s)


def run(names: list[str], env: dict[str, str], stop: threading.Event) -> None:
    """Follows the log for each projection until `stop` is set; a failed runner restarts.

    The wait between restarts doubles from 1 s up to MAX_BACKOFF while the failures go on, and
    goes back to nothing once a restarted follower has made progress: an incident long ago does
    not slow the recovery from the next one."""
    for name in names:
        _entry(name)
    # Each runner holds an application and a view, each with its own pool: keep them small,
    # or a handful of projections takes most of PostgreSQL's 100 connections.
    env = {**env, "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "3"}
    followers: dict[str, Follower] = {}
    backoff: dict[str, float] = {name: 0.0 for name in names}
    retry_at: dict[str, float] = {name: 0.0 for name in names}
    started_at: dict[str, int] = {}  # a restarted follower's position when it started
    try:
        while not stop.is_set():
            for name in names:
                follower = followers.get(name)
                if follower is None and time.monotonic() >= retry_at[name]:
                    try:
                        follower = Follower(name, env)
                        followers[name] = follower
                        started_at[name] = follower.position()
                        log.info("projection %s suit le journal", name)
                    except Exception:
                        log.exception("projection %s : démarrage impossible", name)
                        backoff[name] = min(MAX_BACKOFF, backoff[name] * 2 or 1.0)
                        retry_at[name] = time.monotonic() + backoff[name]
                        continue
                if follower is not None:
                    try:
                        follower.run_forever(timeout=0.01)
                        if backoff[name] and follower.position() > started_at[name]:
                            backoff[name] = 0.0  # it works again
                    except Exception:
                        log.exception("projection %s en erreur, redémarrage", name)
                        _close(follower)
                        followers.pop(name, None)
                        backoff[name] = min(MAX_BACKOFF, backoff[name] * 2 or 1.0)
                        retry_at[name] = time.monotonic() + backoff[name]
            stop.wait(0.5)
    finally:
        for follower in followers.values():
            _close(follower)


def _close(follower: Follower) -> None:
    try:
        follower.close()
    except Exception:  # pragma: no cover
        log.exception("arrêt de projection")
