"""Start-up time of `relais up`: from launch to the first HTTP 200 of /health, fresh and existing data folder.

Each run launches `relais up` with RELAIS_DATA_DIR in a new temporary folder and no
RELAIS_DATABASE_URL (so the embedded PostgreSQL is created there: initdb, tables), waits for
/health to answer 200, stops it with SIGTERM and waits for the whole process tree, embedded
PostgreSQL included, to be gone; then starts again on the same (now existing) folder. Free
ports are taken for the web and the DICOM node. Prints min and median; asserts nothing about
time; exits non-zero if /health never answered or processes were left behind.

    .venv/bin/python bench/startup.py              # 3 runs of each
    .venv/bin/python bench/startup.py --repeat 5 --timeout 300
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers import free_port  # noqa: E402


def relais_command() -> list[str]:
    script = Path(sys.executable).with_name("relais")
    return [str(script)] if script.exists() else [sys.executable, "-m", "entrypoints.cli.main"]


@dataclass
class Run:
    label: str
    ready: float | None = None  # seconds from launch to the first 200 of /health
    stop: float | None = None  # seconds from SIGTERM to the exit of `relais up`
    exit_code: int | None = None
    spawned: float | None = None  # seconds from launch to the children's start (database and tables ready)
    processes: int = 0  # processes seen at ready: relais up and its children…
    postgres: int = 0  # …and the embedded PostgreSQL server with its workers and backends
    pss_mb: float = 0.0  # proportional set size of them all (shared memory counted once)
    leftovers: list[str] = field(default_factory=list)
    error: str = ""


def postmaster_pid(data_dir: Path) -> int | None:
    """The server's pid (negative while initdb runs a single-user backend: not a server yet)."""
    try:
        pid = int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 0 else None


def tree(pid: int, data_dir: Path) -> list[psutil.Process]:
    """`relais up`, its descendants, and the embedded PostgreSQL server with its backends."""
    procs: dict[int, psutil.Process] = {}
    try:
        top = psutil.Process(pid)
        procs[pid] = top
        procs.update((p.pid, p) for p in top.children(recursive=True))
    except psutil.NoSuchProcess:
        pass
    server = postmaster_pid(data_dir)
    if server:
        try:
            pm = psutil.Process(server)
            procs[server] = pm
            procs.update((p.pid, p) for p in pm.children(recursive=True))
        except psutil.Error:
            pass
    return list(procs.values())


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def describe(p: psutil.Process) -> str:
    try:
        return f"{p.pid} {' '.join(p.cmdline())[:100]}"
    except psutil.Error:
        return str(p.pid)


def children_started(log_path: Path, label: str, launched: float) -> float | None:
    """When `relais up` started its first child, from its log line (database and tables were ready)."""
    text = log_path.read_text(encoding="utf-8", errors="replace")
    section = text.rsplit(f"===== {label}:", 1)[-1]
    for line in section.splitlines():
        if "relais.up" in line and "démarré" in line:
            try:
                stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000
            except ValueError:
                return None
            return stamp - launched
    return None


def health(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - loopback
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def start_and_stop(label: str, data_dir: Path, timeout: float, log_path: Path) -> Run:
    run = Run(label)
    http_port, dicom_port = free_port(), free_port()
    while dicom_port == http_port:
        dicom_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    env.update(
        RELAIS_DATA_DIR=str(data_dir), RELAIS_HTTP_HOST="127.0.0.1", RELAIS_HTTP_PORT=str(http_port),
        RELAIS_DICOM_HOST="127.0.0.1", RELAIS_DICOM_PORT=str(dicom_port), PYTHONUNBUFFERED="1",
    )
    url = f"http://127.0.0.1:{http_port}/health"
    seen: dict[int, psutil.Process] = {}
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n===== {label}: relais up on {data_dir} (web {http_port}, dicom {dicom_port})\n")
        log.flush()
        launched = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [*relais_command(), "up"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            last = None
            while time.perf_counter() - t0 < timeout:
                if proc.poll() is not None:
                    run.error = f"relais up exited with code {proc.returncode} before /health answered 200"
                    break
                seen.update((p.pid, p) for p in tree(proc.pid, data_dir))
                last = health(url)
                if last == 200:
                    run.ready = time.perf_counter() - t0
                    break
                time.sleep(0.05)
            else:
                run.error = f"no 200 from {url} within {timeout:.0f} s (last answer: {last or 'none'})"
            procs = alive(tree(proc.pid, data_dir))
            seen.update((p.pid, p) for p in procs)
            for p in procs:
                try:
                    if p.name().startswith("postgres"):
                        run.postgres += 1
                    else:
                        run.processes += 1
                    info = p.memory_full_info()
                    run.pss_mb += getattr(info, "pss", info.rss) / 2**20
                except psutil.Error:
                    pass
        finally:
            if proc.poll() is None:
                t1 = time.perf_counter()
                proc.send_signal(signal.SIGTERM)
                try:
                    run.exit_code = proc.wait(timeout=60)
                    run.stop = time.perf_counter() - t1
                except subprocess.TimeoutExpired:
                    run.error += "; relais up still running 60 s after SIGTERM: killed"
                    os.killpg(proc.pid, signal.SIGKILL)
                    run.exit_code = proc.wait()
            else:
                run.exit_code = proc.returncode
    run.spawned = children_started(log_path, label, launched)
    # The children and the embedded server may take a moment after the supervisor's exit.
    deadline = time.monotonic() + 15
    while alive(list(seen.values())) and time.monotonic() < deadline:
        time.sleep(0.1)
    for p in alive(list(seen.values())):  # ours: started by this run; ended so the next run starts clean
        run.leftovers.append(describe(p))
        try:
            p.kill()
        except psutil.Error:
            pass
    return run


def summary(label: str, values: list[float]) -> str:
    if not values:
        return f"{label:<40} —"
    return (
        f"{label:<40} min {min(values):6.2f} s   median {statistics.median(values):6.2f} s"
        f"   max {max(values):6.2f} s   (n={len(values)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs on a fresh and on an existing folder (default 3)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for /health (default 180)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folders and the log")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="relais-startup-"))
    root.chmod(0o755)  # as root, the embedded server runs as its own user and must reach its folder
    log_path = root / "relais-up.log"
    print(
        f"Relais startup benchmark — `{' '.join(relais_command())} up`, embedded PostgreSQL, "
        f"{args.repeat} run(s) each; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}\nlog: {log_path}",
        flush=True,
    )
    runs: list[Run] = []
    failed = False
    try:
        for i in range(1, args.repeat + 1):
            data_dir = root / f"run{i}" / "var"
            for label in ("fresh", "existing"):
                run = start_and_stop(f"run {i} {label}", data_dir, args.timeout, log_path)
                runs.append(run)
                ready = f"{run.ready:6.2f} s to /health 200" if run.ready is not None else "   no /health 200   "
                stop = f"stop {run.stop:5.2f} s" if run.stop is not None else "stop    —  "
                gone = "tree gone" if not run.leftovers else f"LEFT BEHIND: {run.leftovers}"
                spawned = f"{run.spawned:5.2f}" if run.spawned is not None else "  —  "
                print(
                    f"{run.label:<16} {ready} (parts started at {spawned} s)   {stop} (exit {run.exit_code})   "
                    f"{run.processes} relais + {run.postgres} postgres processes, {run.pss_mb:4.0f} MB PSS   {gone}",
                    flush=True,
                )
                if run.error:
                    print(f"    {run.error}", flush=True)
                failed |= run.ready is None or bool(run.leftovers) or run.exit_code != 0
            if runs[-2].ready is None:
                print("    (stopping here: the platform does not start; see the log)", flush=True)
                tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
                print("    " + "\n    ".join(tail), flush=True)
                break
            if not args.keep:
                shutil.rmtree(data_dir.parent, ignore_errors=True)
        print()
        print(summary("start, fresh data folder", [r.ready for r in runs if "fresh" in r.label and r.ready]))
        print(summary("start, existing data folder", [r.ready for r in runs if "existing" in r.label and r.ready]))
        print(summary("  parts started (fresh: db + tables)", [r.spawned for r in runs if "fresh" in r.label and r.ready and r.spawned]))
        print(summary("  parts started (existing)", [r.spawned for r in runs if "existing" in r.label and r.ready and r.spawned]))
        print(summary("stop (SIGTERM → exit)", [r.stop for r in runs if r.stop is not None]))
        print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep and not failed:
            shutil.rmtree(root, ignore_errors=True)
        elif failed:
            print(f"(log and data kept in {root})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
