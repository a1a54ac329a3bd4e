"""Milestones read model and stroke indicators: medians on known times, the page's rule, rebuild = live."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from adapters.settings import Settings
from application import Relais
from domain.values import PARIS
from projections.milestones import PostgresMilestonesView, StrokeQuery
from projections.runner import catch_up, open_view, rebuild
from tests.conftest import PATIENT

BASE = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
NOVEMBER = StrokeQuery(date_from=date(2026, 11, 1), date_to=date(2026, 11, 30))


def at(minutes: int) -> datetime:
    return BASE + timedelta(minutes=minutes)


def local(minutes: int) -> str:
    return at(minutes).astimezone(PARIS).strftime("%Y-%m-%dT%H:%M")


def stroke_form(arrival: int) -> dict:
    return {"time_reference": "onset", "onset_at": local(arrival - 60), "arrival_at": local(arrival), "nihss_total": "7",
            "anticoagulant": "no", "imaging": "ct", "angiography": "true", "thrombolysis": "false",
            "question": ["thrombectomy"]}


def dossier(relais: Relais, world: dict, *, start: int, workflow: str = "stroke_opinion") -> tuple[str, str]:
    did = relais.create_dossier(actor_id=world["requester"], workflow=workflow, question="Thrombectomie ?",
                                consent="given", occurred_at=at(start), **PATIENT)
    sid = relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"],
                                   service_id=world["neuro"], occurred_at=at(start))
    return did, sid


def sent_and_answered(relais: Relais, world: dict, did: str, sid: str, *, sent: int, accepted: int, opinion: int) -> None:
    relais.send_dossier(dossier_id=did, actor_id=world["requester"], occurred_at=at(sent))
    relais.accept(dossier_id=did, actor_id=world["recipient"], send_id=sid, occurred_at=at(accepted))
    relais.give_opinion(dossier_id=did, actor_id=world["recipient"], send_id=sid, report="Thrombectomie indiquée",
                        occurred_at=at(opinion))


@pytest.fixture()
def history(relais: Relais, world: dict) -> dict:
    # A: door from the form (arrival at 0), sent 20, accepted 25, opinion 50
    a, sa = dossier(relais, world, start=0)
    relais.answer_form(dossier_id=a, actor_id=world["requester"], raw=stroke_form(0), occurred_at=at(5))
    sent_and_answered(relais, world, a, sa, sent=20, accepted=25, opinion=50)
    # B: the form says 95 but the door recorded says 100 (the recorded milestone wins); imaging recorded at 110
    b, sb = dossier(relais, world, start=100)
    relais.answer_form(dossier_id=b, actor_id=world["requester"], raw=stroke_form(95), occurred_at=at(101))
    relais.record_milestone(dossier_id=b, actor_id=world["requester"], milestone="door", at=at(100), occurred_at=at(102))
    relais.record_milestone(dossier_id=b, actor_id=world["requester"], milestone="imaging", at=at(110), occurred_at=at(111))
    sent_and_answered(relais, world, b, sb, sent=130, accepted=140, opinion=190)
    relais.record_milestone(dossier_id=b, actor_id=world["requester"], milestone="decision", at=at(200), occurred_at=at(201))
    # C: no form, no door: sent 200, accepted 210, opinion 300
    c, sc = dossier(relais, world, start=195)
    sent_and_answered(relais, world, c, sc, sent=200, accepted=210, opinion=300)
    # D: another workflow, not a stroke: not counted
    d, sd = dossier(relais, world, start=300, workflow="generic_opinion")
    sent_and_answered(relais, world, d, sd, sent=301, accepted=302, opinion=303)
    # E: a stroke draft never sent: not counted
    dossier(relais, world, start=310)
    return {"a": a, "b": b, "c": c}


def indicators(env: dict) -> list[dict]:
    view = open_view("milestones", env)
    assert isinstance(view, PostgresMilestonesView)
    try:
        return view.stroke_indicators(NOVEMBER)
    finally:
        view.datastore.close()


def test_medians_and_counts_on_known_times(relais: Relais, settings: Settings, history: dict) -> None:
    env = settings.eventsourcing_env()
    catch_up("milestones", env, relais)
    rows = indicators(env)
    assert [r["period"] for r in rows] == ["2026-11", "total"]
    month = rows[0]
    assert month == {**rows[1], "period": "2026-11"}
    assert month["dossiers"] == 3
    assert (month["door_to_opinion_count"], month["door_to_opinion_median_minutes"]) == (2, 70.0)  # 50, 90
    assert (month["sent_to_opinion_count"], month["sent_to_opinion_median_minutes"]) == (3, 60.0)  # 30, 60, 100
    assert (month["door_to_sent_count"], month["door_to_sent_median_minutes"]) == (2, 25.0)  # 20, 30
    assert (month["sent_to_accepted_count"], month["sent_to_accepted_median_minutes"]) == (3, 10.0)  # 5, 10, 10
    view = open_view("milestones", env)
    try:
        b = view.times(history["b"])  # type: ignore[attr-defined]
    finally:
        view.datastore.close()
    assert b["door_at"] == at(100) and b["imaging_at"] == at(110) and b["decision_at"] == at(200)


def test_the_page_and_the_read_model_agree(relais: Relais, settings: Settings, world: dict, history: dict) -> None:
    env = settings.eventsourcing_env()
    catch_up("milestones", env, relais)
    details = relais.open_dossier(dossier_id=history["b"], actor_id=world["requester"]).dossier
    page = {m.code: m.at for m in details.milestones if m.at}
    view = open_view("milestones", env)
    try:
        stored = view.times(history["b"])  # type: ignore[attr-defined]
    finally:
        view.datastore.close()
    assert page == {code: stored[f"{code}_at"] for code in page}
    assert set(page) == {"door", "imaging", "sent", "accepted", "opinion", "decision"}
    by_code = {m.code: m for m in details.milestones}
    assert by_code["opinion"].since_door == 90 and by_code["sent"].since_previous == 20


def test_rebuild_from_zero_gives_the_same(relais: Relais, settings: Settings, history: dict) -> None:
    env = settings.eventsourcing_env()
    catch_up("milestones", env, relais)
    live = indicators(env)
    rebuild("milestones", env, relais, timeout=120)
    assert indicators(env) == live


def test_an_empty_period_has_a_total_of_nothing(relais: Relais, settings: Settings) -> None:
    env = settings.eventsourcing_env()
    catch_up("milestones", env, relais)
    assert indicators(env) == [{"period": "total", "dossiers": 0, **{
        f"{n}_{m}": (0 if m == "count" else None)
        for n in ("door_to_opinion", "sent_to_opinion", "door_to_sent", "sent_to_accepted") for m in ("count", "median_minutes")}}]


def test_relais_stats_export_table_stroke(
    relais: Relais, settings: Settings, history: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from entrypoints.cli.main import main

    monkeypatch.setenv("RELAIS_DATABASE_URL", settings.database_url or "")
    monkeypatch.setenv("RELAIS_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("RELAIS_CIPHER_KEY", raising=False)
    capsys.readouterr()
    assert main(["stats", "export", "--from", "2026-11-01", "--to", "2026-11-30", "--table", "stroke", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("period,dossiers,door_to_opinion_count,door_to_opinion_median_minutes,sent_to_opinion_count,"
                        "sent_to_opinion_median_minutes,door_to_sent_count,door_to_sent_median_minutes,"
                        "sent_to_accepted_count,sent_to_accepted_median_minutes")
    assert lines[1:] == ["2026-11,3,2,70.0,3,60.0,2,25.0,3,10.0", "total,3,2,70.0,3,60.0,2,25.0,3,10.0"]
    assert main(["stats", "export", "--from", "2026-11-01", "--to", "2026-11-30", "--table", "stroke", "--no-catch-up"]) == 0
    rows = json.loads(capsys.readouterr().out)["stroke"]
    assert rows[-1]["door_to_opinion_median_minutes"] == 70.0
    assert main(["stats", "export", "--from", "2026-11-01", "--to", "2026-11-30", "--table", "stroke", "--format", "csv",
                 "--excel", "--establishment", "340780477"]) == 0  # recipient side: none of its own sent
    assert capsys.readouterr().out.splitlines()[1] == "total;0;0;;0;;0;;0;"
