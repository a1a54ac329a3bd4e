"""Inbox latency on a store of ≈170,000 dossiers: page and filtered fragment (one client, 50 clients,
with wrk on loopback, next to /health), and time from "send" to the row in the recipient's open inbox.

Prepare once (annex-scale history from bench/generate_history.py, imported, projections rebuilt):

    .venv/bin/python bench/inbox.py --prepare          # ≈ 170,981 dossiers into relais_bench_inbox
    .venv/bin/python bench/inbox.py                    # the measurements (wrk must be installed)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from tests.peers import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RELAIS = str(ROOT / ".venv/bin/relais")
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/relais_bench_inbox"
PASSWORD = "bench password 2026"
WRK_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %d, \\"errors\\": %d, " ..
    "\\"p50\\": %.2f, \\"p95\\": %.2f, \\"p99\\": %.2f, \\"rps\\": %.1f}\\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.requests / (summary.duration / 1e6)))
end
"""


def run(*args: str, env: dict) -> None:
    subprocess.run([RELAIS, *args], env=env, check=True)


def prepare(url: str, env: dict, scale: float) -> None:
    import psycopg

    admin = url.rsplit("/", 1)[0] + "/postgres"
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    run("db", "upgrade", env=env)
    csv = Path(tempfile.gettempdir()) / "relais-bench-legacy.csv"
    subprocess.run([sys.executable, str(ROOT / "bench/generate_history.py"), "--out", str(csv), "--scale", str(scale)], check=True)
    t = time.monotonic()
    refused_csv = csv.with_suffix(".refused.csv")
    # exit 1: some rows refused (each printed, and written to --errors), the valid dossiers imported
    done = subprocess.run([RELAIS, "import-history", "--quiet", "--errors", str(refused_csv), str(csv)], env=env,
                          stdout=subprocess.DEVNULL)
    if done.returncode not in (0, 1):
        raise SystemExit(f"import-history failed (exit {done.returncode})")
    refused = _refused(refused_csv) if done.returncode == 1 else (0, 0)
    print(f"import: {time.monotonic() - t:.0f} s, exit {done.returncode}; refused: {refused[0]} rows of {refused[1]} dossiers"
          f"{f' (see {refused_csv})' if refused[0] else ''}")
    for name in ("directory", "inbox", "access", "statistics", "imaging"):  # every read model current, as in production
        t = time.monotonic()
        run("projections", "rebuild", name, env=env)
        print(f"rebuild {name}: {time.monotonic() - t:.0f} s")


def _refused(path: Path) -> tuple[int, int]:
    """(rows, dossiers) in the --errors file of import-history (line,dossier_id,reason)."""
    import csv as csvlib

    if not path.exists():
        return 0, 0
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csvlib.DictReader(f))
    return len(rows), len({r["dossier_id"] for r in rows})


def users(url: str) -> dict:
    """A recipient at the busiest recipient establishment, a requester elsewhere (idempotent)."""
    from adapters.credentials import Credentials
    from adapters.settings import Settings
    from application.errors import AlreadyExistsError
    from domain.identifiers import luhn_key
    from entrypoints.bootstrap import build_app, build_pool

    settings = Settings(database_url=url)
    relais = build_app(settings)
    pool = build_pool(settings, max_size=2)
    with pool.connection() as conn:
        busiest = conn.execute(
            "SELECT establishment_id::text AS e, count(*) AS n FROM inbox_sends GROUP BY 1 ORDER BY 2 DESC LIMIT 2"
        ).fetchall()
    out = {}
    for i, (key, est) in enumerate((("recipient", busiest[0]["e"]), ("requester", busiest[1]["e"]))):
        body = f"1{990000 + i:09d}"
        number = body + luhn_key(body)
        try:
            pid = relais.add_practitioner(rpps=number, family_name=f"Bench{i}", given_name="Lab", establishment_id=est,
                                          roles=["clinician"])
        except AlreadyExistsError:
            pid = relais.practitioner(rpps=number).id
        Credentials(pool).set_password(pid, PASSWORD)
        out[key] = {"id": pid, "rpps": number, "establishment_id": est}
    out["received_rows"] = busiest[0]["n"]
    pool.close()
    relais.close()
    return out


def login(base: str, rpps: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    page = client.get("/login")
    token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text).group(1)
    r = client.post("/login", data={"login": rpps, "password": PASSWORD, "_csrf_token": token})
    assert r.status_code in (200, 303), r.text[:300]
    return client


def wrk(url: str, connections: int, seconds: int, headers: dict[str, str]) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_LUA)
    # --timeout 30s: a slow answer is a latency to report, not an error (wrk's default gives up after 2 s)
    args = ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "30s",
            "--latency", "-s", f.name]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    return json.loads(out.split("JSON ", 1)[1].splitlines()[0])


def live_latency(base: str, recipient: httpx.Client, url: str, who: dict, samples: int) -> list[float]:
    """Send a dossier, wait for the SSE event on the recipient's stream, fetch the fragment, find the row."""
    from adapters.settings import Settings
    from entrypoints.bootstrap import build_app
    from tests.conftest import PATIENT

    relais = build_app(Settings(database_url=url))
    events: list[tuple[float, str]] = []
    ready = threading.Event()

    def listen() -> None:
        with recipient.stream("GET", "/inbox/stream", timeout=None) as r:
            for line in r.iter_lines():
                if line.startswith("event: ready"):
                    ready.set()
                if line.startswith("data: {"):
                    events.append((time.perf_counter(), json.loads(line[6:])["dossier"]))

    threading.Thread(target=listen, daemon=True).start()
    assert ready.wait(120), "no SSE stream"  # after the 50-client runs the server may still be draining requests
    delays = []
    for i in range(samples):
        name = "Bench" + chr(65 + i % 26) + chr(65 + i // 26 % 26)
        did = relais.create_dossier(actor_id=who["requester"]["id"], workflow="stroke_opinion", question="Bench ?",
                                    urgency="stat", consent="given", **dict(PATIENT, patient_birth_name=name))
        relais.address_recipient(dossier_id=did, actor_id=who["requester"]["id"],
                                 establishment_id=who["recipient"]["establishment_id"])
        t0 = time.perf_counter()
        relais.send_dossier(dossier_id=did, actor_id=who["requester"]["id"])
        while True:
            hit = [t for t, d in events if d == did]
            if hit:
                page = recipient.get("/inbox/received", headers={"HX-Request": "true"})
                if did in page.text:
                    delays.append(time.perf_counter() - t0)
                    break
            if time.perf_counter() - t0 > 10:
                raise RuntimeError("row never appeared")
            time.sleep(0.002)
        time.sleep(0.2)
    relais.close()
    return delays


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database", default=DEFAULT_URL)
    p.add_argument("--prepare", action="store_true", help="generate, import and project the history first")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the annex volume for --prepare (1 = 170,981 dossiers)")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--samples", type=int, default=50)
    a = p.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    port = free_port()
    env.update(RELAIS_DATABASE_URL=a.database, RELAIS_HTTP_PORT=str(port), RELAIS_LOG_LEVEL="WARNING",
               RELAIS_SECRET_KEY="bench-" + "x" * 40, RELAIS_DATA_DIR=tempfile.mkdtemp())
    print(f"load average {os.getloadavg()[0]:.2f}")
    if a.prepare:
        prepare(a.database, env, a.scale)
    else:
        run("db", "upgrade", env=env)  # idempotent: indexes added since the store was prepared (/health needs one)
    who = users(a.database)
    import psycopg

    with psycopg.connect(a.database, autocommit=True) as conn:
        # planner statistics after bulk loads (autovacuum may not have come yet)
        conn.execute("ANALYZE relais_events; ANALYZE inbox_dossiers; ANALYZE inbox_sends; ANALYZE inbox_views")
        n = conn.execute("SELECT count(*) FROM inbox_dossiers").fetchone()[0]
        e = conn.execute("SELECT max(notification_id) FROM relais_events").fetchone()[0]
    print(f"store: {n:,} dossiers, {e:,} events; recipient establishment has {who['received_rows']:,} sends")
    # every projection runner, as `relais up` runs them (a read model left behind — e.g. dropped by
    # a schema change — is caught up first: /health counts each projection's lag)
    parts = [subprocess.Popen([RELAIS, "projections", "run"], env=env),
             subprocess.Popen([RELAIS, "serve"], env=env)]
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if urllib.request.urlopen(base + "/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        t = time.monotonic()
        while any(p["lag"] for p in json.load(urllib.request.urlopen(base + "/health", timeout=30))["projections"]):
            time.sleep(1)
        print(f"projections caught up ({time.monotonic() - t:.0f} s)")
        recipient = login(base, who["recipient"]["rpps"])
        cookie = "; ".join(f"{k}={v}" for k, v in recipient.cookies.items())
        targets = {
            "/health": (base + "/health", {}),
            "inbox page (received)": (base + "/inbox/received", {"Cookie": cookie}),
            "closed tab page": (base + "/inbox/closed", {"Cookie": cookie}),
            "filtered fragment (received, emergency opinions, answered)": (
                base + "/inbox/received?workflow=emergency_opinion&state=answered", {"Cookie": cookie, "HX-Request": "true"}),
            "search fragment (received, a 6-letter name)": (
                base + "/inbox/received?q=martin", {"Cookie": cookie, "HX-Request": "true"}),
            "search fragment (closed, imaging transfer, name: no match)": (
                base + "/inbox/closed?workflow=imaging_transfer&q=a", {"Cookie": cookie, "HX-Request": "true"}),
        }
        print(f"\n{'target':<55} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
        for clients in (1, 50):
            for name, (url, headers) in targets.items():
                r = wrk(url, clients, a.seconds, headers)
                print(f"{name:<55} {clients:>7} {r['rps']:>8.1f} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['p99']:>8.1f} {r['errors']:>6}")
        delays = sorted(live_latency(base, recipient, a.database, who, a.samples))
        q = statistics.quantiles(delays, n=100, method="inclusive")  # never above the maximum
        print(f"\nsend → row in the recipient's open inbox ({len(delays)} sends): median {statistics.median(delays) * 1000:.0f} ms, "
              f"p99 {q[98] * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms")
    finally:
        for part in parts:
            part.terminate()
            part.wait(timeout=30)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
