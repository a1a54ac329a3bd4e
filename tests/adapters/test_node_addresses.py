"""A DICOM peer is trusted on its calling AE title *and* its address: the directory's node entry names
the addresses it calls from (its host, plus addresses, networks or host names), an association from
elsewhere is rejected (A-ASSOCIATE-RJ, calling AE title not recognised) and logged; a node marked
« adresse non vérifiée » (a NAT'd gateway) is not checked. Directory changes reach a running node by
a PostgreSQL notification, not by its slow safety poll.

Peers: dcmtk echoscu/storescu from 127.0.0.1, pynetdicom bound to 127.0.0.2; a real node
(`entrypoints.dicom_node.node_server`) and the directory projection following the log."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from adapters.dicom import scp
from domain.imaging import received_study_id
from entrypoints.dicom_node import node_server
from projections import runner
from projections.runner import catch_up, open_view
from tests.peers import free_port, wait_port
from tests.peers import stop as stop_process
from tests.processes import RelaisProcess

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_study  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("echoscu") is None, reason="dcmtk not installed (scripts/system-packages.sh)")

ENV = dict(os.environ, TCP_NODELAY="1")
WAIT = 30.0  # generous: a loaded 2-core machine; a notified change takes well under a second


def echo(port: int, calling: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["echoscu", "-aet", calling, "-aec", "RELAIS", "-to", "10", "127.0.0.1", str(port)],
        capture_output=True, text=True, env=ENV, timeout=60,
    )


def echo_from(port: int, calling: str, source: str) -> bool:
    """A C-ECHO from `source` (a loopback address of this machine): True when the association is accepted."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="RELAIS", bind_address=(source, 0))
    try:
        return bool(assoc.is_established)
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def until(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    """True as soon as `condition()` holds; False if it still does not after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.fixture()
def node(relais, world, settings, monkeypatch):
    """A running node and the directory projection following the log. The node's safety poll is made
    an hour long: a directory change can only reach it through the notification."""
    monkeypatch.setattr(scp, "REFRESH_SECONDS", 3600.0)
    relais.add_node(aet="TLSE_GW", host="127.0.0.1", port=104, establishment_id=world["toulouse"], kind="gateway")
    relais.add_node(aet="FAR_GW", host="10.1.2.3", port=104, establishment_id=world["toulouse"], kind="gateway")
    env = settings.eventsourcing_env()
    catch_up("directory", env, relais)
    stop = threading.Event()
    projections = threading.Thread(target=runner.run, args=(["directory"], env, stop), daemon=True)
    projections.start()
    s = replace(settings, dicom_port=free_port())
    directory, imaging = open_view("directory", env), open_view("imaging", env)
    with node_server(s, relais, directory, imaging) as n:
        t = threading.Thread(target=n.serve, args=(stop,), daemon=True)
        t.start()
        assert until(lambda: echo(s.dicom_port, "TLSE_GW").returncode == 0), "the node never answered"
        yield {"node": n, "port": s.dicom_port, "settings": s}
        stop.set()
        t.join(timeout=20)
    projections.join(timeout=20)
    directory.datastore.close()
    imaging.datastore.close()


def test_a_known_ae_title_from_another_address_is_rejected_and_logged(node, caplog):
    caplog.set_level(logging.INFO, logger="relais.dicom")
    r = echo(node["port"], "FAR_GW")  # FAR_GW is 10.1.2.3 in the directory; this call comes from 127.0.0.1
    assert r.returncode != 0
    assert "Rejected" in r.stdout + r.stderr and "Calling AE Title Not Recognized" in r.stdout + r.stderr
    refused = [rec.getMessage() for rec in caplog.records if "FAR_GW" in rec.getMessage()]
    assert any("refusée" in m and "127.0.0.1" in m and "adresse" in m for m in refused), refused
    assert echo(node["port"], "TLSE_GW").returncode == 0  # its own address: accepted


def test_a_node_called_from_another_loopback_address_is_rejected(node):
    # TLSE_GW is 127.0.0.1 in the directory; the same AE title from 127.0.0.2 is someone else
    assert echo_from(node["port"], "TLSE_GW", "127.0.0.1")
    assert not echo_from(node["port"], "TLSE_GW", "127.0.0.2")


def test_instances_pushed_from_the_wrong_address_are_not_received(node, relais, world, tmp_path):
    data = write_study(tmp_path / "in", series=1, per_series=2)
    r = subprocess.run(
        ["storescu", "-aet", "FAR_GW", "-aec", "RELAIS", "-to", "10", "127.0.0.1", str(node["port"]),
         *map(str, data["files"])], capture_output=True, text=True, env=ENV, timeout=60,
    )
    assert r.returncode != 0 and "Rejected" in r.stdout + r.stderr
    node["node"].receiver.flush_all()
    assert received_study_id(world["toulouse"], data["study_uid"]) not in relais.repository
    assert not list(Path(node["settings"].dicom_root).rglob("*.dcm"))


def test_calling_addresses_and_networks_of_a_node_are_accepted(node, relais):
    assert not echo_from(node["port"], "FAR_GW", "127.0.0.2")
    relais.set_node_addresses(aet="FAR_GW", addresses=["192.0.2.7", "127.0.0.0/30"], unverified=False)
    assert until(lambda: echo_from(node["port"], "FAR_GW", "127.0.0.2"))  # in 127.0.0.0/30
    assert echo(node["port"], "FAR_GW").returncode == 0  # 127.0.0.1, in it too
    assert not echo_from(node["port"], "FAR_GW", "127.0.0.5")  # outside


def test_the_opt_out_accepts_a_node_from_any_address(node, relais):
    assert echo(node["port"], "FAR_GW").returncode != 0
    relais.set_node_addresses(aet="FAR_GW", addresses=[], unverified=True)  # « adresse non vérifiée »
    assert until(lambda: echo(node["port"], "FAR_GW").returncode == 0)
    relais.set_node_addresses(aet="FAR_GW", addresses=[], unverified=False)  # checked again
    assert until(lambda: echo(node["port"], "FAR_GW").returncode != 0)


def test_a_node_added_or_moved_takes_effect_without_waiting_for_the_poll(node, relais, world):
    port = node["port"]
    assert echo(port, "NEW_GW").returncode != 0
    relais.add_node(aet="NEW_GW", host="127.0.0.1", port=104, establishment_id=world["toulouse"], kind="gateway")
    assert until(lambda: echo(port, "NEW_GW").returncode == 0)  # the safety poll is an hour: notified
    relais.move_node(aet="NEW_GW", host="198.51.100.4", port=104)
    assert until(lambda: echo(port, "NEW_GW").returncode != 0)
    relais.move_node(aet="NEW_GW", host="localhost", port=104)  # a host name: its addresses
    assert until(lambda: echo(port, "NEW_GW").returncode == 0)


def test_a_node_of_several_processes_checks_addresses_and_follows_the_directory(relais, world, settings):
    """The real `relais scp` with two workers (each association served by a worker process that
    received its connection from the acceptor): the peer's address is still the caller's."""
    relais.add_node(aet="FAR_GW", host="10.1.2.3", port=104, establishment_id=world["toulouse"], kind="gateway")
    env = settings.eventsourcing_env()
    catch_up("directory", env, relais)
    stop = threading.Event()
    projections = threading.Thread(target=runner.run, args=(["directory"], env, stop), daemon=True)
    projections.start()
    port = free_port()
    node = RelaisProcess(["scp"], dict(
        os.environ, RELAIS_DATABASE_URL=settings.database_url, RELAIS_DATA_DIR=str(settings.data_dir),
        RELAIS_DICOM_PORT=str(port), RELAIS_DICOM_WORKERS="2", RELAIS_LOG_LEVEL="INFO",
    ))
    try:
        wait_port(port, 60, node.process)
        assert until(lambda: len(re.findall(r"processus \d/2 prêt", node.output)) == 2, 60), node.output
        assert echo(port, "FAR_GW").returncode != 0
        assert until(lambda: "association refusée : FAR_GW depuis 127.0.0.1" in node.output), node.output
        relais.set_node_addresses(aet="FAR_GW", addresses=["127.0.0.1"], unverified=False)
        assert until(lambda: echo(port, "FAR_GW").returncode == 0), node.output  # both workers told
        assert all(echo(port, "FAR_GW").returncode == 0 for _ in range(4)), node.output
    finally:
        stop_process(node.process)
        stop.set()
        projections.join(timeout=20)


LISTENER = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'relais-dicom-directory'"


def test_a_change_made_while_the_node_had_lost_its_listening_connection_is_not_missed(node, relais, world, settings):
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        assert until(lambda: len(conn.execute(LISTENER).fetchall()) == 1)
        ((pid,),) = conn.execute(LISTENER).fetchall()
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # at once, before it listens again: its notification may be lost, the reconnection reads again
        relais.add_node(aet="LATE_GW", host="127.0.0.1", port=104, establishment_id=world["toulouse"], kind="gateway")
        assert until(lambda: echo(node["port"], "LATE_GW").returncode == 0)
        assert until(lambda: [p for (p,) in conn.execute(LISTENER).fetchall()] not in ([], [pid]))
