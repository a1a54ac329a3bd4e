"""Projection runners: follow the event log, report positions and lag, rebuild from zero."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.utils import Environment

from application import Relais
from projections.base import PostgresView
from projections.access import AccessProjection, PostgresAccessView
from projections.directory import DirectoryProjection, PostgresDirectoryView
from projections.inbox import InboxProjection, PostgresInboxView

log = logging.getLogger("relais.projections")

PROJECTIONS: dict[str, tuple[type[Projection], type[PostgresView]]] = {
    "directory": (DirectoryProjection, PostgresDirectoryView),
    "inbox": (InboxProjection, PostgresInboxView),
    "access": (AccessProjection, PostgresAccessView),
}


class UnknownProjectionError(KeyError):
    def __str__(self) -> str:
        return f"projection inconnue « {self.args[0]} » (connues : {', '.join(PROJECTIONS)})"


def _entry(name: str) -> tuple[type[Projection], type[PostgresView]]:
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise UnknownProjectionError(name) from None


def open_view(name: str, env: dict[str, str]) -> PostgresView:
    """The view (read model) of a projection, without following the log (for queries)."""
    projection_class, view_class = _entry(name)
    factory = InfrastructureFactory.construct(env=Environment(projection_class.name, env))
    return factory.tracking_recorder(view_class)  # type: ignore[return-value]


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int
    head: int
    lag: int


def log_head(app: Relais, topics: tuple[str, ...]) -> tuple[int, int]:
    """(last notification id of these topics, total) in the log."""
    with app.recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute("SELECT coalesce(max(notification_id), 0) AS head FROM relais_events WHERE topic = ANY(%s)", (list(topics),))
        return curs.fetchone()["head"], 0


def status(app: Relais, env: dict[str, str], names: list[str] | None = None) -> list[ProjectionStatus]:
    out = []
    for name in names or list(PROJECTIONS):
        projection_class, _ = _entry(name)
        view = open_view(name, env)
        position = view.position()
        with app.recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT coalesce(max(notification_id), 0) AS head, "
                "count(*) FILTER (WHERE notification_id > %s) AS lag "
                "FROM relais_events WHERE topic = ANY(%s)",
                (position, list(projection_class.topics)),
            )
            row = curs.fetchone()
        out.append(ProjectionStatus(name=name, position=position, head=row["head"], lag=row["lag"]))
        view.datastore.close()
    return out


def catch_up(name: str, env: dict[str, str], app: Relais, timeout: float = 60.0) -> None:
    """Processes every event recorded so far, in this process, then returns."""
    projection_class, view_class = _entry(name)
    head, _ = log_head(app, tuple(projection_class.topics))
    with ProjectionRunner(
        application_class=Relais, projection_class=projection_class, view_class=view_class, env=env
    ) as runner:
        if head:
            runner.wait(head, timeout=timeout)


def rebuild(name: str, env: dict[str, str], app: Relais, timeout: float = 3600.0) -> None:
    view = open_view(name, env)
    view.reset()
    view.datastore.close()
    catch_up(name, env, app, timeout=timeout)


def run(names: list[str], env: dict[str, str], stop: threading.Event) -> None:
    """Follows the log for each projection until `stop` is set; a failed runner restarts."""
    for name in names:
        _entry(name)
    runners: dict[str, ProjectionRunner] = {}
    backoff: dict[str, float] = {name: 0.0 for name in names}
    retry_at: dict[str, float] = {name: 0.0 for name in names}
    try:
        while not stop.is_set():
            for name in names:
                runner = runners.get(name)
                if runner is None and time.monotonic() >= retry_at[name]:
                    projection_class, view_class = _entry(name)
                    try:
                        runner = ProjectionRunner(
                            application_class=Relais, projection_class=projection_class,
                            view_class=view_class, env=env,
                        )
                        runner.__enter__()
                        runners[name] = runner
                        log.info("projection %s suit le journal", name)
                    except Exception:
                        log.exception("projection %s : démarrage impossible", name)
                        backoff[name] = min(30.0, backoff[name] * 2 or 1.0)
                        retry_at[name] = time.monotonic() + backoff[name]
                        continue
                if runner is not None:
                    try:
                        runner.run_forever(timeout=0.01)
                    except Exception:
                        log.exception("projection %s en erreur, redémarrage", name)
                        _close(runner)
                        runners.pop(name, None)
                        backoff[name] = min(30.0, backoff[name] * 2 or 1.0)
                        retry_at[name] = time.monotonic() + backoff[name]
            stop.wait(0.5)
    finally:
        for runner in runners.values():
            _close(runner)


def _close(runner: ProjectionRunner) -> None:
    try:
        runner.__exit__(None, None, None)
    except Exception:  # pragma: no cover
        log.exception("arrêt de projection")
