"""C-STORE speed of our DICOM node (events recorded) against dcmtk storescp and Orthanc.

A CT study of N instances (512×512, 16-bit, ≈0.5 MB each; generated once and cached under
/tmp/relais-bench) is sent by dcmtk `storescu` over one association, then split over several
associations in parallel, to:

- our node: `relais scp` (the real command), a throw-away database `relais_bench_<pid>` and data
  folder; the time runs until every instance is recorded as an event (not just acknowledged);
- dcmtk `storescp` writing files;
- Orthanc (Debian package) with its default MD5 of attachments.

TCP_NODELAY=1 is set for every dcmtk/Orthanc process (see field notes). Prints figures, asserts
nothing about time; exits non-zero if an instance is missing somewhere.

    .venv/bin/python bench/dicom_store.py                        # 1,000 instances, 1 and 4 associations
    .venv/bin/python bench/dicom_store.py --instances 200 --parallel 2

With `--large-mb N`, instead: one multi-frame instance of about N MB (16-bit 512×512 frames) sent by
storescu to our node, and the serving worker's peak resident memory above its idle level (the
kernel's high-water mark, reset before sending): a data set above 16 MiB is written to disk as it
arrives, so the peak stays far below the instance's size.

    .venv/bin/python bench/dicom_store.py --large-mb 600
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from adapters.settings import Settings  # noqa: E402
from domain.imaging import received_study_id  # noqa: E402
from entrypoints.bootstrap import build_app, upgrade  # noqa: E402
from entrypoints.settings import settings_from_environ
from projections.runner import catch_up  # noqa: E402
from tests.peers import PEER_ENV, Orthanc, StoreSCP, free_port, wait_port  # noqa: E402

DEFAULT_SERVER = os.environ.get("RELAIS_TEST_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CACHE = Path(tempfile.gettempdir()) / "relais-bench"
RELAIS = str(Path(sys.executable).with_name("relais"))


def ct_study(n: int) -> tuple[Path, str]:
    """N CT instances 512×512 16-bit in one series, cached; returns (folder, study uid)."""
    folder = CACHE / f"ct{n}"
    marker = CACHE / f"ct{n}.study-uid"
    if marker.exists() and len(list(folder.glob("*.dcm"))) == n:
        return folder, marker.read_text().strip()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    base = dcmread(get_testdata_file("CT_small.dcm"))
    study, series = generate_uid(), generate_uid()
    rng = np.random.default_rng(42)
    yy, xx = np.mgrid[0:512, 0:512]
    phantom = (((yy - 256) ** 2 + (xx - 256) ** 2) < 200**2).astype(np.uint16) * 1000 + 24
    for i in range(n):
        ds = base.copy()
        ds.file_meta = base.file_meta.copy()
        sop = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.AccessionNumber, ds.PatientID, ds.PatientName = "BENCH1000", "BENCH", "BENCH^CT"
        ds.SeriesNumber, ds.InstanceNumber = 1, i + 1
        ds.Rows = ds.Columns = 512
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        pixels = phantom + rng.integers(0, 50, size=(512, 512), dtype=np.uint16)
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"ct{i:05d}.dcm", enforce_file_format=True)
    marker.write_text(study)
    return folder, study


def large_instance(megabytes: int) -> tuple[Path, str]:
    """One multi-frame instance of `megabytes` MB (16-bit 512×512 frames), cached; (path, study uid)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    path = CACHE / f"large{megabytes}.dcm"
    marker = CACHE / f"large{megabytes}.study-uid"
    if path.exists() and marker.exists():
        return path, marker.read_text().strip()
    CACHE.mkdir(parents=True, exist_ok=True)
    frames = max(1, megabytes * 1_000_000 // (512 * 512 * 2))
    sop_class, sop, study = "1.2.840.10008.5.1.4.1.1.7.3", generate_uid(), generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = sop_class, sop, study, generate_uid()
    ds.PatientID, ds.PatientName, ds.AccessionNumber, ds.Modality = "BENCH", "BENCH^LARGE", "BENCHLARGE", "OT"
    ds.SeriesNumber, ds.InstanceNumber, ds.NumberOfFrames, ds.Rows, ds.Columns = 1, 1, frames, 512, 512
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    frame = np.random.default_rng(42).integers(0, 4096, size=(512, 512), dtype=np.uint16).tobytes()
    ds.PixelData = frame * frames
    ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)
    marker.write_text(study)
    return path, study


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def large(megabytes: int, workers: int) -> int:
    """Sends one large instance to our node; prints the serving worker's peak memory above idle."""
    import psutil

    t = time.perf_counter()
    path, study_uid = large_instance(megabytes)
    size = path.stat().st_size / 1e6
    print(f"# dicom_store --large-mb: one {size:.0f} MB multi-frame instance, prepared in {time.perf_counter() - t:.1f} s")
    print(f"# {platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, {workers} worker process(es)")
    with tempfile.TemporaryDirectory(prefix="relais-bench-", dir=CACHE) as tmp, OurNode(Path(tmp), workers=workers) as node:
        serving = psutil.Process(node.proc.pid).children() or [psutil.Process(node.proc.pid)]
        idle = {}
        for p in serving:
            Path(f"/proc/{p.pid}/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
            idle[p.pid] = _kib(p.pid, "VmRSS")
        t0 = time.perf_counter()
        send([[path]], "RELAIS", node.port)
        acked = time.perf_counter() - t0
        node.wait_recorded(study_uid, 1, timeout=600)
        peaks = {p.pid: _kib(p.pid, "VmHWM") for p in serving}
        stored = next((Path(tmp) / "var" / "dicom").rglob("*.dcm"))
        identical = _data_set_digest(stored) == _data_set_digest(path)
    growth = max(peaks[pid] - idle[pid] for pid in peaks) / 1024
    worst = max(peaks, key=lambda pid: peaks[pid] - idle[pid])
    print(f"  acknowledged in {acked:.1f} s; stored data set byte-identical to the sent one: {identical}")
    print(f"  serving worker: idle {idle[worst] / 1024:.0f} MB, peak {peaks[worst] / 1024:.0f} MB, "
          f"peak above idle {growth:.0f} MB ({growth / size * 100:.0f}% of the instance)")
    return 0 if identical else 1


def _data_set_digest(path: Path) -> str:
    """SHA-256 of a Part 10 file's data set (after its file meta, whose group length is at 140)."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fp:
        head = fp.read(144)
        fp.seek(144 + int.from_bytes(head[140:144], "little"))
        while chunk := fp.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def split(folder: Path, parts: int) -> list[list[Path]]:
    files = sorted(folder.glob("*.dcm"))
    return [files[i::parts] for i in range(parts)]


def storescu(aet: str, called: str, port: int, files: list[Path]) -> subprocess.Popen:
    return subprocess.Popen(
        ["storescu", "-aet", aet, "-aec", called, "-to", "60", "127.0.0.1", str(port), *map(str, files)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=PEER_ENV,
    )


def send(groups: list[list[Path]], called: str, port: int, aet: str = "BENCH_GW") -> float:
    t0 = time.perf_counter()
    procs = [storescu(aet, called, port, g) for g in groups]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode()[-500:]}")
    return time.perf_counter() - t0


class OurNode:
    """`relais scp` on a fresh database and data folder."""

    def __init__(self, work: Path, extra_nodes: list[tuple[str, int, str]] | None = None, workers: int | None = None):
        self.work = work
        self.workers = workers
        self.extra_nodes = extra_nodes or []  # (AE title, port on 127.0.0.1, kind) of Toulouse
        self.db = f"relais_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.url = DEFAULT_SERVER.rsplit("/", 1)[0] + "/" + self.db
        self.port = free_port()

    def __enter__(self) -> OurNode:
        with psycopg.connect(DEFAULT_SERVER, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{self.db}"')
        settings = Settings(database_url=self.url, data_dir=self.work / "var")
        upgrade(settings)
        self.app = build_app(settings)
        est = self.app.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
        self.app.add_node(aet="BENCH_GW", host="127.0.0.1", port=104, establishment_id=est, kind="gateway")
        self.establishment = est
        for aet, port, kind in self.extra_nodes:
            self.app.add_node(aet=aet, host="127.0.0.1", port=port, establishment_id=est, kind=kind)
        self.settings = settings
        catch_up("directory", settings.eventsourcing_env(), self.app)
        env = dict(os.environ, RELAIS_DATABASE_URL=self.url, RELAIS_DATA_DIR=str(self.work / "var"),
                   RELAIS_DICOM_PORT=str(self.port), RELAIS_DICOM_AET="RELAIS", RELAIS_LOG_LEVEL="INFO")
        if self.workers:
            env["RELAIS_DICOM_WORKERS"] = str(self.workers)
        self.work.mkdir(parents=True, exist_ok=True)
        self.log = (self.work / "scp.log").open("wb")
        self.proc = subprocess.Popen([RELAIS, "scp"], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, 60, self.proc)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every worker process serves (the node accepts before that; senders would wait and
        the start-up would be counted in the figures)."""
        count = int(self.workers or settings_from_environ({}).dicom_workers)
        if count <= 1:
            return
        deadline = time.monotonic() + timeout
        while (self.work / "scp.log").read_text(errors="replace").count(" prêt") < count:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise TimeoutError("DICOM node workers not ready")
            time.sleep(0.05)

    def recorded(self, study_uid: str) -> int:
        sid = received_study_id(self.establishment, study_uid)
        return self.app.repository.get(sid).instance_count if sid in self.app.repository else 0

    def wait_recorded(self, study_uid: str, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.recorded(study_uid) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.recorded(study_uid)}/{n} recorded")
            time.sleep(0.02)

    def events(self, study_uid: str) -> int:
        return len(list(self.app.events.get(received_study_id(self.establishment, study_uid))))

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.app.close()
        with psycopg.connect(DEFAULT_SERVER, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')


def ours(groups: list[list[Path]], study_uid: str, n: int, workers: int | None) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory(prefix="relais-bench-") as tmp, OurNode(Path(tmp), workers=workers) as node:
        t0 = time.perf_counter()
        acked = send(groups, "RELAIS", node.port)
        node.wait_recorded(study_uid, n)
        return acked, time.perf_counter() - t0, node.events(study_uid)


def dcmtk(groups: list[list[Path]], n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="relais-bench-") as tmp, StoreSCP(Path(tmp) / "out") as scp:
        seconds = send(groups, scp.aet, scp.port)
        got = len(list((Path(tmp) / "out").glob("*")))
        if got != n:
            raise RuntimeError(f"storescp wrote {got}/{n}")
        return seconds


def orthanc(groups: list[list[Path]], n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="relais-bench-") as tmp, Orthanc(Path(tmp) / "orthanc") as o:
        seconds = send(groups, o.aet, o.dicom_port)
        if o.instance_count() != n:
            raise RuntimeError(f"Orthanc holds {o.instance_count()}/{n}")
        return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=4, help="associations in parallel for the second run")
    parser.add_argument("--workers", type=int, default=None,
                        help="RELAIS_DICOM_WORKERS for our node (default: the node's own default)")
    parser.add_argument("--large-mb", type=int, default=0,
                        help="instead: one instance of this many MB, and the worker's peak memory above idle")
    args = parser.parse_args(argv)
    workers = args.workers or settings_from_environ({}).dicom_workers
    if args.large_mb:
        return large(args.large_mb, workers)
    n = args.instances
    t = time.perf_counter()
    folder, study_uid = ct_study(n)
    size = sum(p.stat().st_size for p in folder.glob("*.dcm")) / n / 1e6
    print(f"# dicom_store: {n} CT instances 512x512 16-bit ({size:.2f} MB each), prepared in {time.perf_counter() - t:.1f} s")
    print(f"# {platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, storescu/storescp/Orthanc with TCP_NODELAY=1")
    for parts in (1, args.parallel):
        groups = split(folder, parts)
        acked, recorded, events = ours(groups, study_uid, n, workers)
        d = dcmtk(groups, n)
        o = orthanc(groups, n)
        rate = lambda s: n / s  # noqa: E731
        print(f"\n{parts} association(s):")
        print(f"  our node ({workers} worker process(es))")
        print(f"  our node, all acknowledged     {acked:6.2f} s  {rate(acked):7.0f} images/s")
        print(f"  our node, all recorded         {recorded:6.2f} s  {rate(recorded):7.0f} images/s  ({events} events on the study)")
        print(f"  dcmtk storescp                 {d:6.2f} s  {rate(d):7.0f} images/s")
        print(f"  Orthanc 1.10 (MD5 on)          {o:6.2f} s  {rate(o):7.0f} images/s")
        print(f"  ours (recorded) / Orthanc = {o / recorded:.2f}   ours / storescp = {d / recorded:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
