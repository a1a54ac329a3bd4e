"""The live inbox across a PostgreSQL restart: open pages are told « down », then resynchronised, and
the next dossier sent reaches every one of them.

On a private PostgreSQL cluster (initdb + pg_ctl on a free loopback port, stopped and started by the
test): the machine's shared server is never restarted.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from adapters.credentials import Credentials
from adapters.settings import Settings
from entrypoints.bootstrap import build_app, build_pool, build_web_app, upgrade
from projections.runner import catch_up
from tests.conftest import rpps
from tests.peers import free_port
from tests.web.conftest import PASSWORD
from tests.web.sse import Stream, serve, signed_in

BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


class Cluster:
    """A PostgreSQL cluster of the test's own (run as the postgres user when the test runs as root)."""

    def __init__(self, root: Path, port: int):
        self.root, self.port = root, port
        self.data, self.log = root / "data", root / "server.log"
        self.bin = Path(BINARIES[-1])
        self.url = f"postgresql://postgres@127.0.0.1:{port}/relais"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log), "-o", options)

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", str(self.data))


@pytest.fixture()
def cluster() -> Iterator[Cluster]:
    if not BINARIES:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    root = Path(tempfile.mkdtemp(prefix="relais-live-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    c = Cluster(root, free_port())
    c.init()
    c.start()
    try:
        with psycopg.connect(c.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute('CREATE DATABASE "relais"')
        yield c
    finally:
        try:
            c.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(root, ignore_errors=True)


def test_a_postgresql_restart_resyncs_open_pages_and_the_next_dossier_reaches_them(cluster: Cluster, tmp_path):
    settings = Settings(database_url=cluster.url, data_dir=tmp_path / "var")
    upgrade(settings)
    relais = build_app(settings)
    pool = build_pool(settings, max_size=1)
    toulouse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    montpellier = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
    requester = relais.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire",
                                        establishment_id=toulouse, roles=["clinician"])
    recipient = relais.add_practitioner(rpps=rpps(2), family_name="Durand", given_name="Paul",
                                        establishment_id=montpellier, roles=["clinician"])
    Credentials(pool).set_password(recipient, PASSWORD)
    pool.close()
    relais.close()

    def send_dossier(name: str) -> str:
        """A dossier of Toulouse sent to Montpellier, through a fresh application and the inbox projection."""
        app = build_app(settings)
        try:
            did = app.create_dossier(
                actor_id=requester, workflow="stroke_opinion", question="?", consent="given", patient_birth_name=name,
                patient_first_names="Anne", patient_birth_date="1960-01-01", patient_sex="F",
                patient_birth_place_code="31555",
            )
            app.address_recipient(dossier_id=did, actor_id=requester, establishment_id=montpellier)
            app.send_dossier(dossier_id=did, actor_id=requester)
            catch_up("inbox", settings.eventsourcing_env(), app)
            return str(did)
        finally:
            app.close()

    async def arrival(page: Stream, dossier: str) -> float:
        while True:
            event = await page.next("inbox", timeout=20, skip=("ping", "resync", "down", "ready"))
            if json.loads(event.data)["dossier"] == dossier:
                return event.at

    async def scenario(base: str) -> None:
        client = await signed_in(base, rpps(2))
        try:
            pages = [Stream(client), Stream(client), Stream(client)]  # three open tabs
            for page in pages:
                await page.next("ready")
            dossier = await asyncio.to_thread(send_dossier, "Avant")
            for page in pages:
                await arrival(page, dossier)

            for round_ in range(2):
                stopped_at = time.monotonic()
                await asyncio.to_thread(cluster.stop)
                for page in pages:  # the pages are told at once that nothing arrives for now
                    await page.next("down", timeout=10)
                down_at = time.monotonic()
                await asyncio.to_thread(cluster.start)
                started_at = time.monotonic()
                for page in pages:
                    await page.next("resync", timeout=15)
                resynced_at = time.monotonic()
                dossier = await asyncio.to_thread(send_dossier, f"Apres{'ABC'[round_]}")
                arrived = [await arrival(page, dossier) for page in pages]
                print(f"\nPostgreSQL restart (round {round_ + 1}): pages told « down » {down_at - stopped_at:.2f} s after "
                      f"the stop began; resynced {resynced_at - started_at:.2f} s after the server was back; next dossier "
                      f"on every page {max(arrived) - started_at:.2f} s after the server was back")
            for page in pages:
                await page.close()
        finally:
            await client.aclose()

    with serve(build_web_app(settings)) as base:
        asyncio.run(scenario(base))
