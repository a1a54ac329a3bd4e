"""Answer deadlines: recorded with each send and forward, per-service overrides, escalation of a send not
accepted in time (to the service's on-call pool or backup practitioner), who may then act on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from application import Relais
from application.errors import ForbiddenError
from domain.deadlines import DEFAULT_DELAYS, Deadline, Delays, applies, delays_for, format_delay, parse_delay
from domain.dossier import Dossier
from domain.errors import InvalidFieldError, NotAllowedError, SendStateError
from domain.values import Actor, Urgency, Workflow
from tests.clock import Clock
from tests.conftest import PATIENT, rpps


@pytest.fixture()
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture()
def app(settings, clock) -> Relais:
    from entrypoints.bootstrap import install_process_fixes

    install_process_fixes()
    relais = Relais(env=settings.eventsourcing_env(), clock=clock)
    yield relais
    relais.close()


@pytest.fixture()
def stroke_world(app: Relais) -> dict:
    """A requester in Toulouse; Montpellier's neuroradiology (one clinician), its on-call pool of the same
    specialty (one member), a cardiology on-call pool (another specialty), and a colleague elsewhere."""
    toulouse = app.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    montpellier = app.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
    neuro = app.add_service(establishment_id=montpellier, code="neuroradio", name="Neuroradiologie", specialty="neuroradiologie")
    pool = app.add_service(
        establishment_id=montpellier, code="astreinte-nrx", name="Astreinte neuroradiologie", specialty="neuroradiologie",
        kind="on_call_pool",
    )
    cardio_pool = app.add_service(
        establishment_id=montpellier, code="astreinte-cardio", name="Astreinte cardiologie", specialty="cardiologie",
        kind="on_call_pool",
    )
    requester = app.add_practitioner(rpps=rpps(11), family_name="Martin", given_name="Claire", establishment_id=toulouse,
                                     roles=["clinician"])
    recipient = app.add_practitioner(rpps=rpps(12), family_name="Durand", given_name="Paul", establishment_id=montpellier,
                                     roles=["clinician"], service_ids=[neuro])
    on_call = app.add_practitioner(rpps=rpps(13), family_name="Roux", given_name="Inès", establishment_id=montpellier,
                                   roles=["clinician"], service_ids=[pool])
    cardiologist = app.add_practitioner(rpps=rpps(14), family_name="Blanc", given_name="Marc", establishment_id=montpellier,
                                        roles=["clinician"], service_ids=[cardio_pool])
    return {"toulouse": toulouse, "montpellier": montpellier, "neuro": neuro, "pool": pool, "cardio_pool": cardio_pool,
            "requester": requester, "recipient": recipient, "on_call": on_call, "cardiologist": cardiologist}


def send_stroke(app: Relais, w: dict, urgency: str = "stat", service: str | None = None) -> tuple[str, str]:
    did = app.create_dossier(actor_id=w["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                             urgency=urgency, consent="given", **PATIENT)
    sid = app.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                                service_id=service or w["neuro"])
    app.send_dossier(dossier_id=did, actor_id=w["requester"])
    return did, sid


# ---------------------------------------------------------------------------------------------- the table


def test_every_workflow_but_legacy_has_a_deadline_for_every_urgency():
    for workflow in Workflow:
        if workflow == Workflow.LEGACY:
            assert delays_for(workflow, "stat") is None
            continue
        assert set(DEFAULT_DELAYS[workflow]) == set(Urgency)
        for urgency in Urgency:
            found = delays_for(workflow, urgency)
            assert found is not None and found[1] == "default"
            assert 0 < found[0].accept <= found[0].answer
    # the examples: stroke « Immédiate » 30 min, emergency opinion 1 h, generic 7 days, imaging 48 h
    assert DEFAULT_DELAYS[Workflow.STROKE_OPINION][Urgency.STAT].answer == 30
    assert DEFAULT_DELAYS[Workflow.EMERGENCY_OPINION][Urgency.STAT].answer == 60
    assert DEFAULT_DELAYS[Workflow.GENERIC_OPINION][Urgency.ROUTINE].answer == 7 * 24 * 60
    assert DEFAULT_DELAYS[Workflow.IMAGING_TRANSFER][Urgency.ROUTINE].answer == 48 * 60


def test_a_specific_override_wins_over_one_for_every_urgency():
    overrides = {"stroke_opinion/*": {"accept": 5, "answer": 20}, "stroke_opinion/stat": {"accept": 3, "answer": 15}}
    assert delays_for("stroke_opinion", "stat", overrides) == (Delays(3, 15), "service")
    assert delays_for("stroke_opinion", "urgent", overrides) == (Delays(5, 20), "service")
    assert delays_for("generic_opinion", "stat", overrides)[1] == "default"


def test_delays_are_parsed_and_said_in_french():
    assert [parse_delay(v, "x") for v in ("30", "30m", "2h", "7j", "7d", " 90 min ")] == [30, 30, 120, 7 * 1440, 7 * 1440, 90]
    for bad in ("", "0", "-3h", "2 semaines", "1.5h"):
        with pytest.raises(InvalidFieldError):
            parse_delay(bad, "x")
    assert [format_delay(m) for m in (10, 60, 90, 1440, 2880)] == ["10 min", "1 h", "1 h 30", "1 j", "2 j"]
    with pytest.raises(InvalidFieldError):
        Delays(60, 30)  # accepting cannot take longer than answering


def test_steps_and_what_still_applies():
    start = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)
    d = Deadline.starting(start, Delays(10, 30))
    assert d.steps() == [
        ("accept_half", start + timedelta(minutes=5)), ("accept_due", start + timedelta(minutes=10)),
        ("answer_half", start + timedelta(minutes=15)), ("answer_due", start + timedelta(minutes=30)),
    ]
    assert applies("accept_due", "requested") and not applies("accept_due", "in_progress")
    assert applies("answer_due", "in_progress") and applies("answer_half", "requested")
    assert not applies("answer_due", "on_hold")  # the requester owes a complement
    assert not any(applies(s, state) for s, _ in d.steps() for state in ("answered", "declined", "closed", "cancelled"))


# ------------------------------------------------------------------------------------ recorded with a send


def test_the_deadline_is_recorded_with_the_sending_from_business_time(app, stroke_world, clock):
    did, sid = send_stroke(app, stroke_world)
    d = app.load(Dossier, did, "télédossier")
    deadline = d.deadline_of(sid)
    assert deadline == Deadline(clock.now, clock.now + timedelta(minutes=10), clock.now + timedelta(minutes=30))
    assert d.send_of(sid)["deadline"]["basis"] == {"accept": 10, "answer": 30, "source": "default"}
    sent = [e for e in app.core.events_of(d.id) if isinstance(e, Dossier.Sent)]
    assert sent[0].deadlines[sid]["answer_by"] == deadline.answer_by.isoformat()


def test_a_service_override_is_used_for_sends_to_that_service(app, stroke_world, clock):
    app.set_service_deadline(establishment_id=stroke_world["montpellier"], service_code="neuroradio",
                             workflow="stroke_opinion", urgency="stat", accept_minutes=5, answer_minutes=20)
    did, sid = send_stroke(app, stroke_world)
    d = app.load(Dossier, did, "télédossier")
    assert d.deadline_of(sid).answer_by == clock.now + timedelta(minutes=20)
    assert d.send_of(sid)["deadline"]["basis"]["source"] == "service"
    # removed: the platform's table again
    app.set_service_deadline(establishment_id=stroke_world["montpellier"], service_code="neuroradio",
                             workflow="stroke_opinion", urgency="stat", accept_minutes=0, answer_minutes=0)
    did2, sid2 = send_stroke(app, stroke_world)
    assert app.load(Dossier, did2, "télédossier").deadline_of(sid2).answer_by == clock.now + timedelta(minutes=30)


def test_an_unknown_workflow_or_service_is_refused_for_an_override(app, stroke_world):
    with pytest.raises(InvalidFieldError):
        app.set_service_deadline(establishment_id=stroke_world["montpellier"], service_code="neuroradio",
                                 workflow="legacy", accept_minutes=5, answer_minutes=20)
    with pytest.raises(InvalidFieldError):
        app.set_service_deadline(establishment_id=stroke_world["montpellier"], service_code="nope",
                                 workflow="stroke_opinion", accept_minutes=5, answer_minutes=20)


def test_a_forward_restarts_the_accept_delay_and_keeps_the_answer_deadline(app, stroke_world, clock):
    did, sid = send_stroke(app, stroke_world, urgency="routine")  # stroke routine: accept 4 h, answer 24 h
    first = app.load(Dossier, did, "télédossier").deadline_of(sid)
    clock.now += timedelta(hours=3)
    app.forward(dossier_id=did, actor_id=stroke_world["recipient"], send_id=sid, to_service_id=stroke_world["pool"])
    again = app.load(Dossier, did, "télédossier").deadline_of(sid)
    assert again.started_at == clock.now
    assert again.accept_by == clock.now + timedelta(hours=4)
    assert again.answer_by == first.answer_by


# ------------------------------------------------------------------------------------------- escalation


def test_a_send_not_accepted_in_time_escalates_to_the_on_call_pool_of_its_specialty(app, stroke_world, clock):
    did, sid = send_stroke(app, stroke_world)
    early = app.escalate_overdue(dossier_id=did, send_id=sid)
    assert early.to is None and "non écoulé" in early.reason
    clock.now += timedelta(minutes=10, seconds=1)
    done = app.escalate_overdue(dossier_id=did, send_id=sid)
    assert done.to == {"establishment_id": stroke_world["montpellier"], "service_id": stroke_world["pool"], "practitioner_id": None}
    events = [type(e).__name__ for e in app.core.events_of(app.load(Dossier, did, "télédossier").id)]
    assert events.count("Escalated") == 1
    again = app.escalate_overdue(dossier_id=did, send_id=sid)  # a scheduler restarted after escalating
    assert again.to is None
    assert [type(e).__name__ for e in app.core.events_of(app.load(Dossier, did, "télédossier").id)].count("Escalated") == 1
    # the pool's member reads and accepts it; the cardiology pool does not see it; the first recipient still may
    assert app.get_dossier(dossier_id=did, actor_id=stroke_world["on_call"]).number
    with pytest.raises(ForbiddenError):
        app.get_dossier(dossier_id=did, actor_id=stroke_world["cardiologist"])
    assert app.get_dossier(dossier_id=did, actor_id=stroke_world["recipient"]).number
    app.accept(dossier_id=did, actor_id=stroke_world["on_call"], send_id=sid)
    d = app.load(Dossier, did, "télédossier")
    assert d.send_of(sid)["state"] == "in_progress" and d.send_of(sid)["accepted_by"] == stroke_world["on_call"]


def test_accepted_in_time_nothing_escalates(app, stroke_world, clock):
    did, sid = send_stroke(app, stroke_world)
    clock.now += timedelta(minutes=9)
    app.accept(dossier_id=did, actor_id=stroke_world["recipient"], send_id=sid)
    clock.now += timedelta(minutes=5)
    result = app.escalate_overdue(dossier_id=did, send_id=sid)
    assert result.to is None and "sans objet" in result.reason


def test_the_configured_target_wins_a_backup_practitioner_or_another_pool(app, stroke_world, clock):
    m = stroke_world["montpellier"]
    app.set_service_escalation(establishment_id=m, service_code="neuroradio", to_practitioner_id=stroke_world["cardiologist"])
    did, sid = send_stroke(app, stroke_world)
    clock.now += timedelta(minutes=11)
    assert app.escalate_overdue(dossier_id=did, send_id=sid).to == {
        "establishment_id": m, "service_id": None, "practitioner_id": stroke_world["cardiologist"]}
    app.set_service_escalation(establishment_id=m, service_code="neuroradio", to_service_code="astreinte-cardio")
    did, sid = send_stroke(app, stroke_world)
    clock.now += timedelta(minutes=11)
    assert app.escalate_overdue(dossier_id=did, send_id=sid).to["service_id"] == stroke_world["cardio_pool"]
    with pytest.raises(InvalidFieldError):  # a backup who does not practise there
        app.set_service_escalation(establishment_id=m, service_code="neuroradio", to_practitioner_id=stroke_world["requester"])


def test_without_any_target_nothing_is_recorded_and_the_reason_is_said(app, stroke_world, clock):
    did, sid = send_stroke(app, stroke_world, service=stroke_world["cardio_pool"])  # a pool has no pool above it
    clock.now += timedelta(minutes=11)
    result = app.escalate_overdue(dossier_id=did, send_id=sid)
    assert result.to is None and "aucune astreinte" in result.reason


def test_only_the_platform_escalates_and_only_a_send_waiting_for_acceptance(app, stroke_world, clock):
    did, sid = send_stroke(app, stroke_world)
    d = app.load(Dossier, did, "télédossier")
    target = {"establishment_id": stroke_world["montpellier"], "service_id": stroke_world["pool"]}
    person = Actor(practitioner_id=stroke_world["recipient"], role="clinician", establishment_id=stroke_world["montpellier"])
    with pytest.raises(NotAllowedError):
        d.escalate(send_id=sid, to=target, reason="x", actor=person, occurred_at=clock.now)
    system = Actor(practitioner_id="system", role="system", establishment_id="")
    with pytest.raises(InvalidFieldError):  # another establishment
        d.escalate(send_id=sid, to={"establishment_id": stroke_world["toulouse"], "service_id": stroke_world["pool"]},
                   reason="x", actor=system, occurred_at=clock.now)
    d.escalate(send_id=sid, to=target, reason="x", actor=system, occurred_at=clock.now)
    with pytest.raises(SendStateError):  # twice to the same target
        d.escalate(send_id=sid, to=target, reason="x", actor=system, occurred_at=clock.now)


def test_a_forward_takes_the_send_away_from_the_escalation_target(app, stroke_world, clock):
    did, sid = send_stroke(app, stroke_world)
    clock.now += timedelta(minutes=11)
    assert app.escalate_overdue(dossier_id=did, send_id=sid).to is not None
    app.forward(dossier_id=did, actor_id=stroke_world["recipient"], send_id=sid, to_service_id=stroke_world["cardio_pool"])
    with pytest.raises(ForbiddenError):
        app.get_dossier(dossier_id=did, actor_id=stroke_world["on_call"])
    assert "escalated_to" not in app.load(Dossier, did, "télédossier").send_of(sid)


# ------------------------------------------------------------------------------------------------ absence


def test_away_and_back(app, stroke_world):
    from domain.directory import Practitioner

    app.set_away(practitioner_id=stroke_world["requester"], away=True, until="2026-12-24")
    assert app.load(Practitioner, stroke_world["requester"], "p").away == {"away": True, "until": "2026-12-24"}
    app.set_away(practitioner_id=stroke_world["requester"], away=False, admin_id=stroke_world["requester"])
    assert app.load(Practitioner, stroke_world["requester"], "p").away == {"away": False, "until": None}
    with pytest.raises(InvalidFieldError):
        app.set_away(practitioner_id=stroke_world["requester"], away=True, until="24/12/2026")
    with pytest.raises(ForbiddenError):  # someone else who is not an administrator
        app.set_away(practitioner_id=stroke_world["requester"], away=True, admin_id=stroke_world["recipient"])
