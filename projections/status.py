"""Where a projection stands: its position in the log, the head of the log for its topics, the lag between."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from projections.base import APPLICATION_NAME, fetch_one, tracking_table


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int  # last event written to the read model
    head: int  # last event of its topics in the log
    lag: int  # events of its topics not written yet


def projection_status(curs: Cursor[DictRow], name: str, topics: Sequence[str]) -> ProjectionStatus:
    """The status of the projection `name` following `topics` (all events if none), on `curs`.

    Opens no connection of its own (it runs on every /health call and every statistics page):
    the position is read from the tracking table, head and lag per topic through the
    (topic, notification_id) index.
    """
    tracking = tracking_table(name)
    curs.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (tracking,))
    position = 0
    if fetch_one(curs)["present"]:
        curs.execute(
            SQL("SELECT coalesce(max(notification_id), 0) AS position FROM {0} WHERE application_name = %s").format(
                Identifier(tracking)
            ),
            (APPLICATION_NAME,),
        )
        position = fetch_one(curs)["position"]
    if not topics:  # follows every event
        curs.execute(
            "SELECT coalesce(max(notification_id), 0) AS head, "
            "count(*) FILTER (WHERE notification_id > %s) AS lag FROM relais_events", (position,)
        )
    else:
        # The topics as values the planner sees (no unnest/LATERAL, never a generic plan of a
        # prepared statement): with them hidden, once the log is analysed, max() walked the
        # notification_id index backwards hoping to meet the topic soon — the whole log for a
        # topic with no event yet, seconds per /health at 865k events.
        curs.execute(
            "SELECT coalesce((SELECT max(notification_id) FROM relais_events WHERE topic = ANY(%(t)s)), 0) AS head, "
            "(SELECT count(*) FROM relais_events WHERE topic = ANY(%(t)s) AND notification_id > %(p)s) AS lag",
            {"t": list(topics), "p": position},
            prepare=False,
        )
    row = fetch_one(curs)
    return ProjectionStatus(name=name, position=position, head=row["head"], lag=row["lag"])
