"""Snapshots of long dossiers (every 25 events) and time travel, on real PostgreSQL."""

from __future__ import annotations

import json
from uuid import UUID

import psycopg
import pytest

from adapters.settings import conninfo
from application import Relais
from domain.dossier import Dossier
from entrypoints.bootstrap import build_app
from tests.conftest import PATIENT

SHA = "cd" * 32


def snapshots(settings, dossier_id: str) -> list[tuple[int, str, dict]]:
    with psycopg.connect(conninfo(settings.database_url)) as conn:
        rows = conn.execute(
            "SELECT originator_version, topic, state FROM relais_snapshots WHERE originator_id = %s"
            " ORDER BY originator_version",
            (UUID(dossier_id),),
        ).fetchall()
    return [(v, t, json.loads(bytes(s))) for v, t, s in rows]


@pytest.fixture()
def long_dossier(relais: Relais, world: dict) -> dict:
    """A draft with documents attached and removed: 1 + 30 events, then sent (33 events)."""
    req = world["requester"]
    did = relais.create_dossier(actor_id=req, workflow="imaging_transfer", question="Transfert", consent="given",
                                **PATIENT)
    kept = []
    for i in range(15):
        doc = relais.attach_document(dossier_id=did, actor_id=req, filename=f"piece-{i:02d}.pdf",
                                     media_type="application/pdf", size=1000 + i, sha256=SHA)
        if i % 3 == 0:
            kept.append(doc)
        else:
            relais.remove_document(dossier_id=did, actor_id=req, document_id=doc)
    # 1 + 15 attached + 10 removed = 26; attach 5 more → 31
    for i in range(5):
        kept.append(relais.attach_document(dossier_id=did, actor_id=req, filename=f"extra-{i}.pdf",
                                           media_type="application/pdf", size=i, sha256=SHA))
    sid = relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=world["montpellier"],
                                   service_id=world["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=req)
    return {"dossier_id": did, "send_id": sid, "kept": kept}


def test_snapshot_taken_at_version_25(relais, world, long_dossier, settings):
    did = long_dossier["dossier_id"]
    assert Relais.snapshotting_intervals[Dossier] == 25
    snaps = snapshots(settings, did)
    assert [(v, t) for v, t, _ in snaps] == [(25, "eventsourcing.domain:Snapshot")]
    state = snaps[0][2]
    assert state["topic"] == "relais:Dossier"  # the aggregate is named by its pinned topic
    # at version 25 the 15th document (piece-14) has just been attached, not yet removed
    assert sorted(doc["filename"] for doc in state["state"]["documents"].values()) == [
        "piece-00.pdf", "piece-03.pdf", "piece-06.pdf", "piece-09.pdf", "piece-12.pdf", "piece-14.pdf"]


def test_long_dossier_loads_correctly_with_and_without_snapshot(relais, world, long_dossier, settings):
    did = long_dossier["dossier_id"]
    fresh = build_app(settings)
    try:
        d = fresh.repository.get(UUID(did))
        assert d.version == 33
        assert [doc["document_id"] for doc in d.documents.values()] == long_dossier["kept"]
        assert len(d.documents) == 10
        assert d.state == "requested"

        # the same state replayed from the events alone (no snapshot)
        replayed = None
        for event in fresh.events.get(UUID(did)):
            replayed = event.mutate(replayed)
        assert replayed.version == d.version
        assert replayed.documents == d.documents
        assert replayed.sends == d.sends
        assert replayed.patient == d.patient
    finally:
        fresh.close()

    details = relais.get_dossier(dossier_id=did, actor_id=world["recipient"])
    assert details.version == 33
    assert [doc["filename"] for doc in details.documents] == [
        "piece-00.pdf", "piece-03.pdf", "piece-06.pdf", "piece-09.pdf", "piece-12.pdf",
        "extra-0.pdf", "extra-1.pdf", "extra-2.pdf", "extra-3.pdf", "extra-4.pdf",
    ]


def test_commands_after_the_snapshot(relais, world, long_dossier):
    did, sid = long_dossier["dossier_id"], long_dossier["send_id"]
    relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=sid)
    relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=sid, report="Reçu")
    d = relais.get_dossier(dossier_id=did, actor_id=world["requester"])
    assert (d.version, d.state) == (35, "answered")


def test_time_travel(relais, world, long_dossier):
    did = long_dossier["dossier_id"]
    v1 = relais.repository.get(UUID(did), version=1)
    assert (v1.version, v1.documents, v1.first_sent_on) == (1, {}, None)

    v3 = relais.repository.get(UUID(did), version=3)
    assert v3.version == 3
    assert [doc["filename"] for doc in v3.documents.values()] == ["piece-00.pdf", "piece-01.pdf"]
    assert v3.is_draft

    v24 = relais.repository.get(UUID(did), version=24)  # before the snapshot: from the events
    v25 = relais.repository.get(UUID(did), version=25)  # the snapshot itself
    v26 = relais.repository.get(UUID(did), version=26)  # the snapshot + 1 event
    assert (v24.version, v25.version, v26.version) == (24, 25, 26)
    assert (len(v24.documents), len(v25.documents), len(v26.documents)) == (5, 6, 5)
    assert "piece-14.pdf" in [doc["filename"] for doc in v25.documents.values()]

    last = relais.repository.get(UUID(did))
    assert last.version == 33 and str(last.state) == "requested"
    before_send = relais.repository.get(UUID(did), version=32)
    assert str(before_send.state) == "draft"
