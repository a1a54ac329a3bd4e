"""Test fixtures: a real PostgreSQL database per test session, emptied between tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from adapters.settings import Settings
from application import Relais
from domain.identifiers import luhn_key
from entrypoints.bootstrap import build_app, upgrade

SERVER_URL = os.environ.get("RELAIS_TEST_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): tests pytest-xdist runs in one worker process, in order")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1... under pytest-xdist
    redis_url = os.environ.get("RELAIS_TEST_REDIS_URL", "")
    base, _, db = redis_url.rpartition("/")
    if worker.startswith("gw") and db.isdigit():  # each worker its own Redis database (arq queue, sessions): 15, 14...
        os.environ["RELAIS_TEST_REDIS_URL"] = f"{base}/{max(0, int(db) - int(worker[2:]))}"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (scripts/test.sh: `-n 2 --dist loadgroup`), each test file runs whole in one
    worker (its module fixtures, an Orthanc or a browser, are made once) and the fault suite in one
    worker (its private PostgreSQL, Redis and platform are package fixtures; it kills and restarts
    them). Files with slow tests are handed out first, so the longest ones do not start last."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        group = "tests/faults" if path.startswith("tests/faults/") else path
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
        groups.setdefault(group, []).append(item)
    slow = {g for g, members in groups.items() if any(i.get_closest_marker("slow") or g == "tests/faults" for i in members)}
    items[:] = [i for g, members in groups.items() if g in slow for i in members] + [
        i for g, members in groups.items() if g not in slow for i in members]


def _admin() -> psycopg.Connection:
    return psycopg.connect(SERVER_URL, autocommit=True)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database for this test session, dropped at the end."""
    name = f"relais_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = SERVER_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    upgrade(Settings(database_url=url))
    yield url
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate_all(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        ]
        # Tracking tables keep eventsourcing's "__migration__" marker row, else the library
        # takes them for legacy multi-row tables and renames them on the next start.
        tracking = [t for t in tables if t.endswith("_tracking")]
        others = [t for t in tables if t not in tracking and not t.startswith("bkup")]
        if others:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in others) + " RESTART IDENTITY")
        for t in tracking:
            conn.execute(f"DELETE FROM \"{t}\" WHERE application_name <> '__migration__'")


@pytest.fixture()
def settings(database_url: str, tmp_path) -> Settings:
    """Settings on the session database, emptied before each test."""
    truncate_all(database_url)
    return Settings(database_url=database_url, data_dir=tmp_path / "var")


@pytest.fixture()
def relais(settings: Settings) -> Iterator[Relais]:
    app = build_app(settings)
    yield app
    app.close()


def rpps(n: int) -> str:
    """A valid RPPS number (Luhn key) built from an integer."""
    body = f"1{n:09d}"
    return body + luhn_key(body)


NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture()
def world(relais: Relais) -> dict:
    """Two establishments, a service, requester and recipient clinicians, an auditor."""
    toulouse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    montpellier = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
    neuro = relais.add_service(establishment_id=montpellier, code="neuroradio", name="Neuroradiologie")
    requester = relais.add_practitioner(
        rpps=rpps(1), family_name="Martin", given_name="Claire", establishment_id=toulouse, roles=["clinician"]
    )
    recipient = relais.add_practitioner(
        rpps=rpps(2), family_name="Durand", given_name="Paul", establishment_id=montpellier,
        roles=["clinician"], service_ids=[neuro],
    )
    outsider = relais.add_practitioner(
        rpps=rpps(3), family_name="Petit", given_name="Luc", establishment_id=montpellier, roles=["clinician"]
    )
    auditor = relais.add_practitioner(
        rpps=rpps(4), family_name="Leroy", given_name="Anne", establishment_id=toulouse, roles=["auditor"]
    )
    return {
        "toulouse": toulouse, "montpellier": montpellier, "neuro": neuro, "requester": requester,
        "recipient": recipient, "outsider": outsider, "auditor": auditor,
    }


PATIENT = dict(
    patient_birth_name="Dupont", patient_first_names="Jeanne Marie", patient_birth_date="1950-03-02",
    patient_sex="F", patient_birth_place_code="31555",
)


@pytest.fixture()
def sent_dossier(relais: Relais, world: dict) -> dict:
    """A stroke dossier from Toulouse sent to Montpellier's neuroradiology."""
    did = relais.create_dossier(
        actor_id=world["requester"], workflow="stroke_opinion", question="Thrombectomie ?", urgency="stat",
        consent="given", **PATIENT,
    )
    sid = relais.address_recipient(
        dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"], service_id=world["neuro"]
    )
    relais.send_dossier(dossier_id=did, actor_id=world["requester"])
    return {"dossier_id": did, "send_id": sid}
