"""The deadline scheduler on a controllable clock: reminders at 50 % and 100 %, escalation of a stroke
dossier nobody took to the on-call pool, nothing escalated once accepted, exactly once through a crash,
rows due while it was down fired at start, woken by new due rows, and the same firing as arq jobs."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func

from adapters.live import LiveFeed
from adapters.scheduler import DeadlineFirer, Scheduler, fire_deadlines
from adapters.settings import Settings, conninfo
from application import Relais
from domain.dossier import Dossier
from entrypoints.bootstrap import build_pool, install_process_fixes
from projections.notifications import DUE_CHANNEL
from projections.runner import catch_up
from tests.clock import Clock
from tests.conftest import PATIENT, rpps

REDIS_URL = __import__("os").environ.get("RELAIS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture()
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture()
def relais(settings: Settings, clock: Clock):
    """The application on the test's clock (the `world` and `sent_dossier` fixtures use it)."""
    install_process_fixes()
    app = Relais(env=settings.eventsourcing_env(), clock=clock)
    yield app
    app.close()


@pytest.fixture()
def env(settings: Settings) -> dict:
    return settings.eventsourcing_env()


@pytest.fixture()
def pool(settings: Settings):
    pool = build_pool(settings, max_size=3)
    yield pool
    pool.close()


@pytest.fixture()
def firer(pool, relais, clock) -> DeadlineFirer:
    return DeadlineFirer(pool, relais, clock)


@pytest.fixture()
def on_call(relais, world) -> dict:
    """Montpellier's neuroradiology on-call pool (same specialty as the service) and its member."""
    pool_id = relais.add_service(establishment_id=world["montpellier"], code="astreinte", name="Astreinte neuroradio",
                                 kind="on_call_pool")
    member = relais.add_practitioner(
        rpps=rpps(20), family_name="Garnier", given_name="Léa", establishment_id=world["montpellier"],
        roles=["clinician"], service_ids=[pool_id], email="lea.garnier@chu-montpellier.fr",
    )
    return {"pool": pool_id, "member": member}


def follow(env: dict, relais: Relais) -> None:
    catch_up("directory", env, relais)
    catch_up("notifications", env, relais)


def rows(settings: Settings, sql: str, *params) -> list[dict]:
    with psycopg.connect(settings.database_url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def outcomes(fired) -> list[tuple[str, str]]:
    return [(f.step, f.outcome) for f in fired]


def told(settings: Settings, kind: str) -> list[tuple[str, str | None]]:
    """(practitioner, detail.step) of the notifications of `kind`, sorted."""
    return sorted((str(r["practitioner_id"]), r["detail"].get("step")) for r in rows(
        settings, "SELECT practitioner_id, detail FROM notifications WHERE kind = %s", kind))


def escalations(settings: Settings) -> int:
    return rows(settings, "SELECT count(*) AS n FROM relais_events WHERE topic = 'relais:Dossier.Escalated'")[0]["n"]


def test_reminders_at_half_and_full_delay_and_no_escalation_once_accepted(
    relais, world, on_call, sent_dossier, clock, env, settings, firer
):
    follow(env, relais)  # stroke « Immédiate »: accept within 10 min, answer within 30 min
    clock.advance(minutes=4, seconds=59)
    assert firer.fire_due() == []
    clock.advance(seconds=1)
    assert outcomes(firer.fire_due()) == [("accept_half", "reminded")]
    assert firer.fire_due() == []  # once
    relais.accept(dossier_id=sent_dossier["dossier_id"], send_id=sent_dossier["send_id"], actor_id=world["recipient"])
    follow(env, relais)
    clock.advance(minutes=5)
    assert outcomes(firer.fire_due()) == [("accept_due", "moot")]  # accepted in time: not escalated
    clock.advance(minutes=5)
    assert outcomes(firer.fire_due()) == [("answer_half", "reminded")]
    clock.advance(minutes=15, seconds=2)
    fired = firer.fire_due()
    assert outcomes(fired) == [("answer_due", "reminded")] and fired[0].late_ms == 2000
    follow(env, relais)
    assert escalations(settings) == 0
    assert told(settings, "reminder") == sorted([
        (world["recipient"], "accept_half"), (world["recipient"], "answer_half"), (world["recipient"], "answer_due")])
    assert told(settings, "deadline_missed") == [(world["requester"], "answer_due")]
    assert told(settings, "escalated_to_you") == []


def test_a_stroke_dossier_nobody_takes_escalates_to_the_on_call_pool(
    relais, world, on_call, sent_dossier, clock, env, settings, firer
):
    follow(env, relais)
    clock.advance(minutes=10)
    assert outcomes(firer.fire_due()) == [("accept_half", "reminded"), ("accept_due", "escalated")]
    send = relais.load(Dossier, sent_dossier["dossier_id"], "télédossier").send_of(sent_dossier["send_id"])
    assert send["escalated_to"]["service_id"] == on_call["pool"] and escalations(settings) == 1
    follow(env, relais)
    # the step that escalated, as every page and mail names steps (STEP_LABELS), not a decline's reason code
    assert told(settings, "escalated_to_you") == [(on_call["member"], "accept_due")]
    assert told(settings, "escalated") == sorted([(world["requester"], "accept_due"), (world["recipient"], "accept_due")])
    mails = rows(settings, "SELECT address FROM notification_mails")
    assert [m["address"] for m in mails] == ["lea.garnier@chu-montpellier.fr"]
    # the pool sees it as a recipient: it may take it in charge; later reminders go to whoever did
    relais.accept(dossier_id=sent_dossier["dossier_id"], send_id=sent_dossier["send_id"], actor_id=on_call["member"])
    follow(env, relais)
    clock.advance(minutes=20)
    assert outcomes(firer.fire_due()) == [("answer_half", "reminded"), ("answer_due", "reminded")]
    follow(env, relais)
    assert told(settings, "reminder") == sorted([
        (world["recipient"], "accept_half"), (on_call["member"], "answer_half"), (on_call["member"], "answer_due")])


def test_without_an_escalation_target_the_recipient_is_reminded_and_the_requester_told(
    relais, world, sent_dossier, clock, env, settings, firer
):
    follow(env, relais)
    clock.advance(minutes=10)
    assert outcomes(firer.fire_due()) == [("accept_half", "reminded"), ("accept_due", "no_target")]
    assert escalations(settings) == 0
    assert told(settings, "reminder") == sorted([(world["recipient"], "accept_half"), (world["recipient"], "accept_due")])
    assert told(settings, "deadline_missed") == [(world["requester"], "accept_due")]


def test_a_forward_makes_the_old_deadline_moot(relais, world, sent_dossier, clock, env, settings, firer):
    relais.forward(dossier_id=sent_dossier["dossier_id"], send_id=sent_dossier["send_id"], actor_id=world["recipient"],
                   to_establishment_id=world["montpellier"], to_practitioner_id=world["outsider"])
    follow(env, relais)
    clock.advance(minutes=5)
    fired = firer.fire_due()
    assert sorted((f.generation > 0, f.step, f.outcome) for f in fired) == [
        (False, "accept_half", "moot"), (True, "accept_half", "reminded")]
    assert told(settings, "reminder") == [(world["outsider"], "accept_half")]


def test_a_crash_while_firing_fires_nothing_then_everything_exactly_once(
    relais, world, on_call, sent_dossier, clock, env, settings, firer, monkeypatch
):
    follow(env, relais)
    clock.advance(minutes=31)
    calls = []
    original = DeadlineFirer._remind

    def crash(self, curs, row):
        calls.append(row["step"])
        if row["step"] == "answer_half":  # after the escalation was recorded and a reminder written
            raise RuntimeError("scheduler tué")
        return original(self, curs, row)

    monkeypatch.setattr(DeadlineFirer, "_remind", crash)
    with pytest.raises(RuntimeError):
        firer.fire_due()
    assert calls == ["accept_half", "answer_half"] and escalations(settings) == 1
    assert rows(settings, "SELECT 1 FROM deadline_due WHERE fired_at IS NOT NULL") == []
    assert rows(settings, "SELECT 1 FROM notifications WHERE kind = 'reminder'") == []
    monkeypatch.setattr(DeadlineFirer, "_remind", original)
    restarted = DeadlineFirer(firer.pool, relais, clock)
    assert outcomes(restarted.fire_due()) == [
        ("accept_half", "reminded"), ("accept_due", "escalated"), ("answer_half", "reminded"), ("answer_due", "reminded")]
    assert restarted.fire_due() == []
    assert escalations(settings) == 1  # not escalated again
    assert len(rows(settings, "SELECT 1 FROM notifications WHERE kind = 'reminder'")) == 3


def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_the_loop_fires_what_fell_due_while_it_was_down_and_wakes_on_new_due_rows(
    relais, world, sent_dossier, clock, env, settings, firer
):
    follow(env, relais)
    clock.advance(minutes=11)  # accept_half and accept_due fell due while no scheduler ran

    async def scenario() -> None:
        feed = LiveFeed(conninfo(settings.database_url), DUE_CHANNEL, application_name="relais-test-scheduler")
        scheduler = Scheduler(firer, feed, max_sleep=60.0)
        stop = asyncio.Event()
        task = asyncio.create_task(scheduler.run(stop))
        try:
            await asyncio.to_thread(wait_until, lambda: scheduler.fired == 2)
            # The loop sleeps until answer_half (4 min away by its clock). Time passes without it knowing…
            clock.advance(hours=1)
            await asyncio.to_thread(wait_until, lambda: feed.connected)
            # …until a new send's due rows are written (NOTIFY relais_due): it looks again, fires what is due.
            await asyncio.to_thread(
                lambda: relais.address_recipient(dossier_id=sent_dossier["dossier_id"], actor_id=world["requester"],
                                                 establishment_id=world["toulouse"]))
            await asyncio.to_thread(relais.send_dossier, dossier_id=sent_dossier["dossier_id"], actor_id=world["requester"])
            await asyncio.to_thread(follow, env, relais)
            await asyncio.to_thread(wait_until, lambda: scheduler.fired == 4)
        finally:
            stop.set()
            await task
            await feed.close()

    asyncio.run(scenario())
    fired = rows(settings, "SELECT step, outcome FROM deadline_due WHERE send_id = %s AND fired_at IS NOT NULL "
                           "ORDER BY due_at", sent_dossier["send_id"])
    assert [(r["step"], r["outcome"]) for r in fired] == [
        ("accept_half", "reminded"), ("accept_due", "no_target"), ("answer_half", "reminded"), ("answer_due", "reminded")]


def test_with_redis_due_rows_become_deferred_arq_jobs_that_fire_them(
    relais, world, on_call, clock, env, settings, firer
):
    # arq defers by the real clock: this dossier is sent two hours ago, so its due times are past for arq too
    clock.advance(hours=-2)
    did = relais.create_dossier(actor_id=world["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                                urgency="stat", consent="given", **PATIENT)
    relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"],
                             service_id=world["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=world["requester"])
    follow(env, relais)
    clock.advance(minutes=31)
    queue = f"relais-test-deadlines-{uuid.uuid4().hex[:8]}"  # of its own: other sessions share this Redis

    async def scenario() -> list:
        redis = await create_pool(RedisSettings.from_dsn(REDIS_URL))
        loop = asyncio.get_running_loop()
        queued: list = []

        def enqueue(key: str, due_at: datetime):
            job = asyncio.run_coroutine_threadsafe(redis.enqueue_job(
                "fire_deadlines", _job_id=key, _defer_until=due_at, _queue_name=queue), loop).result(10)
            queued.append((key, job is not None))

        scheduler = Scheduler(firer, None, enqueue=enqueue)
        await asyncio.to_thread(scheduler._hand_over)
        scheduler._queued.clear()  # a restarted scheduler hands the same rows again: the job ids dedupe them
        await asyncio.to_thread(scheduler._hand_over)
        worker = Worker(
            [func(fire_deadlines, name="fire_deadlines")], queue_name=queue, redis_pool=redis, burst=True,
            handle_signals=False, ctx={"deadlines": firer}, poll_delay=0.05, max_burst_jobs=-1,
        )
        try:
            await worker.main()
        finally:
            await worker.close()
            await redis.delete(queue)
            await redis.aclose()
        return queued

    queued = asyncio.run(scenario())
    assert len(queued) == 8 and sum(fresh for _, fresh in queued) == 4
    assert sorted(k.rsplit(":", 1)[1] for k, fresh in queued if fresh) == [
        "accept_due", "accept_half", "answer_due", "answer_half"]
    fired = rows(settings, "SELECT outcome FROM deadline_due WHERE fired_at IS NOT NULL")
    assert sorted(r["outcome"] for r in fired) == ["escalated", "reminded", "reminded", "reminded"]
    assert escalations(settings) == 1


def test_relais_worker_knows_the_firing_job_and_runs_it_every_minute():
    from adapters.jobs import worker_settings
    from entrypoints.bootstrap import JOBS

    ws = worker_settings(REDIS_URL, JOBS, every_minute={"fire_deadlines": fire_deadlines})
    assert "fire_deadlines" in {f.name for f in ws.functions}
    [cron] = ws.cron_jobs
    assert cron.name == "cron:fire_deadlines" and cron.coroutine is fire_deadlines
    assert cron.second == 0 and cron.minute is None and cron.run_at_startup  # every minute, and at start


def test_a_row_written_already_due_is_late_from_its_writing_not_from_its_due_time(relais, world, clock, env, firer):
    """A send recorded with a past business time (the demo's dossiers, a delayed entry) has steps already
    due when the projection writes them: they fire at once, and their lateness is the scheduler's own
    (from the row's writing), not hours of « retard » (fired_at − due_at was 4.7 days for the demo)."""
    did = relais.create_dossier(actor_id=world["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                                urgency="stat", consent="given", occurred_at=clock.now - timedelta(hours=3), **PATIENT)
    relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"],
                             service_id=world["neuro"], occurred_at=clock.now - timedelta(hours=2, minutes=59))
    relais.send_dossier(dossier_id=did, actor_id=world["requester"], occurred_at=clock.now - timedelta(hours=2))
    follow(env, relais)
    fired = firer.fire_due()
    assert [f.step for f in fired] == ["accept_half", "accept_due", "answer_half", "answer_due"]
    assert all(f.late_ms < 60_000 for f in fired), [f.late_ms for f in fired]
