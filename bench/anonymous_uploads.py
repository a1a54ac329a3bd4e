"""Anonymous uploads against a live web process: its memory while they run, and a signed-in user's page meanwhile.

Starts `relais serve` on a fresh database (`relais_bench_uploads_<pid>`, dropped at the end) and a
temporary data folder, signs a clinician in, warms the process up and reads its idle VmRSS. Then
`--uploads` anonymous clients each POST a multipart form of `--size-mb` MiB to the imaging import
of a dossier (4 GiB limit), as an attacker would: no session, no CSRF header. The bodies are made
while they are sent (one 1 MiB block sent again and again, raw asyncio sockets, nothing held by the
client); each client stops when the server answers or closes. Meanwhile a thread samples the web
process's VmRSS (every 10 ms, the peak is kept) and the signed-in user loads the inbox (`/`) again
and again (0.1 s apart) for as long as the uploads run and at least `--min-seconds`. With
`--repeat`, each client starts a new upload as soon as one ends until `--min-seconds` have passed
(a sustained attack rather than one volley).

Prints: idle and peak RSS, the growth; per upload the answer and how many bytes the client had
sent when it came (the rest was never read); the page's latency before and during the uploads
(median, p95, max) and that every load was a 200 of the signed-in inbox. Asserts nothing about
time; exits non-zero if a page load failed or an upload got no answer.

    .venv/bin/python bench/anonymous_uploads.py                         # 20 × 1 GiB
    .venv/bin/python bench/anonymous_uploads.py --uploads 4 --size-mb 64 --part field --source /tmp/relais-before
        # the same against another tree (e.g. `git archive <commit> | tar -x -C /tmp/relais-before`),
        # run with this venv: figures before a change. A plain field (no file name) is what the old
        # CSRF middleware held in memory; a file part (default) it spooled to /tmp.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.credentials import Credentials  # noqa: E402
from adapters.settings import Settings  # noqa: E402
from entrypoints.bootstrap import build_app, build_pool, upgrade  # noqa: E402
from tests.peers import free_port, wait_port  # noqa: E402

MB = 1024 * 1024
BLOCK = b"\0" * MB
BOUNDARY = "benchboundary1aF3kQ9z"
PASSWORD = "bench uploads password"
RPPS = "10000000017"  # a valid RPPS (Luhn key)
PATIENT = dict(patient_birth_name="Dupont", patient_first_names="Jeanne", patient_birth_date="1950-03-02",
               patient_sex="F", patient_birth_place_code="31555")


@dataclass
class Upload:
    status: int | None = None  # the answer's status; None: closed without one
    sent: int = 0  # body bytes handed to the socket when the answer (or the close) came
    total: int = 0
    error: str = ""


def vm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, vm_rss(pid), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            try:
                self.peak = max(self.peak, vm_rss(self.pid))
            except (OSError, RuntimeError):
                return


async def upload(port: int, path: str, size: int, part: str) -> Upload:
    """One upload over a raw non-blocking socket: the body is sent while the answer is read; after a send
    fails (the server closed), what the server had answered is still read (Linux keeps it for us)."""
    loop = asyncio.get_running_loop()
    disposition = 'form-data; name="files"' + ('; filename="cd.zip"' if part == "file" else "")
    head = (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    total = len(head) + size + len(tail)
    result = Upload(total=total)
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request_head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHX-Request: true\r\n"
                    f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {total}\r\n\r\n").encode()

    async def answer() -> None:
        received = b""
        while b"\r\n" not in received:
            try:
                data = await loop.sock_recv(sock, 4096)
            except OSError as e:
                result.error = type(e).__name__
                return
            if not data:
                result.error = result.error or "closed"
                return
            received += data
        result.status = int(received.split()[1])

    answered = asyncio.create_task(answer())
    try:
        await loop.sock_sendall(sock, request_head)
        blocks = [head] + [BLOCK] * (size // MB) + [BLOCK[: size % MB], tail]
        for block in blocks:
            if answered.done():
                break
            send = asyncio.ensure_future(loop.sock_sendall(sock, block))
            await asyncio.wait([send, answered], return_when=asyncio.FIRST_COMPLETED)
            if not send.done():  # answered while sending: stop there
                send.cancel()
                break
            send.result()
            result.sent += len(block)
    except OSError as e:
        result.error = type(e).__name__
    try:
        await asyncio.wait_for(answered, timeout=600)
    finally:
        answered.cancel()
        sock.close()
    return result


async def attack(port: int, path: str, clients: int, size: int, part: str, repeat_until: float | None) -> list[Upload]:
    async def client() -> list[Upload]:
        done = [await upload(port, path, size, part)]
        while repeat_until is not None and time.monotonic() < repeat_until:
            done.append(await upload(port, path, size, part))
        return done

    per_client = await asyncio.gather(*(client() for _ in range(clients)))
    return [u for uploads in per_client for u in uploads]


def page_loads(base: str, cookies: dict[str, str], stop: threading.Event, out: list[tuple[float, int, bool]]) -> None:
    """GET / again and again until `stop`: (seconds, status, the signed-in inbox was shown)."""
    with httpx.Client(base_url=base, cookies=cookies, timeout=120, follow_redirects=False) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                r = client.get("/")
                out.append((time.perf_counter() - t0, r.status_code, r.status_code == 200 and "Nouveau télédossier" in r.text))
            except httpx.HTTPError:
                out.append((time.perf_counter() - t0, 0, False))
            stop.wait(0.1)


def summary(loads: list[tuple[float, int, bool]]) -> str:
    if not loads:
        return "none"
    ms = sorted(s * 1000 for s, _, _ in loads)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    ok = sum(1 for _, _, shown in loads if shown)
    return f"{len(ms)} loads, {ok} ok; median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=20, help="concurrent anonymous uploads (20)")
    parser.add_argument("--size-mb", type=int, default=1024, help="size of each upload's part in MiB (1024)")
    parser.add_argument("--part", choices=["file", "field"], default="file", help="a file part (default) or a plain field")
    parser.add_argument("--min-seconds", type=float, default=10.0, help="page loads last at least this long (10)")
    parser.add_argument("--repeat", action="store_true", help="each client uploads again until --min-seconds have passed")
    parser.add_argument("--source", type=Path, default=ROOT, help="the source tree whose web process is started (this one)")
    parser.add_argument("--server", default=os.environ.get("RELAIS_TEST_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args(argv)

    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    name = f"relais_bench_uploads_{os.getpid()}"
    with psycopg.connect(args.server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = args.server.rsplit("/", 1)[0] + "/" + name
    tmp = Path(tempfile.mkdtemp(prefix="relais-bench-uploads-"))
    settings = Settings(database_url=url, data_dir=tmp / "var")
    server = None
    failed = False
    try:
        upgrade(settings)
        relais = build_app(settings)
        pool = build_pool(settings, max_size=2)
        tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
        clinician = relais.add_practitioner(rpps=RPPS, family_name="Martin", given_name="Claire", establishment_id=tlse,
                                            roles=["clinician"])
        Credentials(pool).set_password(clinician, PASSWORD)
        dossier = relais.create_dossier(actor_id=clinician, workflow="imaging_transfer", question="Avis ?", consent="given",
                                        imaging_source="dicom_store", **PATIENT)
        pool.close()
        relais.close()

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
        env.update(RELAIS_DATABASE_URL=url, RELAIS_DATA_DIR=str(settings.data_dir), RELAIS_HTTP_PORT=str(port),
                   RELAIS_SECRET_KEY="bench-uploads-secret-" + uuid.uuid4().hex, RELAIS_LOG_LEVEL="WARNING",
                   PYTHONPATH=str(args.source.resolve()))
        log = open(tmp / "serve.log", "wb")
        server = subprocess.Popen([sys.executable, "-m", "entrypoints.cli.main", "serve"], cwd=args.source, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(port, timeout=60, proc=server)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as c:
            token = re.search(r'name="_csrf_token" value="([^"]+)"', c.get("/login").text).group(1)
            r = c.post("/login", data={"login": RPPS, "password": PASSWORD, "_csrf_token": token})
            assert r.status_code == 303, f"login: {r.status_code}"
            cookies = dict(c.cookies.items())
        print(f"web process {server.pid} from {args.source.resolve()} on {base}")

        idle_loads: list[tuple[float, int, bool]] = []
        stop = threading.Event()
        warm = threading.Thread(target=page_loads, args=(base, cookies, stop, idle_loads))
        warm.start()
        time.sleep(3)  # warm-up and idle page latency: about 30 loads
        stop.set()
        warm.join()
        # one small refused upload so that the code paths of a refusal are loaded before idle is read
        asyncio.run(attack(port, f"/dossiers/{dossier}/dicom/import", 1, MB, args.part, None))
        time.sleep(0.5)
        idle = vm_rss(server.pid)
        cpu0 = psutil.Process(server.pid).cpu_times()

        sampler = RssSampler(server.pid)
        sampler.start()
        loads: list[tuple[float, int, bool]] = []
        stop = threading.Event()
        loader = threading.Thread(target=page_loads, args=(base, cookies, stop, loads))
        loader.start()
        t0 = time.monotonic()
        uploads = asyncio.run(attack(port, f"/dossiers/{dossier}/dicom/import", args.uploads, args.size_mb * MB, args.part,
                                     t0 + args.min_seconds if args.repeat else None))
        elapsed = time.monotonic() - t0
        while time.monotonic() - t0 < args.min_seconds:
            time.sleep(0.05)
        stop.set()
        loader.join()
        sampler.done.set()
        sampler.join()
        cpu1 = psutil.Process(server.pid).cpu_times()
        after = vm_rss(server.pid)

        statuses: dict[str, int] = {}
        for u in uploads:
            key = str(u.status) if u.status is not None else f"no answer ({u.error or 'closed'})"
            statuses[key] = statuses.get(key, 0) + 1
        sent = sorted(u.sent for u in uploads)
        print(f"\n{args.uploads} anonymous uploads of {args.size_mb} MiB ({args.part} part){' repeated' if args.repeat else ''}: "
              f"{len(uploads)} requests in {elapsed:.2f} s")
        print(f"  answers: {', '.join(f'{k} × {v}' for k, v in sorted(statuses.items()))}")
        print(f"  body bytes sent when answered: median {statistics.median(sent) / MB:.1f} MiB, "
              f"max {sent[-1] / MB:.1f} MiB of {uploads[0].total / MB:.1f} MiB each")
        print(f"  web process RSS: idle {idle / MB:.1f} MiB, peak {sampler.peak / MB:.1f} MiB "
              f"(+{(sampler.peak - idle) / MB:.1f} MiB), after {after / MB:.1f} MiB")
        print(f"  web process CPU during the run: {cpu1.user - cpu0.user + cpu1.system - cpu0.system:.2f} s")
        print(f"  signed-in page /, idle:   {summary(idle_loads)}")
        print(f"  signed-in page /, during: {summary(loads)}")
        failed = any(not shown for _, _, shown in loads) or any(u.status is None for u in uploads)
        if failed:
            print("FAILED: a page load was not the signed-in inbox, or an upload got no answer")
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        with psycopg.connect(args.server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
