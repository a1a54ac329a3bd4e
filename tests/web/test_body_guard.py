"""Request bodies against a live `relais serve`: nothing is read of a body sent anonymously or without
its CSRF header, bodies over their route's limit are refused (413), uploads stream to disk.

Bodies are generated while they are sent, over a raw socket that reads the answer as it comes: a
request refused before its body is read gets its answer while most of the body is still unsent.
The server's memory is its VmRSS (/proc), sampled while a request runs: a memory figure, no timing."""

from __future__ import annotations

import re
import select
import socket
import stat
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests

from adapters.blobs import MAX_DOCUMENT_BYTES
from adapters.credentials import Credentials
from adapters.settings import Settings
from entrypoints.bootstrap import build_app, build_pool, upgrade
from tests.conftest import PATIENT, SERVER_URL, rpps
from tests.dicomdata import write_study
from tests.live import start_serve
from tests.peers import stop
from tests.web.shown import documents_version

RELAIS = str(Path(sys.executable).with_name("relais"))
PASSWORD = "body guard password 2026"
MB = 1024 * 1024
BIG = 200 * MB  # an upload far larger than anything the server may hold for it
FEW_MB = 8 * MB  # what the server's memory may grow by while it refuses one
CHUNK = b"\0" * MB
BOUNDARY = "relaisboundary7MA4YWxkTrZu0gW"
REFUSED_ANONYMOUS = (303, 401)  # the login guard's answers: to the login page, or 401 with HX-Redirect


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # bytes of the body sent when the answer's head arrived
    peak_growth: int = 0  # the server's VmRSS peak while the request ran, over its value before
    closed_by_server: bool = False


@dataclass
class Live:
    base: str
    port: int
    pid: int
    data_dir: Path
    dossier_id: str
    cookies: dict[str, str] = field(default_factory=dict)  # a signed-in requester's session and CSRF cookies
    token: str = ""


def vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RssPeak:
    """Samples a process's VmRSS in a thread until stopped; `growth` is the peak over the first sample."""

    def __init__(self, pid: int):
        self.pid, self.start, self.peak = pid, vm_rss(pid), 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, vm_rss(self.pid))

    def growth(self) -> int:
        self.stop.set()
        self.thread.join()
        return max(self.peak, vm_rss(self.pid)) - self.start


def multipart(size: int, *, filename: str | None = "cd.zip", name: str = "files") -> tuple[bytes, Iterator[bytes], bytes, int]:
    """(head, body chunks, tail, total length) of a one-part form whose part holds `size` zero bytes."""
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        left = size
        while left > 0:
            yield CHUNK[: min(len(CHUNK), left)]
            left -= len(CHUNK)

    return head, chunks(), tail, len(head) + size + len(tail)


def stream_request(
    live: Live, method: str, path: str, *, headers: dict[str, str], parts: Iterator[bytes] | None = None, length: int | None = 0,
    signed_in: bool = False, csrf_header: bool = False, stop_after: int | None = None, timeout: float = 120.0,
) -> Answer:
    """Sends the request head, then the body from `parts` while reading the answer; stops sending as soon
    as the answer's head has arrived (or the server closed). `length` None sends the body chunked.
    `stop_after`: close the connection once that many body bytes are sent (an interrupted upload)."""
    head = {"Host": f"127.0.0.1:{live.port}", **headers}
    if signed_in:
        head["Cookie"] = "; ".join(f"{k}={v}" for k, v in live.cookies.items())
    if csrf_header:
        head["X-CSRFToken"] = live.token
    if length is None:
        head["Transfer-Encoding"] = "chunked"
    else:
        head["Content-Length"] = str(length)
    parts = parts if parts is not None else iter(())
    request_head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    sock = socket.create_connection(("127.0.0.1", live.port))
    sock.setblocking(False)
    pending = memoryview(request_head.encode())
    sent, received, closed = 0, b"", False
    more = True
    deadline = time.monotonic() + timeout
    rss = RssPeak(live.pid)
    try:
        while b"\r\n\r\n" not in received:
            assert time.monotonic() < deadline, f"no answer after {sent} bytes of body"
            want_write = bool(pending) or more
            readable, writable, _ = select.select([sock], [sock] if want_write else [], [], 1.0)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed = True
                    break
                received += data
                continue
            if writable:
                if not pending:
                    chunk = next(parts, None)
                    if chunk is None:
                        more = False
                        if length is None:
                            pending = memoryview(b"0\r\n\r\n")
                        continue
                    sent += len(chunk)
                    pending = memoryview((f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") if length is None else chunk)
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    pending, more = memoryview(b""), False
                    continue
                pending = pending[n:]
                if stop_after is not None and sent >= stop_after and not pending:
                    sock.close()
                    return Answer(status=0, headers={}, body=b"", sent=sent, peak_growth=rss.growth())
        # the rest of the answer, if any
        while not closed and time.monotonic() < deadline:
            head_part, _, body = received.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head_part)
            if m and len(body) >= int(m.group(1)):
                break
            readable, _, _ = select.select([sock], [], [], 1.0)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed = True
                received += data
    finally:
        growth = rss.growth()
        sock.close()
    head_part, _, body = received.partition(b"\r\n\r\n")
    assert head_part, f"the server closed the connection without an answer after {sent} bytes of body"
    lines = head_part.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers_in = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return Answer(status=status, headers=headers_in, body=body, sent=sent, peak_growth=growth, closed_by_server=closed)


def post_form(live: Live, path: str, size: int, *, filename: str | None = "cd.zip", name: str = "files", signed_in: bool = False,
              csrf_header: bool = False, extra: dict[str, str] | None = None, **kw) -> Answer:
    head, chunks, tail, total = multipart(size, filename=filename, name=name)

    def parts() -> Iterator[bytes]:
        yield head
        yield from chunks
        yield tail

    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "HX-Request": "true", **(extra or {})}
    return stream_request(live, "POST", path, headers=headers, parts=parts(), length=total, signed_in=signed_in,
                          csrf_header=csrf_header, **kw)


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[Live]:
    """Its own database and data folder, a requester with a draft dossier, `relais serve` on a free port,
    and the requester signed in (cookies and CSRF token)."""
    tmp = tmp_path_factory.mktemp("bodyguard")
    name = f"relais_bg_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = SERVER_URL.rsplit("/", 1)[0] + "/" + name
    settings = Settings(database_url=url, data_dir=tmp / "var")
    upgrade(settings)
    relais = build_app(settings)
    pool = build_pool(settings, max_size=2)
    server = None
    try:
        tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
        requester = relais.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire",
                                            establishment_id=tlse, roles=["clinician"])
        Credentials(pool).set_password(requester, PASSWORD)
        did = relais.create_dossier(actor_id=requester, workflow="imaging_transfer", question="Avis ?", consent="given",
                                    imaging_source="dicom_store", **PATIENT)
        server, port = start_serve(url, settings.data_dir, tmp / "serve.log")
        base = f"http://127.0.0.1:{port}"
        s = requests.Session()
        page = s.get(f"{base}/login", timeout=20)
        token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text).group(1)
        r = s.post(f"{base}/login", data={"login": rpps(1), "password": PASSWORD, "_csrf_token": token},
                   allow_redirects=False, timeout=20)
        assert r.status_code == 303, r.text[:300]
        page = s.get(f"{base}/dossiers/{did}/edit/imaging", timeout=20)
        token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text).group(1)
        live = Live(base=base, port=port, pid=server.pid, data_dir=settings.data_dir, dossier_id=did,
                    cookies=dict(s.cookies.items()), token=token)
        for _ in range(3):  # warm: every code path of a page and a refusal has run once before memory is compared
            s.get(f"{base}/", timeout=20)
            post_form(live, f"/dossiers/{did}/dicom/import", 4 * MB, csrf_header=True)
            post_form(live, f"/dossiers/{did}/dicom/import", 4 * MB, filename=None, signed_in=True)
        yield live
    finally:
        stop(server)
        pool.close()
        relais.close()
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def imports(live: Live) -> list[Path]:
    folder = live.data_dir / "imports"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("filename", ["cd.zip", None], ids=["file-part", "plain-field"])
def test_an_anonymous_upload_is_refused_before_its_body_is_read(live: Live, filename: str | None):
    """The CSRF middleware used to parse the whole form looking for its token before the login was checked:
    a plain field was held in memory (twice), a file spooled to /tmp, then the request was refused."""
    answer = post_form(live, f"/dossiers/{live.dossier_id}/dicom/import", BIG, filename=filename)
    assert answer.status in REFUSED_ANONYMOUS
    assert answer.sent < BIG // 4, f"answered after {answer.sent // MB} MB of the body"
    assert answer.peak_growth < FEW_MB, f"the server grew by {answer.peak_growth / MB:.1f} MB"
    assert answer.headers.get("connection") == "close"  # the rest of the body is never read


def test_a_signed_in_upload_without_its_csrf_header_is_refused_before_its_body_is_read(live: Live):
    answer = post_form(live, f"/dossiers/{live.dossier_id}/dicom/import", BIG, filename=None, signed_in=True)
    assert answer.status == 403
    assert "jeton de sécurité" in answer.body.decode()
    assert answer.sent < BIG // 4, f"answered after {answer.sent // MB} MB of the body"
    assert answer.peak_growth < FEW_MB, f"the server grew by {answer.peak_growth / MB:.1f} MB"


def test_an_expired_or_unknown_session_counts_as_none(live: Live):
    forged = Live(**{**live.__dict__, "cookies": {**live.cookies, "relais_session": "0" * 32}})
    answer = post_form(forged, f"/dossiers/{live.dossier_id}/dicom/import", BIG, signed_in=True, csrf_header=True)
    assert answer.status in REFUSED_ANONYMOUS and answer.sent < BIG // 4


def form_post(live: Live, method: str, path: str, size: int, *, chunked: bool = False, **kw) -> Answer:
    body = b"a=" + b"b" * (size - 2)
    parts = iter([body[i:i + MB] for i in range(0, len(body), MB)])
    return stream_request(live, method, path, headers={"Content-Type": "application/x-www-form-urlencoded"},
                          parts=parts, length=None if chunked else len(body), **kw)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_anonymous_login_post_has_a_small_body_limit(live: Live, chunked: bool):
    answer = form_post(live, "POST", "/login", 64 * 1024, chunked=chunked)
    assert answer.status == 413 and "dépasse la taille" in answer.body.decode()


def test_a_form_post_has_a_small_body_limit(live: Live):
    """A url-encoded form is parsed whole in memory: 1 MB at most, on any route (2 MB was read before)."""
    answer = form_post(live, "POST", "/context", 2 * MB, signed_in=True, csrf_header=True)
    assert answer.status == 413
    answer = form_post(live, "POST", f"/dossiers/{live.dossier_id}/dicom/import", 2 * MB, signed_in=True, csrf_header=True)
    assert answer.status == 413


def test_a_body_on_a_get_is_refused_before_it_is_read(live: Live):
    """The CSRF middleware parsed a form body even on GET, before any check (10 MB read, the default limit)."""
    head, chunks, tail, total = multipart(64 * MB, filename=None)
    answer = stream_request(live, "GET", "/login", headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                            parts=iter([head, *chunks, tail]), length=total)
    assert answer.status == 413 and answer.sent < 6 * MB


def test_an_oversize_content_length_is_413_before_the_body(live: Live):
    over = MAX_DOCUMENT_BYTES + 2 * MB
    answer = post_form(live, f"/dossiers/{live.dossier_id}/documents", over, filename="scan.pdf", name="file",
                       signed_in=True, csrf_header=True)
    assert answer.status == 413 and answer.sent < over // 2


def test_an_interrupted_import_leaves_no_file_behind(live: Live):
    """Files of an import being received are private (0600, folders 0700); a client gone mid-body leaves nothing."""
    head, chunks, tail, total = multipart(BIG)

    def parts() -> Iterator[bytes]:
        yield head
        yield from chunks

    before = imports(live)
    result: list[Answer] = []
    sender = threading.Thread(target=lambda: result.append(stream_request(
        live, "POST", f"/dossiers/{live.dossier_id}/dicom/import", parts=parts(), length=total, signed_in=True,
        csrf_header=True, stop_after=64 * MB,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "HX-Request": "true"},
    )), daemon=True)
    sender.start()
    deadline = time.monotonic() + 60
    written: list[Path] = []
    while not written and time.monotonic() < deadline:
        written = [p for f in set(imports(live)) - set(before) for p in f.rglob("*") if p.is_file() and p.stat().st_size]
        time.sleep(0.01)
    assert written, "the upload never reached the disk"
    folder = live.data_dir / "imports" / written[0].relative_to(live.data_dir / "imports").parts[0]
    assert stat.S_IMODE(written[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    sender.join(timeout=120)
    assert result and result[0].status == 0  # the client hung up
    deadline = time.monotonic() + 60
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not folder.exists(), f"left behind: {[str(p) for p in folder.rglob('*')]}"


def test_a_signed_in_upload_streams_to_disk(live: Live):
    """200 MB through the imaging import: written as it arrives, the server's memory stays flat."""
    answer = post_form(live, f"/dossiers/{live.dossier_id}/dicom/import", BIG, filename="export.bin", signed_in=True,
                       csrf_header=True)
    assert answer.status == 200, answer.body[:500]
    assert "export.bin" in answer.body.decode()  # not DICOM: listed as skipped in the review
    assert answer.peak_growth < 4 * FEW_MB, f"the server grew by {answer.peak_growth / MB:.1f} MB"


def test_legitimate_uploads_still_work(live: Live, tmp_path: Path):
    s = requests.Session()
    s.cookies.update(live.cookies)
    h = {"HX-Request": "true", "X-CSRFToken": live.token}
    pdf = b"%PDF-1.4\n" + b"0" * 5000
    page = s.get(f"{live.base}/dossiers/{live.dossier_id}/edit/documents", timeout=30).text  # the version the form shows
    r = s.post(f"{live.base}/dossiers/{live.dossier_id}/documents", headers=h, files={"file": ("compte-rendu.pdf", pdf, "application/pdf")},
               data={"description": "CR", "expected_version": documents_version(page)}, timeout=30)
    assert r.status_code == 200, r.text[:500]
    assert "compte-rendu.pdf" in r.text
    study = write_study(tmp_path / "ct", series=1, per_series=2)
    archive = tmp_path / "cd.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i, f in enumerate(study["files"]):
            z.write(f, f"DICOM/IM{i}")
    with archive.open("rb") as f:
        r = s.post(f"{live.base}/dossiers/{live.dossier_id}/dicom/import", headers=h,
                   files=[("files", ("cd.zip", f, "application/zip"))], timeout=60)
    assert r.status_code == 200, r.text[:500]
    assert re.search(r"/dicom/import/[0-9a-f]{32}", r.text) and "2" in r.text


def test_a_wrong_csrf_header_is_refused_before_the_body(live: Live):
    forged = Live(**{**live.__dict__, "token": "0" * 128})
    answer = post_form(forged, f"/dossiers/{live.dossier_id}/dicom/import", BIG, signed_in=True, csrf_header=True)
    assert answer.status == 403 and answer.sent < BIG // 4


@pytest.mark.parametrize(("path", "status"), [("/nulle-part", 404), ("/static/relais.css", 405), ("/health", 405)])
def test_a_body_sent_to_no_route_is_not_read_either(live: Live, path: str, status: int):
    """The router answers 404/405 without reading the body; the connection is then closed, not kept alive
    while the server reads and discards the rest."""
    answer = post_form(live, path, BIG)
    assert answer.status == status and answer.sent < BIG // 4
    assert answer.headers.get("connection") == "close"
