"""The fault suite: under a steady, bounded load of dossier commands (HTTP) and C-STORE associations
(storescu), each fault leaves nothing acknowledged lost or duplicated, every acknowledged instance
whole and recorded, the read models equal to a rebuild, and the live inbox delivering.

One `relais up --demo` (private PostgreSQL and Redis, data folder on a small tmpfs) serves the
module; the tests run in order and each leaves it running. Figures (recovery times, counts checked)
are printed (`pytest -s`) and kept in bench/README.md."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from tests.faults.checks import live_inbox_delivers, verify
from tests.faults.load import Load
from tests.faults.servers import wait_until

OUTAGE = 5.0  # seconds PostgreSQL / Redis stay down
RECOVERY_BOUND = 30.0  # seconds a part may take to serve again (the target is 10 s; the bound leaves room for a loaded machine)


def figures(label: str, **values: float | str) -> None:
    shown = ", ".join(f"{k} {v:.2f} s" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
    print(f"\n[faults] {label}: {shown}")


@pytest.fixture(scope="module")
def directory(platform) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with psycopg.connect(platform.env["RELAIS_DATABASE_URL"], autocommit=True) as conn:
        toulouse = conn.execute("SELECT id FROM dir_establishments WHERE finess = '310781406'").fetchone()[0]
        neuro = conn.execute("SELECT id FROM dir_services WHERE establishment_id = %s AND code = 'neuroradio'",
                             (toulouse,)).fetchone()[0]
    return {"toulouse": str(toulouse), "neuroradio": str(neuro)}


def _load(platform, directory, tmp_path: Path, label: str) -> Load:  # type: ignore[no-untyped-def]
    load = Load(platform, directory, tmp_path, label).start()
    load.wait_acks("web", 3, 0.0, 60)
    load.wait_acks("dicom", 3, 0.0, 60)
    return load


def _after(load: Load, moment: float) -> tuple[float, float]:
    """Seconds from `moment` to the first dossier command and the first C-STORE acknowledged after it
    (waiting for two more of each: the load goes on after the recovery)."""
    web = load.wait_acks("web", 2, moment, 60)
    dicom = load.wait_acks("dicom", 2, moment, 60)
    return web - moment, dicom - moment


def _check(postgres, platform, load: Load, label: str) -> None:  # type: ignore[no-untyped-def]
    acks = load.stop()
    assert live_inbox_delivers(platform, load), "the live inbox did not deliver a dossier sent after the recovery"
    counts = verify(postgres, platform, load)
    figures(label, checked=str(counts), failures_during_fault=str(len(acks.failures)))


def test_kill_9_web(postgres, platform, directory, tmp_path):
    load = _load(platform, directory, tmp_path, "web")
    killed = time.monotonic()
    platform.kill_part("web")
    wait_until(platform.healthy, RECOVERY_BOUND, "web serving again after kill -9")
    health = time.monotonic() - killed
    web, dicom = _after(load, killed)
    figures("kill -9 web", health_again=health, first_command=web, first_store=dicom)
    _check(postgres, platform, load, "kill -9 web")


def test_kill_9_projection_runner(postgres, platform, directory, tmp_path):
    load = _load(platform, directory, tmp_path, "projections")
    killed = time.monotonic()
    platform.kill_part("projections")
    web, dicom = _after(load, killed)
    platform.pid("projections")
    restarted = time.monotonic() - killed
    figures("kill -9 projections", new_process=restarted, first_command=web, first_store=dicom)
    _check(postgres, platform, load, "kill -9 projections")


def _projections_past(platform, heads: dict[str, int]) -> bool:  # type: ignore[no-untyped-def]
    """Every projection has written at least up to its head of `heads` (one query on a fresh connection)."""
    from tests.faults.checks import positions

    now = positions(platform.env["RELAIS_DATABASE_URL"])
    return all(now[name][0] >= head for name, head in heads.items())


def test_postgresql_restarted_under_load(postgres, platform, directory, tmp_path):
    from tests.faults.checks import positions

    load = _load(platform, directory, tmp_path, "postgres")
    postgres.stop("fast")  # every connection of every process is cut
    time.sleep(OUTAGE)  # the outage: traffic keeps coming meanwhile (longer than eventsourcing's own retries, 2 s)
    postgres.start()
    back = time.monotonic()
    heads = {name: head for name, (_, head) in positions(platform.env["RELAIS_DATABASE_URL"]).items()}
    wait_until(platform.healthy, RECOVERY_BOUND, "web health after the PostgreSQL restart")
    health = time.monotonic() - back
    web, dicom = _after(load, back)
    load.wait_acks("web", 3, back, 60)  # events after the restart, for the projections to follow
    heads = {name: head for name, (_, head) in positions(platform.env["RELAIS_DATABASE_URL"]).items()}
    wait_until(lambda: _projections_past(platform, heads), RECOVERY_BOUND, "projections following again")
    projections = time.monotonic() - back
    assert platform.ping_job(timeout=RECOVERY_BOUND)["worker"] == "arq"
    worker = time.monotonic() - back
    late = [f for t, f in load.acks.failures if t > back + 1.0]
    figures("PostgreSQL restart", outage=OUTAGE, health_again=health, first_command=web, first_store=dicom,
            projections_following=projections, worker_job=worker, failures_after_restart=str(late))
    _check(postgres, platform, load, "PostgreSQL restart")


def test_a_live_inbox_open_across_a_postgresql_restart_still_delivers(postgres, platform, directory, tmp_path):
    """A recipient's inbox stream opened before PostgreSQL restarts gets the dossiers sent after it
    (reopened as a browser's EventSource would if the server ended it)."""
    from tests.faults.checks import InboxListener
    from tests.faults.load import REQUESTER, Clinician

    listener = InboxListener(platform.base)
    sender = Clinician(platform.base, REQUESTER.rpps)
    load = Load(platform, directory, tmp_path, "stream", max_flows=0, max_stores=0)
    try:
        assert listener.ready.wait(15)
        postgres.stop("fast")
        time.sleep(2.0)  # the outage
        postgres.start()
        wait_until(platform.healthy, RECOVERY_BOUND, "web health after the PostgreSQL restart")
        if not listener.thread.is_alive():  # the server ended the stream: the browser reconnects
            listener.close()
            listener = InboxListener(platform.base)
            assert listener.ready.wait(15)
        did = wait_until(lambda: load.flow(sender, f"faute-stream-{time.monotonic_ns()}"), RECOVERY_BOUND,
                         "a dossier sent after the restart")
        delivered = listener.wait_for(did, 20)
    finally:
        sender.close()
        listener.close()
    assert delivered, "the inbox stream opened before the restart stays open but delivers nothing"


def test_redis_stopped_and_started_under_load(postgres, redis, platform, directory, tmp_path):
    """Jobs enqueued while Redis is down wait for it, then run once; web sessions (in Redis) are
    lost with it, so the load signs in again."""
    import threading
    import uuid

    from adapters.jobs import ArqJobs

    load = _load(platform, directory, tmp_path, "redis")
    jobs = ArqJobs(redis.url)  # like the web's: a client made while Redis was up
    token = uuid.uuid4().hex
    outcome: dict[str, object] = {}

    def enqueue() -> None:
        try:
            job = jobs.enqueue("ping", job_id=f"ping:{token}", token=token)
            outcome["result"] = jobs.result(job, timeout=RECOVERY_BOUND + OUTAGE)
        except BaseException as e:  # noqa: BLE001 - reported below
            outcome["error"] = e

    try:
        redis.stop()
        down = time.monotonic()
        waiting = threading.Thread(target=enqueue, daemon=True)
        waiting.start()
        time.sleep(OUTAGE)
        assert "error" not in outcome, f"enqueue failed while Redis was down instead of waiting: {outcome['error']!r}"
        redis.start()
        back = time.monotonic()
        waiting.join(RECOVERY_BOUND + OUTAGE + 10)
        assert outcome.get("result", {}).get("token") == token, outcome  # type: ignore[union-attr]
        job_done = time.monotonic() - back
    finally:
        jobs.close()
    web, dicom = _after(load, back)
    started = f"→ ping:{token}:ping("  # arq logs each job it starts: "  0.01s → ping:<token>:ping(token=…)"
    wait_until(lambda: started in platform.output, 10, "the worker's log of the job")
    runs = platform.output.count(started)
    assert runs == 1, f"job ran {runs} times"
    fresh = platform.ping_job(timeout=RECOVERY_BOUND)
    assert fresh["worker"] == "arq"
    assert "worker s'est arrêté" not in platform.output, "the worker process died with Redis"
    late = [f for t, f in load.acks.failures if t > back + 1.0]
    figures("Redis stop/start", outage=time.monotonic() - down - (time.monotonic() - back), job_after_restart=job_done,
            first_command=web, first_store=dicom, failures_after_restart=str(late))
    _check(postgres, platform, load, "Redis stop/start")


def test_disk_full_during_a_document_upload(postgres, platform, data_folder, directory, tmp_path):
    """The data folder's file system full (a real ENOSPC on a small tmpfs): the upload answers a clear
    French message, no document event is recorded and no partial file is left; once space is back
    the same upload works."""
    import hashlib
    import os

    from tests.faults.checks import app_on
    from tests.faults.load import CSRF, HX, REQUESTER, Clinician
    from tests.web.shown import documents_version

    if not data_folder.mounted:
        pytest.skip(f"no file system of our own to fill ({data_folder.why_not})")
    load = _load(platform, directory, tmp_path, "disk")
    clinician = Clinician(platform.base, REQUESTER.rpps)
    documents = platform.data_dir / "documents"
    pdf = b"%PDF-1.4\n" + os.urandom(4 * 1024 * 1024) + b"\n%%EOF\n"
    digest = hashlib.sha256(pdf).hexdigest()
    try:
        did = load.create(clinician, f"faute-disk-upload-{digest[:8]}")
        page = clinician.page(f"/dossiers/{did}/edit/documents")
        csrf = CSRF.search(page)
        assert csrf
        headers = HX | {"x-csrftoken": csrf.group(1)}
        shown = {"expected_version": documents_version(page)}  # the version the upload form shows
        data_folder.fill(leave=1024 * 1024)
        try:
            full = clinician.client.post(f"/dossiers/{did}/documents", headers=headers, data=shown,
                                         files={"file": ("scanner.pdf", pdf, "application/pdf")}, timeout=60)
            free_during = data_folder.free()
        finally:
            data_folder.release()
        assert full.status_code in (422, 507), (full.status_code, full.text[:500])
        assert "espace disque" in full.text, full.text[:500]
        assert not (documents / digest[:2] / digest[2:4] / digest).exists()
        assert list((documents / "incoming").iterdir()) == [], "a partial upload was left behind"
        app = app_on(platform.env["RELAIS_DATABASE_URL"])
        try:
            def attached() -> int:
                return sum(1 for e in app.repository.get(__import__("uuid").UUID(did)).documents)
            assert attached() == 0, "a document event was recorded for a file that was not written"
            again = clinician.client.post(f"/dossiers/{did}/documents", headers=headers, data=shown,
                                          files={"file": ("scanner.pdf", pdf, "application/pdf")}, timeout=60)
            assert again.status_code == 200 and "scanner.pdf" in again.text, again.text[:500]
            assert attached() == 1
        finally:
            app.close()
        blob = documents / digest[:2] / digest[2:4] / digest
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest
    finally:
        clinician.close()
    figures("disk full during an upload", status=str(full.status_code), free_bytes_during=str(free_during))
    _check(postgres, platform, load, "disk full")


def test_kill_9_of_the_whole_relais_up_tree_then_start_again(postgres, platform, directory, tmp_path):
    load = _load(platform, directory, tmp_path, "tree")
    platform.kill_tree()
    killed = time.monotonic()
    startup = platform.start()
    web, dicom = _after(load, killed)
    figures("kill -9 of the whole tree", start_to_ready=startup, first_command=web, first_store=dicom)
    _check(postgres, platform, load, "kill -9 of the whole tree")
