"""Where projections stand: one query for /health, `relais projections status` and the statistics pages."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from adapters.settings import Settings
from application import Relais
from projections.runner import catch_up, status
from projections.statistics import StatisticsProjection
from projections.status import projection_status


def test_lag_is_the_events_of_its_topics_not_written_yet(relais: Relais, world: dict, settings: Settings):
    env = settings.eventsourcing_env()
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn, conn.cursor() as curs:
        before = projection_status(curs, "statistics", StatisticsProjection.topics)
        assert before.position == 0 and before.head > 0 and before.lag > 0  # the establishments' events wait
        assert projection_status(curs, "nothing", ()).position == 0  # no tracking table yet, every event
        catch_up("statistics", env, relais)
        after = projection_status(curs, "statistics", StatisticsProjection.topics)
    assert after.lag == 0 and after.position == after.head == before.head
    (statistics,) = status(relais, env, ["statistics"])  # the runner's view of it: the same query
    assert statistics == after
