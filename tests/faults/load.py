"""A bounded, steady load on a running platform: dossier commands over HTTP as a signed-in clinician,
and C-STORE associations with dcmtk's storescu as a known gateway. Every success answer is recorded
(what the client may rely on), with the time it came, so that the checks and the recovery times
can be read from it afterwards."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydicom import dcmread

from adapters.demo import DEMO_PASSWORD, USERS
from tests.dicomdata import write_study

REQUESTER = USERS[0]  # Claire MARTIN, CH Rodez (the gateway RODEZ_GW's establishment)
RECIPIENT = USERS[1]  # Paul DURAND, CHU Toulouse, neuroradiology
GATEWAY = "RODEZ_GW"
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
VERSION = re.compile(r'name="expected_version" value="(\d+)"')
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]*)"')
HX = {"HX-Request": "true"}
PATIENT = {"birth_name": "Faute", "first_names": "Jeanne", "birth_date": "1961-04-12", "sex": "F", "birth_place_code": "31555"}


class Refused(Exception):
    """The platform did not answer a success (status, or a connection error while a fault lasts)."""


@dataclass
class Acks:
    """What got a success answer, and when (time.monotonic())."""

    created: dict[str, str] = field(default_factory=dict)  # token → dossier id
    addressed: set[str] = field(default_factory=set)  # dossier ids
    sent: set[str] = field(default_factory=set)  # dossier ids
    stored: dict[str, Path] = field(default_factory=dict)  # SOP instance UID → the file sent
    tokens: list[str] = field(default_factory=list)  # every token a creation was tried with
    times: list[tuple[float, str]] = field(default_factory=list)  # (when, "web" | "dicom")
    failures: list[tuple[float, str]] = field(default_factory=list)

    def first_after(self, kind: str, moment: float) -> float | None:
        return next((t for t, k in self.times if k == kind and t >= moment), None)


class Clinician:
    """An HTTP client signed in as a demo clinician (signs in again when its session is gone)."""

    def __init__(self, base: str, rpps: str):
        self.base = base
        self.rpps = rpps
        self.client = httpx.Client(base_url=base, timeout=15, follow_redirects=False)

    def login(self) -> None:
        page = self.client.get("/login")
        token = CSRF.search(page.text)
        if page.status_code != 200 or token is None:
            raise Refused(f"login page {page.status_code}")
        r = self.client.post("/login", data={"login": self.rpps, "password": DEMO_PASSWORD, "_csrf_token": token.group(1)})
        if r.status_code != 303:
            raise Refused(f"login {r.status_code}")

    def page(self, path: str) -> str:
        r = self.client.get(path)
        if r.status_code in (302, 303) and "/login" in r.headers.get("location", ""):
            self.login()
            r = self.client.get(path)
        if r.status_code != 200:
            raise Refused(f"GET {path}: {r.status_code}")
        return r.text

    def form(self, path: str) -> dict[str, str]:
        """The hidden fields of a page's (first) form, as a browser would send them: the CSRF token,
        and the expected version and the form's submission token when the page has them."""
        html = self.page(path)
        token = CSRF.search(html)
        if token is None:
            raise Refused(f"no form in {path}")
        fields = {"_csrf_token": token.group(1)}
        for name, pattern in (("expected_version", VERSION), ("form_token", FORM_TOKEN)):
            found = pattern.search(html)
            if found:
                fields[name] = found.group(1)
        return fields

    def post(self, path: str, data: dict[str, str], expect: int, headers: dict[str, str] | None = None) -> httpx.Response:
        r = self.client.post(path, data=data, headers=headers or {})
        if r.status_code != expect:
            raise Refused(f"POST {path}: {r.status_code} {r.text[:200]!r}")
        return r

    def close(self) -> None:
        self.client.close()


class Load:
    """Runs the web and DICOM loads in two threads until `stop()` or their bounds."""

    def __init__(self, platform, directory: dict[str, str], folder: Path, label: str,  # type: ignore[no-untyped-def]
                 max_flows: int = 40, max_stores: int = 40, pause: float = 0.25):
        self.platform = platform
        self.directory = directory
        self.folder = folder
        self.label = label
        self.max_flows = max_flows
        self.max_stores = max_stores
        self.pause = pause
        self.acks = Acks()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.flows_done = 0
        self.stores_done = 0
        study = write_study(folder / "dicom", accession=f"F{uuid.uuid4().hex[:8]}", series=1, per_series=max_stores,
                            patient_name="FAUTE^JEANNE")
        self.study_uid = study["study_uid"]
        self.files = list(zip(study["sops"], study["files"], strict=True))
        self.threads = [threading.Thread(target=self._web, daemon=True, name=f"load-web-{label}"),
                        threading.Thread(target=self._dicom, daemon=True, name=f"load-dicom-{label}")]

    # -------------------------------------------------------------------------------- web

    def create(self, clinician: Clinician, token: str) -> str:
        """A draft dossier whose question is `token` (recorded when acknowledged)."""
        hidden = clinician.form("/dossiers/new")
        self.acks.tokens.append(token)
        r = clinician.post("/dossiers/new", {**hidden, "workflow": "stroke_opinion", "urgency": "stat", **PATIENT,
                                             "question": token, "consent": "given"}, 303)
        did = r.headers["location"].split("/")[2]
        self._ack("web", created=(token, did))
        return did

    def flow(self, clinician: Clinician, token: str) -> str:
        """One dossier through the wizard, each success recorded: create, no imaging, recipient, send."""
        did = self.create(clinician, token)
        hidden = clinician.form(f"/dossiers/{did}/edit/imaging")
        clinician.post(f"/dossiers/{did}/edit/imaging", {**hidden, "imaging_source": "none"}, 303)
        hidden = clinician.form(f"/dossiers/{did}/edit/recipients")
        clinician.post(f"/dossiers/{did}/recipients", {**hidden, "establishment_id": self.directory["toulouse"],
                                                       "service_id": self.directory["neuroradio"]}, 200, HX)
        self._ack("web", addressed=did)
        hidden = clinician.form(f"/dossiers/{did}/edit/review")
        clinician.post(f"/dossiers/{did}/edit/review", hidden, 303)
        self._ack("web", sent=did)
        return did

    def _web(self) -> None:
        clinician = Clinician(self.platform.base, REQUESTER.rpps)
        try:
            attempts = 0  # bounded: at most max_flows dossiers, and four times as many tries
            while not self._stop.is_set() and self.flows_done < self.max_flows and attempts < 4 * self.max_flows:
                attempts += 1
                token = f"faute-{self.label}-{attempts}-{uuid.uuid4().hex[:8]}"
                try:
                    self.flow(clinician, token)
                    self.flows_done += 1
                except (Refused, httpx.HTTPError) as e:
                    self._fail("web", f"{token}: {e!r}")
                    self._stop.wait(0.25)
                self._stop.wait(self.pause)
        finally:
            clinician.close()

    # -------------------------------------------------------------------------------- DICOM

    def _dicom(self) -> None:
        """One association per instance; one refused is sent again, as a gateway does (bounded: four
        times as many tries as instances)."""
        env = dict(os.environ, TCP_NODELAY="1")
        pending = list(self.files)
        attempts = 0
        while pending and not self._stop.is_set() and attempts < 4 * len(self.files):
            self._stop.wait(self.pause if attempts else 0)
            attempts += 1
            sop, path = pending[0]
            try:
                done = subprocess.run(
                    ["storescu", "-v", "-aet", GATEWAY, "-aec", "RELAIS", "-to", "10", "-ta", "10", "-td", "20",
                     "127.0.0.1", str(self.platform.dicom_port), str(path)],
                    capture_output=True, text=True, timeout=60, env=env,
                )
                out = done.stdout + done.stderr
            except subprocess.TimeoutExpired as e:
                out = f"timeout {e}"
            if "Received Store Response (Success)" in out:
                self._ack("dicom", stored=(sop, path))
                pending.pop(0)
                self.stores_done += 1
            else:
                self._fail("dicom", f"{sop}: {out[-300:]!r}")
                self._stop.wait(0.25)

    # -------------------------------------------------------------------------------- bookkeeping

    def _ack(self, kind: str, *, created: tuple[str, str] | None = None, addressed: str | None = None,
             sent: str | None = None, stored: tuple[str, Path] | None = None) -> None:
        with self._lock:
            if created:
                self.acks.created[created[0]] = created[1]
            if addressed:
                self.acks.addressed.add(addressed)
            if sent:
                self.acks.sent.add(sent)
            if stored:
                self.acks.stored[stored[0]] = stored[1]
            self.acks.times.append((time.monotonic(), kind))

    def _fail(self, kind: str, what: str) -> None:
        with self._lock:
            self.acks.failures.append((time.monotonic(), f"{kind} {what}"))

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def wait_acks(self, kind: str, count: int, after: float, timeout: float) -> float:
        """Waits until `count` successes of `kind` came after `after`; returns when the first did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                times = [t for t, k in self.acks.times if k == kind and t >= after]
            if len(times) >= count:
                return times[0]
            if not any(t.is_alive() for t in self.threads):
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.label}: {count} {kind} successes after the fault not seen in {timeout:.0f} s; "
                             f"failures: {self.acks.failures[-5:]}")

    def stop(self, timeout: float = 90) -> Acks:
        self._stop.set()
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), f"load thread {t.name} still running"
        return self.acks


def pixel_digest(path: Path) -> tuple[str, str]:
    """(SOP Instance UID, SHA-256 of the pixel data) of a DICOM file, read whole by pydicom."""
    ds = dcmread(path)
    return str(ds.SOPInstanceUID), hashlib.sha256(ds.PixelData).hexdigest()
