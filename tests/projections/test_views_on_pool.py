"""Views read on a pool the process already has (the web's): the directory's names and search,
the statistics' establishments and status — the same view classes, no connection of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from adapters.settings import Settings
from application import Relais
from projections.directory import PostgresDirectoryView
from projections.runner import catch_up
from projections.statistics import EstablishmentRow, PostgresStatisticsView


@pytest.fixture()
def pool(settings: Settings) -> Iterator[ConnectionPool]:
    with ConnectionPool(settings.database_url, min_size=1, max_size=2, open=True,
                        kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
        yield pool


def test_directory_names_and_search(relais: Relais, world: dict, settings: Settings, pool: ConnectionPool):
    eloi = relais.add_establishment(finess="340780055", name="Hôpital Saint-Éloi", department="34")
    relais.add_service(establishment_id=eloi, code="cardio", name="Unité de soins intensifs", specialty="Cardiologie")
    catch_up("directory", settings.eventsourcing_env(), relais)
    directory = PostgresDirectoryView.on_pool(pool, "directory")
    assert directory.position() > 0  # its tracking table read on the pool too
    assert {p.id: p.name for p in directory.people()}[world["auditor"]] == "Anne LEROY"
    assert {s.name for s in directory.services()} == {"Neuroradiologie", "Unité de soins intensifs"}
    assert [p.name for p in directory.clinicians_of(world["montpellier"])] == ["Paul DURAND", "Luc PETIT"]

    def found(q: str) -> list[str]:
        return [e.name for e in directory.search(q)]

    assert found("hopital st") == [] and found("hopital saint-eloi") == found("HÔPITAL") == ["Hôpital Saint-Éloi"]
    assert found("cardiologie") == found("soins intensifs") == ["Hôpital Saint-Éloi"]  # a service's specialty, name
    assert found("neuroradio") == found("durand") == found("DURAND PAUL") == ["CHU de Montpellier"]  # a clinician
    assert found("31") == ["CHU de Toulouse"] and found("3407") == ["CHU de Montpellier", "Hôpital Saint-Éloi"]


def test_statistics_establishments_and_status(relais: Relais, world: dict, settings: Settings, pool: ConnectionPool):
    statistics = PostgresStatisticsView.on_pool(pool, "statistics")
    assert statistics.establishments() == [] and statistics.status().lag > 0
    catch_up("statistics", settings.eventsourcing_env(), relais)
    assert statistics.establishments() == [
        EstablishmentRow(finess="340780477", name="CHU de Montpellier", department="34"),
        EstablishmentRow(finess="310781406", name="CHU de Toulouse", department="31"),
    ]
    status = statistics.status()
    assert status.lag == 0 and status.position == status.head == statistics.position()
