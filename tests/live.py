"""A live `relais serve` on its own database with a few users, for tests that need real sockets
(client addresses) or a real browser; sessions in Redis when asked, so a test can end one."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from adapters.credentials import Credentials
from adapters.settings import Settings
from entrypoints.bootstrap import build_app, build_pool, upgrade
from tests.conftest import SERVER_URL, rpps
from tests.peers import free_port, stop, wait_port
from tests.processes import RELAIS

PASSWORD = "live server password 2026"


@dataclass
class LiveServer:
    base: str
    port: int
    database_url: str
    users: dict[str, str]  # role in the test → practitioner id
    ids: dict[str, str]  # establishments, services
    log: Path


def start_serve(database_url: str, data_dir: Path, log: Path, **env_extra: str) -> tuple[subprocess.Popen, int]:
    """`relais serve` on a free loopback port, on this database and data folder, its output in `log`;
    returns once it listens (the caller stops it: tests.peers.stop)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    env.update(RELAIS_DATABASE_URL=database_url, RELAIS_DATA_DIR=str(data_dir), RELAIS_HTTP_PORT=str(port),
               RELAIS_SECRET_KEY="live-test-secret-" + "x" * 32, RELAIS_LOG_LEVEL="WARNING", **env_extra)
    with open(log, "wb") as out:
        server = subprocess.Popen([RELAIS, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_port(port, timeout=60, proc=server)
    return server, port


@contextmanager
def live_server(tmp: Path, **env_extra: str) -> Iterator[LiveServer]:
    """A requester in Toulouse, a recipient in Montpellier's neuroradiology (both clinicians,
    password PASSWORD); `relais serve` on a free loopback port with `env_extra` set."""
    name = f"relais_live_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = SERVER_URL.rsplit("/", 1)[0] + "/" + name
    settings = Settings(database_url=url, data_dir=tmp / "var")
    server = None
    try:
        upgrade(settings)
        relais = build_app(settings)
        pool = build_pool(settings, max_size=1)
        try:
            tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
            mtp = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
            neuro = relais.add_service(establishment_id=mtp, code="neuroradio", name="Neuroradiologie")
            users = {
                "requester": relais.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire",
                                                     establishment_id=tlse, roles=["clinician"]),
                "recipient": relais.add_practitioner(rpps=rpps(2), family_name="Durand", given_name="Paul",
                                                     establishment_id=mtp, roles=["clinician"], service_ids=[neuro]),
            }
            credentials = Credentials(pool)
            for pid in users.values():
                credentials.set_password(pid, PASSWORD)
        finally:
            pool.close()
            relais.close()
        log = tmp / "serve.log"
        server, port = start_serve(url, settings.data_dir, log, **env_extra)
        yield LiveServer(base=f"http://127.0.0.1:{port}", port=port, database_url=url, users=users,
                         ids={"toulouse": tlse, "montpellier": mtp, "neuro": neuro}, log=log)
    finally:
        stop(server)
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
