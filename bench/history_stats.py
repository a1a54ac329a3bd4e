"""History import and statistics at the annex's scale: import, catch-up, rebuild, export and /stats.

On a throw-away database `relais_bench_<pid>` (dropped at the end unless --keep):

1. generates the history (bench/generate_history.py: ≈171,000 dossiers, ≈262,000 sends) unless
   --csv names one;
2. imports it the way `relais import-history` does, while `relais projections run statistics`
   follows the log in another process, as in production; prints the import time and events/s,
   then the time from the end of the import until the statistics are current;
3. imports it a second time (idempotency: nothing written);
4. reads the statistics events raw (`SELECT` of the events table), then through the library
   (select_notifications + mapper.to_domain_event), then rebuilds the projection from zero —
   three rates in the same round, --rounds times, and the rebuild's ratio to the library's
   read-and-decode rate;
5. times `build_report` for 2021-01-01 → 2024-05-31, `relais stats export` as a command
   (JSON and CSV), and the analyst's `/stats` page, fragment and CSV download (in-process client);
6. checks the figures against the annex (at --scale 1): dossiers per year and variations,
   sends over the period.

    .venv/bin/python bench/history_stats.py                       # annex scale (≈ 10 minutes on 2 cores)
    .venv/bin/python bench/history_stats.py --scale 0.05          # a quick check of the script
    .venv/bin/python bench/history_stats.py --identical 0.03      # with identical rows, as a real export has
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import re
import signal
import statistics as stats
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import logging  # noqa: E402

import psycopg  # noqa: E402

from adapters.credentials import Credentials  # noqa: E402
from adapters.history_import import import_file, read_legacy_file  # noqa: E402
from adapters.settings import Settings  # noqa: E402
from bench.generate_history import generate  # noqa: E402
from entrypoints.bootstrap import build_app, build_pool, upgrade  # noqa: E402
from projections.runner import catch_up, log_head, open_view  # noqa: E402
from projections.statistics import StatisticsProjection  # noqa: E402
from projections.statistics_report import StatsQuery, build_report  # noqa: E402

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
ANNEX = [(2021, 32_492, None), (2022, 46_568, 43.32), (2023, 58_333, 25.26), (2024, 33_588, 18.11)]
ANNEX_SENDS = 261_776
TOPICS = list(StatisticsProjection.topics)


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def say(text: str) -> None:
    print(text, flush=True)


def median_time(fn, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return stats.median(times), min(times)


def position(env: dict) -> int:
    view = open_view("statistics", env)
    try:
        return view.position()
    finally:
        view.datastore.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, help="an existing history file (default: generate one)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the annex's volume when generating")
    parser.add_argument("--identical", type=float, default=0.0,
                        help="share of dossiers generated with two identical rows (see generate_history.py)")
    parser.add_argument("--batch", type=int, default=500, help="dossiers per import transaction (default 500)")
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each latency measure (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of raw read / decode / rebuild (default 3)")
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    name = f"relais_bench_{os.getpid()}"
    base = args.server.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    settings = Settings(database_url=url)
    env = settings.eventsourcing_env()
    with psycopg.connect(args.server, autocommit=True) as admin:
        version = admin.execute("SHOW server_version").fetchone()[0].split()[0]
        admin.execute(f'CREATE DATABASE "{name}"')
    say(f"Relais statistics benchmark — PostgreSQL {version}, database {name}; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load {load()}, {time.strftime('%Y-%m-%d %H:%M')}")
    workdir = Path(tempfile.mkdtemp(prefix="relais-bench-"))
    runner = None
    try:
        upgrade(settings)
        # 1. the history
        path = args.csv
        if path is None:
            path = workdir / "legacy.csv"
            t0 = time.perf_counter()
            dossiers, rows = generate(path, scale=args.scale, identical=args.identical)
            say(f"generated {path.name}: {dossiers:,} dossiers, {rows:,} rows, "
                f"{path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s")

        # 2. import, with the statistics runner following in its own process
        child_env = {**os.environ, "RELAIS_DATABASE_URL": url, "RELAIS_LOG_LEVEL": "WARNING"}
        child_env.pop("RELAIS_CIPHER_KEY", None)
        runner = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.cli.main", "projections", "run", "statistics"], cwd=ROOT, env=child_env,
        )
        app = build_app(settings)
        t0 = time.perf_counter()
        parsed = read_legacy_file(path)
        parse_s = time.perf_counter() - t0
        gc.collect()
        gc.freeze()
        t1 = time.perf_counter()
        report = import_file(app, parsed, batch_size=args.batch)
        import_s = time.perf_counter() - t1
        gc.unfreeze()
        assert not report.errors, report.errors[:5]
        head, _ = log_head(app, tuple(TOPICS))
        total_events = app.max_position()
        say(f"import: {parsed.rows:,} rows read and checked in {parse_s:.1f} s; {report.imported:,} dossiers, "
            f"{report.events:,} events written in {import_s:.1f} s → {report.events / import_s:,.0f} events/s "
            f"({report.imported / import_s:,.0f} dossiers/s), {len(report.establishments_added)} establishments added; "
            f"total {parse_s + import_s:.1f} s")
        t2 = time.perf_counter()
        at_end = position(env)
        while position(env) < head:
            if runner.poll() is not None:
                raise SystemExit("the projection runner died")
            time.sleep(0.05)
        current_s = time.perf_counter() - t2
        say(f"statistics current {current_s:.1f} s after the end of the import "
            f"(the runner was at {at_end:,} of {head:,} when the import ended; load {load()})")
        runner.send_signal(signal.SIGTERM)
        runner.wait(30)
        runner = None

        # 3. the same file again
        t0 = time.perf_counter()
        again = import_file(app, read_legacy_file(path), batch_size=args.batch)
        say(f"second import of the same file: {again.imported} imported, {again.unchanged:,} unchanged, "
            f"{time.perf_counter() - t0:.1f} s, events in the log still {app.max_position():,}")

        # 4. raw read, library read-and-decode, rebuild — alternated, several rounds: on a shared
        # machine the load moves between two measures; compare within a round.
        topic_events = count_topic_events(url)
        say(f"log: {total_events:,} events, {topic_events:,} of the statistics topics")
        ratios = []
        for round_ in range(1, args.rounds + 1):
            raw_s, decode_s, catch_up_s, analyze_s = read_decode_rebuild(url, app, env)
            ratios.append(decode_s / catch_up_s)
            say(f"round {round_}: raw SELECT {topic_events / raw_s:,.0f} rows/s ({raw_s:.1f} s) · library read-and-decode "
                f"{topic_events / decode_s:,.0f} events/s ({decode_s:.1f} s) · rebuild {topic_events / catch_up_s:,.0f} "
                f"events/s ({catch_up_s:.1f} s, then ANALYZE {analyze_s:.1f} s) = {decode_s / catch_up_s:.0%} of "
                f"read-and-decode, {raw_s / catch_up_s:.0%} of raw SELECT (load {load()})")
        say(f"rebuild / read-and-decode, median of {args.rounds} rounds: {stats.median(ratios):.0%}")

        # 5. export and page latency
        query = StatsQuery(date_from=date(2021, 1, 1), date_to=date(2024, 5, 31))
        view = open_view("statistics", env)
        result = build_report(view, query)
        med, best = median_time(lambda: build_report(view, query), args.runs)
        say(f"build_report 2021-01-01 → 2024-05-31: median {med * 1000:.0f} ms, best {best * 1000:.0f} ms ({args.runs} runs)")
        q2 = StatsQuery(date_from=date(2021, 1, 1), date_to=date(2024, 5, 31), establishment_id=None, department="31")
        med, best = median_time(lambda: build_report(view, q2), args.runs)
        say(f"build_report, department 31 (requester or recipient): median {med * 1000:.0f} ms, best {best * 1000:.0f} ms")
        view.datastore.close()
        for fmt in ("json", "csv"):
            command = [sys.executable, "-m", "entrypoints.cli.main", "stats", "export", "--from", "2021-01-01",
                       "--to", "2024-05-31", "--format", fmt]
            med, best = median_time(
                lambda: subprocess.run(command, cwd=ROOT, env=child_env, check=True, capture_output=True), args.runs
            )
            say(f"`relais stats export --format {fmt}` (a new process, catch-up check included): "
                f"median {med:.2f} s, best {best:.2f} s")
        page_latency(settings, app, args.runs)

        # 6. the annex's figures
        years = [(y["year"], y["dossiers"], y["variation_pct"]) for y in result["dossiers_by_year"]]
        sends = result["totals"]["sends"]
        say(f"dossiers per year (variation %): {years}; sends 2021-01-01 → 2024-05-31: {sends:,}")
        if args.scale == 1.0 and args.csv is None:
            ok = years == ANNEX and sends == ANNEX_SENDS
            say("annex figures reproduced: " + ("yes" if ok else f"NO (expected {ANNEX}, {ANNEX_SENDS:,} sends)"))
            if not ok:
                return 1
        app.close()
        say(f"load average (1 min) at the end: {load()}")
        return 0
    finally:
        if runner is not None and runner.poll() is None:
            runner.kill()
        if args.keep:
            say(f"database kept: {url}")
        else:
            with psycopg.connect(args.server, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def read_decode_rebuild(url: str, app, env: dict) -> tuple[float, float, float, float]:
    """Seconds for: a raw SELECT of the statistics events; the library reading and decoding
    them; the projection processing them from zero (tables dropped first); ANALYZE."""
    with psycopg.connect(url) as conn:
        t0 = time.perf_counter()
        with conn.cursor(name="raw") as cur:
            cur.itersize = 10_000
            cur.execute("SELECT * FROM relais_events WHERE topic = ANY(%s) ORDER BY notification_id", (TOPICS,))
            sum(1 for _ in cur)
        raw_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    start = 0
    while True:
        batch = app.recorder.select_notifications(start=start, limit=5_000, topics=TOPICS, inclusive_of_start=False)
        if not batch:
            break
        for n in batch:
            app.mapper.to_domain_event(n)
        start = batch[-1].id
    decode_s = time.perf_counter() - t0
    view = open_view("statistics", env)
    view.reset()  # what `relais projections rebuild` does first
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter()
    catch_up("statistics", env, app, timeout=3600)
    catch_up_s = time.perf_counter() - t0
    gc.unfreeze()
    t0 = time.perf_counter()
    view.analyze()
    analyze_s = time.perf_counter() - t0
    view.datastore.close()
    return raw_s, decode_s, catch_up_s, analyze_s


def count_topic_events(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM relais_events WHERE topic = ANY(%s)", (TOPICS,)).fetchone()[0]


def page_latency(settings: Settings, app, runs: int) -> None:
    """The analyst's /stats page through the real app (in-process ASGI client, real database)."""
    from litestar.testing import TestClient

    from domain.identifiers import luhn_key
    from entrypoints.bootstrap import build_web_app

    rpps = "1000000999" + luhn_key("1000000999")
    est = app.establishment(finess="310781406")
    pid = app.add_practitioner(
        rpps=rpps, family_name="Bench", given_name="Analyste", establishment_id=est.id, roles=["analyst"]
    )
    pool = build_pool(settings, max_size=1)
    Credentials(pool).set_password(pid, "analyste de la région")
    pool.close()
    with TestClient(app=build_web_app(settings)) as client:
        page = client.get("/login").text
        token = re.search(r'name="_csrf_token" value="([^"]+)"', page).group(1)
        client.post("/login", data={"login": rpps, "password": "analyste de la région", "_csrf_token": token})
        assert client.get("/stats?from=2021-01-01&to=2024-05-31").status_code == 200  # warms the app up

        def timed(label: str, paths: list[str], headers: dict | None = None) -> None:
            times = []
            for path in paths:
                t0 = time.perf_counter()
                response = client.get(path, headers=headers or {})
                times.append(time.perf_counter() - t0)
                assert response.status_code == 200, response.text[:300]
            say(f"{label}: median {stats.median(times) * 1000:.0f} ms, best {min(times) * 1000:.0f} ms ({len(paths)} runs)")

        # each run a period never asked before: the report is computed (no cache)
        periods = [f"from=2021-01-01&to=2024-05-{31 - i:02d}" for i in range(1, runs + 1)]
        timed("/stats, full page, new period", [f"/stats?{p}" for p in periods])
        workflows = ["stroke_opinion", "emergency_opinion", "imaging_transfer", "generic_opinion", "kidney_transplant_mdt"]
        timed("/stats, htmx fragment after a filter change", [
            f"/stats?{periods[0]}&workflow={workflows[i % len(workflows)]}" for i in range(runs)
        ], {"HX-Request": "true"})
        timed("/stats/export.csv of the page just shown (cached report)", [f"/stats/export.csv?{p}" for p in periods])
        timed("/stats/export.json, period never shown", [
            f"/stats/export.json?from=2021-02-{i + 1:02d}&to=2024-05-31" for i in range(runs)
        ])


if __name__ == "__main__":
    sys.exit(main())
