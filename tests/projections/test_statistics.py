"""Statistics projection and report: known answers on a reduced history, as-of, rebuild = live,
crashes in the middle of a batch (exception and SIGKILL), the flush when the log goes quiet."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date, datetime
from pathlib import Path

import psycopg
import pytest

from adapters.history_import import import_file, parse_legacy_text
from adapters.settings import Settings
from application import Relais
from projections.runner import Follower, catch_up, log_head, open_view, rebuild, run
from projections.statistics import StatisticsProjection
from projections.statistics_report import StatsQuery, build_report, to_csv, year_earlier
from tests.history import EXPECTED, answer_l2, csv_text, live_dossiers

ROOT = Path(__file__).resolve().parents[2]
PERIOD = dict(date_from=date(2022, 1, 1), date_to=date(2024, 5, 31))


@pytest.fixture()
def env(settings: Settings) -> dict:
    return settings.eventsourcing_env()


def import_csv(relais: Relais, text: str) -> None:
    report = import_file(relais, parse_legacy_text(text, name="legacy.csv"))
    assert not report.errors, report.errors


def report(env: dict, **filters) -> dict:
    view = open_view("statistics", env)
    try:
        return build_report(view, StatsQuery(**{**PERIOD, **filters}))
    finally:
        view.datastore.close()


def dump(env: dict) -> dict[str, list[tuple]]:
    """Every row of the statistics tables, in a stable order."""
    out = {}
    with psycopg.connect(" ".join(f"{k}={v}" for k, v in _conninfo(env).items())) as conn:
        for table, key in (("stats_establishments", "id"), ("stats_dossiers", "id"), ("stats_sends", "dossier_id, send_id")):
            out[table] = conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
    return out


def _conninfo(env: dict) -> dict:
    info = {"dbname": env["POSTGRES_DBNAME"], "host": env["POSTGRES_HOST"], "port": env["POSTGRES_PORT"], "user": env["POSTGRES_USER"]}
    if env.get("POSTGRES_PASSWORD"):
        info["password"] = env["POSTGRES_PASSWORD"]
    return info


def full_history(relais: Relais, world: dict) -> dict:
    import_csv(relais, csv_text(1))
    live = live_dossiers(relais, world)
    import_csv(relais, csv_text(2))
    return live


# ---------------------------------------------------------------------------- known answers


def test_every_table_of_the_reduced_history(relais, world, env):
    full_history(relais, world)
    catch_up("statistics", env, relais)
    r = report(env)
    for key, expected in EXPECTED.items():
        assert r[key] == expected, key
    assert r["totals"] == {"dossiers": 12, "sends": 13}
    # D3, sent at 23:30 UTC on 31 Dec 2022, counts in 2023 (Paris); a UTC date would give 2022 three dossiers.
    assert [y["dossiers"] for y in r["dossiers_by_year"]] == [2, 7, 3]
    # the delays kept per dossier (current figures) agree with the per-send computation (as-of)
    assert report(env, as_of=date(2100, 1, 1))["answer_delay"] == r["answer_delay"]


def test_partial_years_compare_with_the_same_span_a_year_earlier(relais, world, env):
    full_history(relais, world)
    catch_up("statistics", env, relais)
    (only,) = report(env, date_from=date(2024, 1, 1))["dossiers_by_year"]
    assert only == {"year": 2024, "dossiers": 3, "compared_to": {"from": "2023-01-01", "to": "2023-05-31", "dossiers": 4},
                    "variation_pct": -25.0}
    # a period across a leap day: 29 Feb 2024 is compared with 28 Feb 2023
    years = report(env, date_from=date(2023, 3, 1), date_to=date(2024, 2, 29))["dossiers_by_year"]
    assert [(y["year"], y["dossiers"], y["compared_to"], y["variation_pct"]) for y in years] == [
        (2023, 5, {"from": "2022-03-01", "to": "2022-12-31", "dossiers": 2}, 150.0),
        (2024, 1, {"from": "2023-01-01", "to": "2023-02-28", "dossiers": 2}, -50.0),
    ]
    assert year_earlier(date(2024, 2, 29), end=False) == date(2023, 3, 1)
    # 00:30 on 1 June in Paris (22:30 UTC on 31 May) belongs to June
    assert report(env, date_to=date(2024, 6, 1))["dossiers_by_year"][-1]["dossiers"] == 4


def test_filters_by_establishment_side_department_and_workflow(relais, world, env):
    full_history(relais, world)
    catch_up("statistics", env, relais)
    paris = report(env, establishment_id=_est("750100018"), establishment_finess="750100018", side="recipient")
    assert [(y["year"], y["dossiers"]) for y in paris["dossiers_by_year"]] == [(2022, 0), (2023, 1), (2024, 0)]
    assert paris["sends_by_department"]["recipient"] == [{"department": "75", "sends": 1}]
    # the delay over Paris's send only: 09:00 → 11:00 (the dossier's first answer, Montpellier's, came at 10:00)
    assert paris["answer_delay"] == [
        {"workflow": "imaging_transfer", "year": 2023, "answered": 1, "median_minutes": 120.0, "p90_minutes": 120.0}
    ]
    nimes_sent = report(env, establishment_id=_est("300780038"), establishment_finess="300780038", side="requester")
    assert [y["dossiers"] for y in nimes_sent["dossiers_by_year"]] == [0, 2, 0]
    nimes_received = report(env, establishment_id=_est("300780038"), establishment_finess="300780038", side="recipient")
    assert nimes_received["totals"] == {"dossiers": 0, "sends": 0}
    by_department = report(env, department="30", side="requester")
    assert by_department["totals"] == nimes_sent["totals"] == {"dossiers": 2, "sends": 2}
    either = report(env, department="30")  # requester or recipient: nobody sent to the Gard
    assert either["totals"] == {"dossiers": 2, "sends": 2}
    stroke = report(env, workflow="stroke_opinion")
    assert [y["dossiers"] for y in stroke["dossiers_by_year"]] == [0, 2, 1]
    assert {w["workflow"] for w in stroke["dossiers_by_workflow_year"]} == {"stroke_opinion"}


def _est(finess: str) -> str:
    from domain.directory import establishment_id

    return establishment_id(finess)


def test_statistics_as_they_stood_at_the_end_of_a_day(relais, world, env, monkeypatch):
    def recorded(moment: str) -> None:
        at = datetime.fromisoformat(moment)
        monkeypatch.setattr("eventsourcing.domain.datetime_now_with_tzinfo", lambda: at)

    recorded("2024-01-15T22:30:00+00:00")  # 23:30 in Paris on 15 January
    import_csv(relais, csv_text(1))
    recorded("2024-01-15T23:30:00+00:00")  # 00:30 in Paris on 16 January
    live = live_dossiers(relais, world, answer=False)
    recorded("2024-06-10T09:00:00+00:00")
    import_csv(relais, csv_text(2))
    recorded("2024-07-01T09:00:00+00:00")
    answer_l2(relais, world, live)
    monkeypatch.undo()
    catch_up("statistics", env, relais)

    assert report(env, as_of=date(2024, 1, 14))["totals"] == {"dossiers": 0, "sends": 0}
    jan15 = report(env, as_of=date(2024, 1, 15))
    assert [y["dossiers"] for y in jan15["dossiers_by_year"]] == [2, 5, 0]
    assert jan15["filters"]["as_of"] == "2024-01-15"
    jan16 = report(env, as_of=date(2024, 1, 16))
    assert [y["dossiers"] for y in jan16["dossiers_by_year"]] == [2, 7, 0]
    june30 = report(env, as_of=date(2024, 6, 30))
    assert [y["dossiers"] for y in june30["dossiers_by_year"]] == [2, 7, 3]
    assert "generic_opinion" not in {d["workflow"] for d in june30["answer_delay"]}  # answered in July
    generic = next(a for a in june30["acceptance"] if a["workflow"] == "generic_opinion")
    assert (generic["sends"], generic["accepted"], generic["answered"]) == (1, 1, 0)
    now = report(env)
    for key, expected in EXPECTED.items():
        assert now[key] == expected, key


def test_csv_layouts(relais, world, env):
    full_history(relais, world)
    catch_up("statistics", env, relais)
    r = report(env)
    long = to_csv(r).splitlines()
    assert long[0] == "table,year,workflow,department,finess,imaging_source,channel,region,measure,value"
    assert "dossiers_by_year,2024,,,,,,,variation_pct,-25" in long
    assert "dossiers_by_workflow_year,2023,imaging_transfer,,,,,,share_pct,42.86" in long
    assert "sends_by_recipient_department,,,75,,,,,sends,1" in long
    assert "inter_regional,,,,,,national_network,IDF,sends,1" in long
    assert "answer_delay,2024,imaging_transfer,,,,,,p90_minutes,38" in long
    assert "dossiers_by_year,2022,,,,,,,variation_pct," in long  # null: empty cell
    wide = to_csv(r, "dossiers_by_year").splitlines()
    assert wide == [
        "year,dossiers,compared_from,compared_to,compared_dossiers,variation_pct",
        "2022,2,2021-01-01,2021-12-31,0,", "2023,7,2022-01-01,2022-12-31,2,250", "2024,3,2023-01-01,2023-05-31,4,-25",
    ]
    excel = to_csv(r, "dossiers_by_workflow_year", excel=True)
    assert excel.startswith("\ufeffworkflow;year;dossiers;variation_pct;share_pct\r\n")
    assert "imaging_transfer;2023;3;200;42,86\r\n" in excel


# ---------------------------------------------------------------------------- exactly once


def _follow_in_background(env: dict) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(["statistics"], env, stop), daemon=True)
    thread.start()
    return stop, thread


def _wait_for_head(relais: Relais, env: dict, timeout: float = 30.0) -> float:
    head, _ = log_head(relais, StatisticsProjection.topics)
    view = open_view("statistics", env)
    started = time.monotonic()
    try:
        while view.position() < head:
            assert time.monotonic() - started < timeout, f"position {view.position()} < head {head}"
            time.sleep(0.02)
    finally:
        view.datastore.close()
    return time.monotonic() - started


def test_rebuild_gives_the_tables_of_live_processing(relais, world, env):
    stop, thread = _follow_in_background(env)
    try:
        import_csv(relais, csv_text(1))
        time.sleep(0.3)  # a quiet moment: the runner writes what it holds
        live = live_dossiers(relais, world, answer=False)
        import_csv(relais, csv_text(2))
        answer_l2(relais, world, live)
        _wait_for_head(relais, env)
        catch_up("statistics", env, relais)  # a second follower at the same time: nothing applied twice
        live_tables, live_report = dump(env), report(env)
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive(), "the runner did not stop"
    assert live_report["totals"] == {"dossiers": 12, "sends": 13}
    rebuild("statistics", env, relais)
    assert dump(env) == live_tables
    assert report(env) == live_report


def test_a_crash_in_the_middle_of_a_batch_leaves_nothing_half_written(relais, world, env, monkeypatch):
    full_history(relais, world)
    write, flushes = StatisticsProjection.write, []

    def crashing(self, curs, batch):
        flushes.append(self.committed)
        write(self, curs, batch)  # the rows are written in the batch's transaction…
        if len(flushes) == 3:
            raise RuntimeError("crash in the middle of a batch")  # …which is rolled back

    monkeypatch.setattr(StatisticsProjection, "batch_size", 7)
    monkeypatch.setattr(StatisticsProjection, "write", crashing)
    with pytest.raises(RuntimeError, match="crash in the middle"):
        catch_up("statistics", env, relais)
    view = open_view("statistics", env)
    stopped_at = view.position()
    view.datastore.close()
    assert stopped_at == flushes[2] > 0  # two batches committed, the third not
    monkeypatch.setattr(StatisticsProjection, "write", write)
    catch_up("statistics", env, relais)  # restarts from the last committed batch
    after_restart, r = dump(env), report(env)
    rebuild("statistics", env, relais)
    assert dump(env) == after_restart
    for key, expected in EXPECTED.items():
        assert r[key] == expected, key


def test_a_runner_killed_in_the_middle_of_a_batch_restarts_without_double_counting(relais, world, env, settings):
    many = "\n".join(
        line.replace("D", f"K{n}-D", 1) for n in range(150) for line in csv_text().splitlines()[1:]
    )
    import_csv(relais, csv_text().splitlines()[0] + "\n" + many + "\n")
    head, _ = log_head(relais, StatisticsProjection.topics)
    child_env = {**os.environ, "RELAIS_DATABASE_URL": settings.database_url, "RELAIS_LOG_LEVEL": "WARNING"}
    child_env.pop("RELAIS_CIPHER_KEY", None)
    runner = subprocess.Popen(
        [sys.executable, "-m", "entrypoints.cli.main", "projections", "run", "statistics"], cwd=ROOT, env=child_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    view = open_view("statistics", env)
    try:
        deadline = time.monotonic() + 60
        while view.position() == 0:  # the first batch is in: kill it while it works on the next ones
            assert runner.poll() is None and time.monotonic() < deadline
            time.sleep(0.002)
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        killed_at = view.position()
    finally:
        if runner.poll() is None:
            runner.kill()
        view.datastore.close()
    assert 0 < killed_at < head, "the runner was not killed in the middle of the log"
    catch_up("statistics", env, relais, timeout=120)
    after_restart = dump(env)
    assert len(after_restart["stats_dossiers"]) == 150 * 11
    rebuild("statistics", env, relais, timeout=120)
    assert dump(env) == after_restart


def test_the_last_events_are_written_when_the_log_goes_quiet(relais, world, env):
    catch_up("statistics", env, relais)
    follower = Follower("statistics", env)
    try:
        assert follower.projection.batch_size >= 1000
        import_csv(relais, csv_text(1))  # a handful of events, far from a full batch
        head, _ = log_head(relais, StatisticsProjection.topics)
        started = time.monotonic()
        while follower.position() < head:
            follower.run_forever(timeout=0.01)
            assert time.monotonic() - started < 5, "the buffered events were never written"
        assert follower.projection.pending == 0
    finally:
        follower.close()
    assert report(env, date_to=date(2023, 12, 31))["totals"]["dossiers"] == 7


def test_a_changed_schema_rebuilds_the_read_model_from_zero(relais, world, env):
    import_csv(relais, csv_text(1))
    catch_up("statistics", env, relais)
    view = open_view("statistics", env)
    try:
        assert view.position() > 0
        with view.datastore.transaction(commit=True) as curs:  # as left by an older release
            curs.execute("COMMENT ON TABLE stats_establishments IS NULL")
            curs.execute("ALTER TABLE stats_sends DROP COLUMN requester_department")
    finally:
        view.datastore.close()
    view = open_view("statistics", env)  # what every process does at start
    try:
        assert view.position() == 0
        assert view.query("SELECT count(*) AS n FROM stats_dossiers")[0]["n"] == 0
    finally:
        view.datastore.close()
    catch_up("statistics", env, relais)
    assert report(env, date_to=date(2023, 12, 31))["totals"]["dossiers"] == 7


def test_an_imaging_transfers_acknowledged_receipt_is_its_answer(relais, world, env):
    """No opinion is asked of an imaging transfer: the receipt acknowledged answers it (and closes it), so the
    statistics count it answered with its delay — before, it counted as sent and never answered."""
    from tests.conftest import PATIENT

    did = relais.create_dossier(actor_id=world["requester"], workflow="imaging_transfer", question="Pour votre PACS",
                                consent="given", **PATIENT)
    sid = relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"],
                                   service_id=world["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=world["requester"])
    relais.acknowledge_receipt(dossier_id=did, actor_id=world["recipient"], send_id=sid, note="Importé")
    catch_up("statistics", env, relais)
    today = date.today()
    got = report(env, date_from=today.replace(day=1), date_to=today, workflow="imaging_transfer")
    assert [(a["workflow"], a["answered"]) for a in got["answer_delay"]] == [("imaging_transfer", 1)]
