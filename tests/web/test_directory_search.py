"""The recipient search finds specialties, on-call pools and the abbreviations clinicians type (« AVC »)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from adapters.settings import Settings
from application import Relais
from entrypoints.bootstrap import upgrade
from projections.directory import PostgresDirectoryView
from projections.runner import catch_up
from tests.conftest import rpps
from web.names import Names


@pytest.fixture()
def region(relais: Relais, settings: Settings) -> Iterator[tuple[Names, dict[str, str]]]:
    ids: dict[str, str] = {}
    tlse = ids["toulouse"] = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    mtp = ids["montpellier"] = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
    rodez = ids["rodez"] = relais.add_establishment(finess="120780010", name="Centre hospitalier de Rodez", department="12")
    for key, est, code, name, specialty, kind in [
        ("nrx", tlse, "neuroradio", "Neuroradiologie interventionnelle", "radiologie", "service"),
        ("unv", tlse, "unv", "Astreinte neurovasculaire — UNV", "neurologie", "on_call_pool"),
        ("greffe", tlse, "nephro-greffe", "Néphrologie et transplantation", "néphrologie", "team"),
        ("rea", tlse, "rea", "Réanimation polyvalente", "anesthésie-réanimation", "service"),
        ("pancreas", mtp, "digestif", "Chirurgie du pancréas", "chirurgie digestive", "service"),
        ("neurochir", mtp, "neurochirurgie", "Neurochirurgie", "neurochirurgie", "service"),
        ("urgences", rodez, "urgences", "Urgences", "médecine d'urgence", "service"),
        ("smur", mtp, "astreinte-urgences", "Astreinte SAMU-SMUR", "médecine d'urgence", "on_call_pool"),
    ]:
        ids[key] = relais.add_service(establishment_id=est, code=code, name=name, specialty=specialty, kind=kind)
    ids["durand"] = relais.add_practitioner(
        rpps=rpps(2), family_name="Durand", given_name="Paul", establishment_id=mtp, roles=["clinician"],
        specialty="Neurologie",
    )
    catch_up("directory", settings.eventsourcing_env(), relais)
    with ConnectionPool(settings.database_url, min_size=1, max_size=2, open=True,
                        kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
        yield Names(PostgresDirectoryView.on_pool(pool, "directory")), ids


def test_avc_finds_the_neurovascular_on_call_pool_first(region: tuple[Names, dict[str, str]]) -> None:
    names, ids = region
    for typed in ("AVC", "avc", " Avc ", "stroke", "unv", "neuro-vasculaire"):
        results = names.search(typed)
        assert results, typed
        first = results[0]
        assert first["id"] == ids["toulouse"], typed
        assert first["services"][0]["id"] == ids["unv"] and first["services"][0]["found"], typed
        assert first["found"] == ["Astreinte neurovasculaire — UNV"], typed


def test_abbreviations_accents_and_ranking(region: tuple[Names, dict[str, str]]) -> None:
    names, ids = region

    def found(typed: str) -> list[str]:
        return [name for e in names.search(typed) for name in e["found"]]

    assert found("néphro") == ["Néphrologie et transplantation"]
    assert found("NEPHRO") == found("greffe") == ["Néphrologie et transplantation"]
    assert found("réa") == ["Réanimation polyvalente"]  # not « pancréas »: short words match at a word's start
    # « urgences » finds the pools and services of emergency medicine, the on-call pool first
    assert found("urgences") == ["Astreinte SAMU-SMUR", "Urgences"]
    assert found("radio") == ["Neuroradiologie interventionnelle"]
    # « neuro »: the neurovascular pool before the services, then the neurologist of Montpellier
    assert [e["id"] for e in names.search("neuro")] == [ids["toulouse"], ids["montpellier"]]
    assert found("neuro")[0] == "Astreinte neurovasculaire — UNV"
    assert "Paul DURAND" in found("neuro") and "Neurochirurgie" in found("neuro")
    # several words: each found somewhere in the same entry (the establishment's name counts)
    assert found("avc toulouse") == ["Astreinte neurovasculaire — UNV"]
    assert names.search("avc montpellier") == []
    # what worked before still works: establishment name, FINESS, department, a clinician's name
    assert [e["id"] for e in names.search("Montpellier")] == [ids["montpellier"]]
    assert [e["id"] for e in names.search("310781406")] == [ids["toulouse"]]
    assert [e["id"] for e in names.search("12")] == [ids["rodez"]]
    assert found("durand") == ["Paul DURAND"]
    assert names.search("zzz") == [] and names.search("   ") == [] and names.search("%_") == []


def test_a_directory_made_before_the_search_column_is_searchable_after_upgrade(relais: Relais, settings: Settings) -> None:
    """The search text is a generated column: added to existing tables, it is computed for their rows."""
    tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    relais.add_service(establishment_id=tlse, code="unv", name="Unité neurovasculaire", specialty="neurologie",
                       kind="on_call_pool")
    catch_up("directory", settings.eventsourcing_env(), relais)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:  # rows as an older version left them
        for table in ("dir_establishments", "dir_services", "dir_practitioners"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN search")
        assert conn.execute("SELECT count(*) FROM dir_services").fetchone() == (1,)
    upgrade(settings)
    with ConnectionPool(settings.database_url, min_size=1, max_size=2, open=True,
                        kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
        names = Names(PostgresDirectoryView.on_pool(pool, "directory"))
        assert [e["found"] for e in names.search("AVC")] == [["Unité neurovasculaire"]]
