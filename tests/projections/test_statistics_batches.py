"""The statistics read model does not depend on where batches end: written in batches of 1, 2, 3, 7 events it
equals the one written in one batch (a send accepted in a later batch than its creation got a « taken in
charge » time without any deadline to measure it against; the test of a runner killed mid-batch saw it, 1 run in 6)."""

from __future__ import annotations

import pytest

from adapters.settings import Settings
from projections.runner import catch_up, rebuild
from projections.statistics import StatisticsProjection
from tests.history import csv_text
from tests.projections.test_statistics import dump, import_csv


@pytest.fixture()
def env(settings: Settings) -> dict:
    return settings.eventsourcing_env()


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_batches_of_any_size_give_the_same_tables(relais, world, env, monkeypatch, size):
    many = "\n".join(line.replace("D", f"K{n}-D", 1) for n in range(3) for line in csv_text().splitlines()[1:])
    import_csv(relais, csv_text().splitlines()[0] + "\n" + many + "\n")
    monkeypatch.setattr(StatisticsProjection, "batch_size", size)
    catch_up("statistics", env, relais, timeout=120)
    in_small_batches = dump(env)
    monkeypatch.setattr(StatisticsProjection, "batch_size", 5000)
    rebuild("statistics", env, relais, timeout=120)
    assert dump(env) == in_small_batches
