"""Statistics of deadlines: answered in time or late, taken in charge in time, escalations, sends without a
deadline counted apart — on a small world driven by a controllable clock, through batches and a rebuild."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from adapters.history_import import import_file, parse_legacy_text
from application import Relais
from entrypoints.bootstrap import install_process_fixes
from projections.runner import catch_up, open_view, rebuild
from projections.statistics_report import StatsQuery, build_report, to_csv
from tests.clock import Clock
from tests.conftest import PATIENT, rpps
from tests.history import HEADER, row

T0 = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)  # 09:00 in Paris
YEAR = dict(date_from=date(2025, 1, 1), date_to=date(2025, 12, 31))
TOULOUSE, MONTPELLIER = ("310781406", "31", "OCC"), ("340780477", "34", "OCC")
# history (no deadline): one answered after three days, one never answered — neither is ever late
HISTORY = "\n".join([
    HEADER,
    row("H1", "stroke_opinion", "2025-03-01T10:00:00+01:00", TOULOUSE, MONTPELLIER, "none", "2025-03-04T10:00:00+01:00"),
    row("H2", "stroke_opinion", "2025-03-02T10:00:00+01:00", TOULOUSE, MONTPELLIER, "none"),
]) + "\n"


@pytest.fixture()
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture()
def app(settings, clock) -> Iterator[Relais]:
    install_process_fixes()
    relais = Relais(env=settings.eventsourcing_env(), clock=clock)
    yield relais
    relais.close()


@pytest.fixture()
def env(settings) -> dict:
    return settings.eventsourcing_env()


@pytest.fixture()
def w(app: Relais) -> dict:
    return build_world(app)


def build_world(app: Relais) -> dict:
    """Toulouse requests; Montpellier's neuroradiology answers, its on-call pool (same specialty) takes escalations."""
    toulouse = app.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    montpellier = app.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
    neuro = app.add_service(establishment_id=montpellier, code="neuroradio", name="Neuroradiologie", specialty="neuroradiologie")
    pool = app.add_service(establishment_id=montpellier, code="astreinte-nrx", name="Astreinte neuroradiologie",
                           specialty="neuroradiologie", kind="on_call_pool")
    requester = app.add_practitioner(rpps=rpps(11), family_name="Martin", given_name="Claire", establishment_id=toulouse,
                                     roles=["clinician"])
    recipient = app.add_practitioner(rpps=rpps(12), family_name="Durand", given_name="Paul", establishment_id=montpellier,
                                     roles=["clinician"], service_ids=[neuro])
    on_call = app.add_practitioner(rpps=rpps(13), family_name="Roux", given_name="Inès", establishment_id=montpellier,
                                   roles=["clinician"], service_ids=[pool])
    return {"toulouse": toulouse, "montpellier": montpellier, "neuro": neuro, "pool": pool, "requester": requester,
            "recipient": recipient, "on_call": on_call}


def send(app: Relais, w: dict, urgency: str = "stat", workflow: str = "stroke_opinion") -> tuple[str, str]:
    did = app.create_dossier(actor_id=w["requester"], workflow=workflow, question="Thrombectomie ?", urgency=urgency,
                             consent="given", **PATIENT)
    sid = app.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                                service_id=w["neuro"])
    app.send_dossier(dossier_id=did, actor_id=w["requester"])
    return did, sid


def at(clock: Clock, minutes: float) -> None:
    clock.now = T0 + timedelta(minutes=minutes)


def small_world(app: Relais, w: dict, clock: Clock, env: dict, *, catch_up_between: bool) -> dict:
    """Stroke « Immédiate » (accept 10 min, answer 30 min) unless said: A in time; B accepted and answered late;
    C never accepted, escalated to the on-call pool, never answered; D « Normale » (accept 4 h, answer 24 h)
    forwarded to the pool at 3 h (accept again by 7 h, answer still by 24 h), accepted at 6 h, answered at 20 h;
    E declined; F cancelled before its deadline; M sent to the neuroradiology (M1) and the on-call pool (M2), M1
    answered at 8 min, the dossier closed at 9 min: M2 withdrawn; a generic opinion G still running (7 days)."""
    step = (lambda: catch_up("statistics", env, app)) if catch_up_between else (lambda: None)
    import_file(app, parse_legacy_text(HISTORY, name="legacy.csv"))
    at(clock, 0)
    sends = {name: send(app, w) for name in "ABCEF"}
    sends["D"] = send(app, w, urgency="routine")
    m = app.create_dossier(actor_id=w["requester"], workflow="stroke_opinion", question="Thrombectomie ?", urgency="stat",
                           consent="given", **PATIENT)
    sends["M1"] = (m, app.address_recipient(dossier_id=m, actor_id=w["requester"], establishment_id=w["montpellier"],
                                            service_id=w["neuro"]))
    sends["M2"] = (m, app.address_recipient(dossier_id=m, actor_id=w["requester"], establishment_id=w["montpellier"],
                                            service_id=w["pool"]))
    app.send_dossier(dossier_id=m, actor_id=w["requester"])
    step()
    r, pool_member = w["recipient"], w["on_call"]
    at(clock, 5)
    app.accept(dossier_id=sends["A"][0], actor_id=r, send_id=sends["A"][1])
    app.decline(dossier_id=sends["E"][0], actor_id=r, send_id=sends["E"][1], reason_code="not_competent")
    app.cancel_dossier(dossier_id=sends["F"][0], actor_id=w["requester"], reason="Patient transféré")
    at(clock, 8)
    app.give_opinion(dossier_id=m, actor_id=r, send_id=sends["M1"][1], report="Thrombectomie indiquée.")
    step()
    at(clock, 9)
    app.close_dossier(dossier_id=m, actor_id=w["requester"], note="")
    at(clock, 11)
    assert app.escalate_overdue(dossier_id=sends["C"][0], send_id=sends["C"][1]).to is not None
    step()
    at(clock, 15)
    app.accept(dossier_id=sends["B"][0], actor_id=r, send_id=sends["B"][1])
    at(clock, 20)
    app.give_opinion(dossier_id=sends["A"][0], actor_id=r, send_id=sends["A"][1], report="Thrombectomie indiquée.")
    step()
    at(clock, 45)
    app.give_opinion(dossier_id=sends["B"][0], actor_id=r, send_id=sends["B"][1], report="Pas d'indication.")
    at(clock, 180)
    app.forward(dossier_id=sends["D"][0], actor_id=r, send_id=sends["D"][1], to_service_id=w["pool"])
    step()
    at(clock, 360)
    app.accept(dossier_id=sends["D"][0], actor_id=pool_member, send_id=sends["D"][1])
    at(clock, 1200)
    app.give_opinion(dossier_id=sends["D"][0], actor_id=pool_member, send_id=sends["D"][1], report="Surveillance.")
    clock.now = datetime.now(UTC) - timedelta(hours=1)  # a generic opinion sent an hour ago: its deadline runs
    sends["G"] = send(app, w, urgency="routine", workflow="generic_opinion")
    catch_up("statistics", env, app)
    return sends


def report(env: dict, **filters) -> dict:
    view = open_view("statistics", env)
    try:
        return build_report(view, StatsQuery(**{**YEAR, **filters}))
    finally:
        view.datastore.close()


def stroke_2025(r: dict) -> dict:
    (found,) = [d for d in r["deadlines"] if (d["workflow"], d["year"]) == ("stroke_opinion", 2025)]
    return found


STROKE = {
    "workflow": "stroke_opinion", "year": 2025, "sends": 10, "without_deadline": 2, "with_deadline": 8,
    "answered_in_time": 3, "answered_late": 1, "declined": 1, "unanswered": 1, "withdrawn": 2, "open": 0,
    # A, D and M1 of A, B, D, M1, E (declined: not an answer) and C (nothing by its deadline); F and M2 left out
    "within_deadline_pct": 50.0,
    "accepted_in_time": 3, "accept_due": 6, "within_accept_pct": 50.0,  # A, D (by its forward's 7 h), M1 of A B C D E M1
    "escalated_sends": 1, "escalations": 1,
    "median_minutes": 32.5, "p90_minutes": 853.5,  # 8, 20, 45 min, 20 h: p90 = 45 + 0.7 × (1200 − 45)
    "deadline_median_minutes": 30.0,
}


def test_deadline_figures_on_a_small_world(app, w, clock, env):
    small_world(app, w, clock, env, catch_up_between=True)
    r = report(env)
    assert stroke_2025(r) == STROKE
    current_year = datetime.now(UTC).year
    generic = report(env, date_from=date(current_year - 1, 1, 1), date_to=date(current_year + 1, 12, 31),
                     workflow="generic_opinion")
    (g,) = [d for d in generic["deadlines"] if d["sends"]]
    # still running: neither late nor in time, out of the share
    assert (g["with_deadline"], g["open"], g["unanswered"], g["within_deadline_pct"], g["within_accept_pct"]) == (
        1, 1, 0, None, None)
    # the history alone: counted apart, never late
    march_first = report(env, date_from=date(2025, 3, 1), date_to=date(2025, 3, 2))
    counts = {k: 0 for k, v in STROKE.items() if isinstance(v, int) and k != "year"}
    assert stroke_2025(march_first) == {
        **counts, "workflow": "stroke_opinion", "year": 2025, "sends": 2, "without_deadline": 2,
        "within_deadline_pct": None, "within_accept_pct": None,
        "median_minutes": None, "p90_minutes": None, "deadline_median_minutes": None,
    }


def test_the_filters_apply_to_the_deadline_figures(app, w, clock, env):
    small_world(app, w, clock, env, catch_up_between=False)
    assert report(env, workflow="generic_opinion")["deadlines"] == []
    montpellier = report(env, establishment_id=w["montpellier"], establishment_finess="340780477", side="recipient")
    assert stroke_2025(montpellier) == STROKE
    assert report(env, establishment_id=w["toulouse"], establishment_finess="310781406", side="recipient")["deadlines"] == []
    assert stroke_2025(report(env, department="31", side="requester")) == STROKE
    # as it stood at the end of a day before anything was recorded: nothing
    assert report(env, as_of=date(2025, 3, 9))["deadlines"] == []


def test_batches_and_a_rebuild_give_the_same_figures(app, w, clock, env):
    """Facts learnt about rows already written (catch-up between steps) and all in one pass agree."""
    small_world(app, w, clock, env, catch_up_between=True)
    live = report(env)
    view = open_view("statistics", env)
    try:
        stored = view.query("SELECT accept_by, answer_by, deadline_source FROM stats_sends WHERE taken_at IS NOT NULL "
                            "AND accept_by - sent_at > interval '1 hour' AND workflow = 'stroke_opinion'")
    finally:
        view.datastore.close()
    # D: the deadline that counts is its forward's (accept again by 7 h), the answer deadline promised kept (24 h)
    assert [(r["accept_by"] - T0, r["answer_by"] - T0, r["deadline_source"]) for r in stored] == [
        (timedelta(hours=7), timedelta(hours=24), "default")
    ]
    rebuild("statistics", env, app)
    assert report(env) == live
    assert stroke_2025(live) == STROKE


def test_the_export_carries_the_deadline_figures(app, w, clock, env):
    small_world(app, w, clock, env, catch_up_between=False)
    r = report(env)
    long = to_csv(r).splitlines()
    assert long[0] == "table,year,workflow,department,finess,imaging_source,channel,region,measure,value"
    assert "deadlines,2025,stroke_opinion,,,,,,within_deadline_pct,50" in long
    assert "deadlines,2025,stroke_opinion,,,,,,without_deadline,2" in long
    assert "deadlines,2025,stroke_opinion,,,,,,escalations,1" in long
    assert "acceptance,2025,stroke_opinion,,,,,,sends,10" in long  # the existing tables unchanged
    wide = to_csv(r, "deadlines").splitlines()
    assert wide[0].startswith("workflow,year,sends,without_deadline,with_deadline,answered_in_time,answered_late,")
    assert "stroke_opinion,2025,10,2,8,3,1,1,1,2,0,50,3,6,50,1,1,32.5,853.5,30" in wide


def test_relais_stats_export_carries_them(app, w, clock, env, settings, monkeypatch, capsys):
    from entrypoints.cli.main import main

    small_world(app, w, clock, env, catch_up_between=False)
    monkeypatch.setenv("RELAIS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAIS_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("RELAIS_CIPHER_KEY", raising=False)
    capsys.readouterr()
    assert main(["stats", "export", "--from", "2025-01-01", "--to", "2025-12-31", "--table", "deadlines",
                 "--format", "csv"]) == 0
    wide = capsys.readouterr().out.splitlines()
    assert wide[0].split(",") == ["workflow", "year", *list(STROKE)[2:]]
    assert "stroke_opinion,2025,10,2,8,3,1,1,1,2,0,50,3,6,50,1,1,32.5,853.5,30" in wide
    assert main(["stats", "export", "--from", "2025-01-01", "--to", "2025-12-31"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["deadlines"] == [STROKE]
    assert main(["stats", "export", "--from", "2025-01-01", "--to", "2025-12-31", "--format", "csv", "--excel"]) == 0
    assert "deadlines;2025;stroke_opinion;;;;;;within_accept_pct;50\r\n" in capsys.readouterr().out
