"""Retrieve from a PACS (Orthanc) into a dossier, against dcmtk; thumbnail time per series.

- C-MOVE of a 250-instance CT study (512×512, 16-bit) from Orthanc to our node (`relais scp`),
  driven by our Retriever as the job runs it (C-FINDs, the C-MOVE over `--parallel` associations,
  default the Retriever's): until the completeness check passes, the events are recorded and the
  study is attached to the dossier; against dcmtk `movescu` → `storescp`.
- C-GET of the same study by our Retriever (stored and recorded in this process) against dcmtk `getscu`.
- Thumbnail per series (middle image, 128 px) and one full-size PNG, cold cache.

    .venv/bin/python bench/dicom_retrieve.py                 # 250 instances
    .venv/bin/python bench/dicom_retrieve.py --instances 50
    .venv/bin/python bench/dicom_retrieve.py --parallel 1   # C-MOVE on one association
    .venv/bin/python bench/dicom_retrieve.py --interrupt 3  # the PACS killed mid-transfer, 3 times per method

`--interrupt N`: instead, N times per method (C-MOVE over the Retriever's parallel associations,
C-GET), a fresh Orthanc and node; Orthanc is killed (SIGKILL, its own PID) once a fifth of the study
is stored on our side; prints the seconds from the kill to the retrieve's outcome and its reason
(the DIMSE timeout is the product's, 30 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dicom_store import OurNode, ct_study  # noqa: E402

from adapters.dicom.render import render, thumbnail  # noqa: E402
from adapters.dicom.retrieve import Retriever  # noqa: E402
from adapters.dicom.storage import InstanceStore  # noqa: E402
from tests.peers import PEER_ENV, Orthanc, StoreSCP  # noqa: E402

PATIENT = dict(patient_birth_name="Bench", patient_first_names="Ct", patient_birth_date="1950-01-01",
               patient_sex="F", patient_birth_place_code="31555")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=250)
    parser.add_argument("--parallel", type=int, default=None, help="C-MOVE associations (default: the Retriever's)")
    parser.add_argument("--interrupt", type=int, default=0, metavar="N", help="the PACS killed mid-transfer, N times per method")
    args = parser.parse_args(argv)
    n = args.instances
    folder, study_uid = ct_study(n)
    if args.interrupt:
        return interrupted(folder, study_uid, n, args.interrupt, args.parallel)
    print(f"# dicom_retrieve: {n} CT instances 512x512 16-bit; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="relais-bench-") as tmp:
        tmp = Path(tmp)
        scp = StoreSCP(tmp / "storescp")
        node = OurNode(tmp / "ours")
        orthanc = Orthanc(tmp / "orthanc", modalities={"RELAIS": ("127.0.0.1", node.port), scp.aet: ("127.0.0.1", scp.port)},
                          md5=True)
        node.extra_nodes = [(orthanc.aet, orthanc.dicom_port, "pacs")]
        with orthanc, scp, node:
            r = subprocess.run(["storescu", "-aet", "LOADER", "-aec", orthanc.aet, "127.0.0.1", str(orthanc.dicom_port),
                                "+sd", str(folder)], env=PEER_ENV, capture_output=True)
            assert r.returncode == 0 and orthanc.instance_count() == n, r.stderr
            app = node.app
            est = node.establishment
            from tests.conftest import rpps

            clinician = app.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire",
                                             establishment_id=est, roles=["clinician"])
            did = app.create_dossier(actor_id=clinician, workflow="imaging_transfer", question="Bench", consent="given",
                                     imaging_source="pacs_retrieve", **PATIENT)
            extra = {} if args.parallel is None else {"parallel": args.parallel}
            retriever = Retriever(app=app, store=InstanceStore(node.settings.dicom_root), our_aet="RELAIS", settle=3.0,
                                  **extra)

            t0 = time.perf_counter()
            out = retriever.retrieve(dossier_id=did, study_uid=study_uid, node_aet=orthanc.aet)
            ours_move = time.perf_counter() - t0
            assert out.status == "completed", out

            t0 = time.perf_counter()
            r = subprocess.run(["movescu", "-aet", "MOVESCU", "-aec", orthanc.aet, "-aem", scp.aet, "-S",
                                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
                                "127.0.0.1", str(orthanc.dicom_port)], env=PEER_ENV, capture_output=True)
            dcmtk_move = time.perf_counter() - t0
            assert r.returncode == 0, r.stderr
            got = len(list((tmp / "storescp").iterdir()))
            assert got == n, got

            get_store = InstanceStore(tmp / "get-store")
            getter = Retriever(app=app, store=get_store, our_aet="RELAIS")
            # a fresh establishment's view of the study: C-GET stores and records under another study id
            est2 = app.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
            app.add_node(aet="ORTHANC2", host="127.0.0.1", port=orthanc.dicom_port, establishment_id=est2, kind="pacs")
            app.set_node_retrieve_method(aet="ORTHANC2", method="get")
            c2 = app.add_practitioner(rpps=rpps(2), family_name="Durand", given_name="Paul", establishment_id=est2,
                                      roles=["clinician"])
            did2 = app.create_dossier(actor_id=c2, workflow="imaging_transfer", question="Bench 2", consent="given",
                                      imaging_source="pacs_retrieve", **PATIENT)
            t0 = time.perf_counter()
            out2 = getter.retrieve(dossier_id=did2, study_uid=study_uid, node_aet="ORTHANC2")
            ours_get = time.perf_counter() - t0
            assert out2.status == "completed", out2

            getdir = tmp / "getscu"
            getdir.mkdir()
            t0 = time.perf_counter()
            r = subprocess.run(["getscu", "-aet", "GETSCU", "-aec", orthanc.aet, "-S", "-od", str(getdir),
                                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
                                "127.0.0.1", str(orthanc.dicom_port)], env=PEER_ENV, capture_output=True)
            dcmtk_get = time.perf_counter() - t0
            assert r.returncode == 0 and len(list(getdir.iterdir())) == n, r.stderr

            print(f"\nC-MOVE of {n} instances from Orthanc 1.10 ({retriever.parallel} association(s) at most):")
            ours, dcmtk = "ours (relais scp, events recorded, completeness checked, attached)", "dcmtk movescu -> storescp"
            print(f"  {ours:<68}{ours_move:6.2f} s  {n / ours_move:6.0f} images/s")
            print(f"  {dcmtk:<68}{dcmtk_move:6.2f} s  {n / dcmtk_move:6.0f} images/s")
            print(f"  ratio ours / dcmtk = {dcmtk_move / ours_move:.2f}")
            print(f"C-GET of {n} instances from Orthanc 1.10:")
            print(f"  ours (Retriever, stored + recorded, attached)                      {ours_get:6.2f} s  {n / ours_get:6.0f} images/s")
            print(f"  dcmtk getscu                                                       {dcmtk_get:6.2f} s  {n / dcmtk_get:6.0f} images/s")
            print(f"  ratio ours / dcmtk = {dcmtk_get / ours_get:.2f}")

            files = sorted(get_store.instances(est2, study_uid))
            middle = files[len(files) // 2]
            t0 = time.perf_counter()
            thumbnail(middle, tmp / "thumbs" / "s1.png")
            thumb = time.perf_counter() - t0
            t0 = time.perf_counter()
            for f in files[:20]:
                render(f, preset="brain")
            full = (time.perf_counter() - t0) / 20
            print("Previews (CT 512x512 16-bit):")
            print(f"  thumbnail of a series (middle image, 128 px, cold)  {thumb * 1000:6.1f} ms")
            print(f"  full-size PNG with the brain preset                 {full * 1000:6.1f} ms per image")
    print(f"# load {os.getloadavg()[0]:.2f} at the end")
    return 0


def interrupted(folder: Path, study_uid: str, n: int, repeat: int, parallel: int | None) -> int:
    from tests.conftest import rpps

    print(f"# dicom_retrieve --interrupt: {n} CT instances, Orthanc killed once {n // 5} are stored on our side; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    for method in ("move", "get"):
        for trial in range(repeat):
            with tempfile.TemporaryDirectory(prefix="relais-bench-") as tmp:
                node = OurNode(Path(tmp) / "ours")
                orthanc = Orthanc(Path(tmp) / "orthanc", modalities={"RELAIS": ("127.0.0.1", node.port)})
                node.extra_nodes = [(orthanc.aet, orthanc.dicom_port, "pacs")]
                with orthanc, node:
                    r = subprocess.run(["storescu", "-aet", "LOADER", "-aec", orthanc.aet, "127.0.0.1",
                                        str(orthanc.dicom_port), "+sd", str(folder)], env=PEER_ENV, capture_output=True)
                    assert r.returncode == 0 and orthanc.instance_count() == n, r.stderr
                    app, est = node.app, node.establishment
                    app.set_node_retrieve_method(aet=orthanc.aet, method=method)
                    clinician = app.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire",
                                                     establishment_id=est, roles=["clinician"])
                    did = app.create_dossier(actor_id=clinician, workflow="imaging_transfer", question="Bench",
                                             consent="given", imaging_source="pacs_retrieve", **PATIENT)
                    store = InstanceStore(node.settings.dicom_root if method == "move" else Path(tmp) / "get-store")
                    extra = {} if parallel is None else {"parallel": parallel}
                    retriever = Retriever(app=app, store=store, our_aet="RELAIS", **extra)
                    killed: list[float] = []
                    done = threading.Event()

                    def kill_when_a_fifth_is_stored() -> None:
                        while not done.is_set():
                            if len(list(store.instances(est, study_uid))) >= n // 5 and orthanc.proc is not None:
                                os.kill(orthanc.proc.pid, signal.SIGKILL)
                                killed.append(time.monotonic())
                                return
                            time.sleep(0.005)

                    watcher = threading.Thread(target=kill_when_a_fifth_is_stored, daemon=True)
                    watcher.start()
                    out = retriever.retrieve(dossier_id=did, study_uid=study_uid, node_aet=orthanc.aet)
                    ended = time.monotonic()
                    done.set()
                    watcher.join()
                    if not killed:
                        print(f"  C-{method.upper()} run {trial + 1}: finished before the kill ({out.status})")
                        continue
                    print(f"  C-{method.upper()} run {trial + 1}: outcome {ended - killed[0]:6.2f} s after the kill, "
                          f"{out.received}/{out.expected} recorded, {out.status}: {out.reason}")
    print(f"# load {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
