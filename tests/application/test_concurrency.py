"""Concurrent commands on one dossier (real PostgreSQL): exactly one wins, the other gets ConflictError."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from uuid import UUID

import psycopg
import pytest

from adapters.settings import conninfo
from application import Relais
from application.errors import AlreadyExistsError, ConflictError
from domain.errors import SendStateError
from entrypoints.bootstrap import build_app
from tests.conftest import PATIENT, rpps


@pytest.fixture()
def colleague(relais: Relais, world: dict) -> str:
    """A second member of Montpellier's neuroradiology."""
    return relais.add_practitioner(
        rpps=rpps(20), family_name="Moreau", given_name="Julie", establishment_id=world["montpellier"],
        roles=["clinician"], service_ids=[world["neuro"]],
    )


@pytest.fixture()
def apps(settings) -> Iterator[tuple[Relais, Relais]]:
    """Two application instances on the same database, as two web workers would be."""
    a, b = build_app(settings), build_app(settings)
    yield a, b
    a.close()
    b.close()


def stored_events(settings, dossier_id: str) -> list[tuple[int, str]]:
    with psycopg.connect(conninfo(settings.database_url)) as conn:
        return conn.execute(
            "SELECT originator_version, topic FROM relais_events WHERE originator_id = %s ORDER BY originator_version",
            (UUID(dossier_id),),
        ).fetchall()


def race(apps: tuple[Relais, Relais], actions: tuple[Callable[[Relais], object], Callable[[Relais], object]]):
    """Runs one action per app in two threads; both load the dossier before either commits.

    Returns (outcomes, loaded_versions): an outcome is the action's result or the exception raised.
    """
    barrier = threading.Barrier(2, timeout=20)
    loaded: list[int] = []
    lock = threading.Lock()

    def gate(app: Relais) -> None:
        original = app.core.commit  # every use case commits through the app's core

        def commit(*aggregates):
            with lock:
                # version of what this command loaded (before its own new events)
                loaded.append(aggregates[0].version - len(aggregates[0].pending_events))
            barrier.wait()  # both commands have loaded and decided: now both try to save
            return original(*aggregates)

        app.core.commit = commit  # type: ignore[method-assign]

    outcomes: list[object] = [None, None]

    def run(i: int) -> None:
        try:
            outcomes[i] = actions[i](apps[i])
        except Exception as e:  # noqa: BLE001 - the outcome is what we assert on
            outcomes[i] = e

    for app in apps:
        gate(app)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive(), "a command hung"
    for app in apps:
        del app.core.commit
    return outcomes, loaded


def split(outcomes: list[object]) -> tuple[list[int], list[int]]:
    ok = [i for i, o in enumerate(outcomes) if not isinstance(o, Exception)]
    conflicts = [i for i, o in enumerate(outcomes) if isinstance(o, ConflictError)]
    others = [o for o in outcomes if isinstance(o, Exception) and not isinstance(o, ConflictError)]
    assert not others, f"unexpected errors: {others!r}"
    return ok, conflicts


def test_accept_versus_decline_of_the_same_send(relais, world, sent_dossier, colleague, apps, settings):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    before = relais.max_position()
    outcomes, loaded = race(apps, (
        lambda app: app.accept(dossier_id=did, actor_id=world["recipient"], send_id=sid),
        lambda app: app.decline(dossier_id=did, actor_id=colleague, send_id=sid, reason_code="unavailable"),
    ))
    assert loaded == [3, 3]
    ok, conflicts = split(outcomes)
    assert len(ok) == 1 and len(conflicts) == 1

    events = stored_events(settings, did)
    assert [v for v, _ in events] == [1, 2, 3, 4]
    winner_topic = "relais:Dossier.Accepted" if ok == [0] else "relais:Dossier.Declined"
    assert events[-1] == (4, winner_topic)
    assert [t for _, t in events].count("relais:Dossier.Accepted") + [t for _, t in events].count(
        "relais:Dossier.Declined") == 1
    assert relais.max_position() == before + 1

    d = relais.repository.get(UUID(did))
    assert d.sends[sid]["state"] == ("in_progress" if ok == [0] else "declined")


def test_two_colleagues_both_accepting(relais, world, sent_dossier, colleague, apps, settings):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    actors = (world["recipient"], colleague)
    outcomes, loaded = race(apps, (
        lambda app: app.accept(dossier_id=did, actor_id=actors[0], send_id=sid),
        lambda app: app.accept(dossier_id=did, actor_id=actors[1], send_id=sid),
    ))
    assert loaded == [3, 3]
    ok, conflicts = split(outcomes)
    assert len(ok) == 1 and len(conflicts) == 1

    events = stored_events(settings, did)
    assert [t for _, t in events] == [
        "relais:Dossier.Created", "relais:Dossier.RecipientAddressed", "relais:Dossier.Sent", "relais:Dossier.Accepted"]
    d = relais.repository.get(UUID(did))
    assert d.sends[sid]["accepted_by"] == actors[ok[0]]
    (accepted,) = [e for e in relais.events.get(UUID(did)) if type(e).__name__ == "Accepted"]
    assert accepted.actor["practitioner_id"] == actors[ok[0]]

    # the loser, trying again, now sees the truth: the send is no longer waiting for acceptance
    with pytest.raises(SendStateError):
        relais.accept(dossier_id=did, actor_id=actors[conflicts[0]], send_id=sid)


def test_independent_sends_of_one_dossier_still_conflict_and_retry_works(relais, world, apps, settings):
    """Two recipients answering their own sends at once: one retry needed, nothing lost."""
    nimes = relais.add_establishment(finess="300780038", name="CHU de Nîmes", department="30")
    nimes_doc = relais.add_practitioner(rpps=rpps(21), family_name="Garcia", given_name="Inès",
                                        establishment_id=nimes, roles=["clinician"])
    req = world["requester"]
    did = relais.create_dossier(actor_id=req, workflow="generic_opinion", question="?", consent="given", **PATIENT)
    mtp = relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=world["montpellier"],
                                   service_id=world["neuro"])
    nim = relais.address_recipient(dossier_id=did, actor_id=req, establishment_id=nimes)
    relais.send_dossier(dossier_id=did, actor_id=req)

    actions = (
        lambda app: app.accept(dossier_id=did, actor_id=world["recipient"], send_id=mtp),
        lambda app: app.accept(dossier_id=did, actor_id=nimes_doc, send_id=nim),
    )
    outcomes, loaded = race(apps, actions)
    assert loaded == [4, 4]
    ok, conflicts = split(outcomes)
    assert len(ok) == 1 and len(conflicts) == 1
    actions[conflicts[0]](relais)  # the retry succeeds on the new version
    d = relais.repository.get(UUID(did))
    assert (d.version, d.sends[mtp]["state"], d.sends[nim]["state"]) == (6, "in_progress", "in_progress")
    assert [v for v, _ in stored_events(settings, did)] == [1, 2, 3, 4, 5, 6]


def test_stale_expected_version(relais, world, sent_dossier):
    did, sid = sent_dossier["dossier_id"], sent_dossier["send_id"]
    seen = relais.get_dossier(dossier_id=did, actor_id=world["recipient"]).version
    assert seen == 3
    relais.request_complement(dossier_id=did, actor_id=world["recipient"], send_id=sid, message="Bilan ?",
                              expected_version=seen)
    before = relais.max_position()
    with pytest.raises(ConflictError):
        relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=sid, report="Avis",
                            expected_version=seen)
    with pytest.raises(ConflictError):  # a version from the future is stale too
        relais.provide_complement(dossier_id=did, actor_id=world["requester"], send_id=sid, message="x",
                                  expected_version=seen + 5)
    assert relais.max_position() == before
    d = relais.get_dossier(dossier_id=did, actor_id=world["recipient"])
    assert (d.version, d.sends[0]["state"]) == (4, "on_hold")
    relais.provide_complement(dossier_id=did, actor_id=world["requester"], send_id=sid, message="Bilan joint",
                              expected_version=4)
    assert relais.get_dossier(dossier_id=did, actor_id=world["recipient"]).version == 5


def test_concurrent_creation_of_the_same_establishment(relais, apps):
    """The FINESS-derived id makes the second creation a conflict, reported as AlreadyExistsError."""
    outcomes, _ = race(apps, (
        lambda app: app.add_establishment(finess="310781406", name="CHU de Toulouse", department="31"),
        lambda app: app.add_establishment(finess="310781406", name="CHU Toulouse (doublon)", department="31"),
    ))
    ok = [o for o in outcomes if not isinstance(o, Exception)]
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert len(ok) == 1 and len(errors) == 1
    assert type(errors[0]) is AlreadyExistsError
    assert relais.recorder.max_notification_id() == 1
