"""Settings read from the environment: the variables the workers and the supervisor set."""

from __future__ import annotations

import pytest

from adapters.settings import Settings, SettingsError
from entrypoints.bootstrap import upgrade
from entrypoints.settings import settings_from_environ
from tests.conftest import SERVER_URL


def test_dicom_workers_default_to_the_cpus_and_are_checked():
    assert 1 <= settings_from_environ({}).dicom_workers <= 4
    assert settings_from_environ({"RELAIS_DICOM_WORKERS": "3"}).dicom_workers == 3
    for bad in ("0", "-1", "deux", "65"):
        with pytest.raises(SettingsError, match="RELAIS_DICOM_WORKERS"):
            settings_from_environ({"RELAIS_DICOM_WORKERS": bad})


def test_processes_started_after_the_upgrade_do_not_create_tables():
    url = SERVER_URL
    assert "CREATE_TABLE" not in settings_from_environ({"RELAIS_DATABASE_URL": url}).eventsourcing_env()
    ready = settings_from_environ({"RELAIS_DATABASE_URL": url, "RELAIS_TABLES_READY": "1"})
    assert ready.eventsourcing_env()["CREATE_TABLE"] == "no"


def test_the_upgrade_creates_the_tables_whatever_the_variable_says(database_url):
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS relais_credentials")
    upgrade(Settings(database_url=database_url, tables_ready=True))
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('relais_credentials')").fetchone()[0] == "relais_credentials"
