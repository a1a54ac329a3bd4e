"""The names pages show come from the directory view (read on the web's pool)."""

from __future__ import annotations

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from adapters.settings import Settings
from application import Relais
from projections.directory import PostgresDirectoryView
from projections.runner import catch_up
from web.names import Names


def test_names_and_recipient_search(relais: Relais, world: dict, settings: Settings):
    catch_up("directory", settings.eventsourcing_env(), relais)
    with ConnectionPool(settings.database_url, min_size=1, max_size=2, open=True,
                        kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
        names = Names(PostgresDirectoryView.on_pool(pool, "directory"))
        assert names.recipient(world["montpellier"], world["neuro"], world["recipient"]) == (
            "CHU de Montpellier — Neuroradiologie — Paul DURAND"
        )
        assert names.establishment("00000000-0000-0000-0000-000000000000") == "établissement inconnu"
        assert [s["name"] for s in names.services_of(world["montpellier"])] == ["Neuroradiologie"]
        assert names.colleagues(world["montpellier"]) == [(world["recipient"], "Paul DURAND"), (world["outsider"], "Luc PETIT")]
        (found,) = names.search("neuro")
        assert (found["id"], found["name"], found["finess"], found["department"]) == (
            world["montpellier"], "CHU de Montpellier", "340780477", "34"
        )
        assert [s["id"] for s in found["services"]] == [world["neuro"]] and len(found["clinicians"]) == 2
