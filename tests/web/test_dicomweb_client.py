"""DICOMweb under /dicomweb/dossiers/<id>/ through an independent client: `dicomweb-client` (PyPI)
against a live `relais serve`, signed in over HTTP as a real user (login form, session cookie).
One module because one live server (module fixture) serves every test: starting it costs seconds."""

from __future__ import annotations

import io
import sys
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
import requests
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.encaps import get_frame
from pydicom.pixels import pack_bits, pixel_array

from adapters.credentials import Credentials
from adapters.dicom.receive import describe
from adapters.dicom.recording import recorder
from adapters.dicom.storage import InstanceStore
from adapters.settings import Settings
from domain.imaging import received_study_id
from entrypoints.bootstrap import build_app, build_pool, upgrade
from projections.runner import catch_up
from tests.conftest import PATIENT, SERVER_URL, rpps
from tests.dicomdata import write_bundled, write_multiframe, write_study
from tests.live import start_serve
from tests.peers import stop

dicomweb_client = pytest.importorskip("dicomweb_client.api")

RELAIS = str(Path(sys.executable).with_name("relais"))
PASSWORD = "dicomweb password 2026"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
J2K, JPEG_BASELINE, JPEG_LS, RLE = "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.5"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _store(relais, settings, establishment: str, study_uid: str, files: list[Path]) -> str:
    store = InstanceStore(settings.dicom_root)
    items = []
    for f in files:
        ds = dcmread(f)
        store.put(establishment, study_uid, ds.SOPInstanceUID, f.read_bytes())
        items.append(describe(ds, transfer_syntax=str(ds.file_meta.TransferSyntaxUID), size=f.stat().st_size))
    (update,) = recorder(relais)(establishment, items, {"kind": "dicom_store"})
    return update.study_id


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Its own database and data folder; a sent dossier with two studies attached: A, one instance of
    every bundled transfer syntax; B, a CT of 2 series × 3 instances (StudyDate 20240315) plus a
    bit-packed multi-frame and an RLE multi-frame; then `relais serve` on a free port."""
    tmp = tmp_path_factory.mktemp("dicomweb")
    name = f"relais_dw_{uuid.uuid4().hex[:8]}"
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
        mtp = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
        nimes = relais.add_establishment(finess="300780038", name="CHU de Nîmes", department="30")
        neuro = relais.add_service(establishment_id=mtp, code="neuroradio", name="Neuroradiologie")
        users = {
            "requester": relais.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire",
                                                 establishment_id=tlse, roles=["clinician"]),
            "recipient": relais.add_practitioner(rpps=rpps(2), family_name="Durand", given_name="Paul",
                                                 establishment_id=mtp, roles=["clinician"], service_ids=[neuro]),
            "outsider": relais.add_practitioner(rpps=rpps(3), family_name="Petit", given_name="Luc",
                                                establishment_id=mtp, roles=["clinician"]),
            "stranger": relais.add_practitioner(rpps=rpps(5), family_name="Roux", given_name="Marc",
                                                establishment_id=nimes, roles=["clinician"]),
        }
        credentials = Credentials(pool)
        for pid in users.values():
            credentials.set_password(pid, PASSWORD)
        did = relais.create_dossier(actor_id=users["requester"], workflow="stroke_opinion", question="Thrombectomie ?",
                                    urgency="stat", consent="given", **PATIENT)
        relais.address_recipient(dossier_id=did, actor_id=users["requester"], establishment_id=mtp, service_id=neuro)
        relais.send_dossier(dossier_id=did, actor_id=users["requester"])

        mix = write_bundled(tmp / "mix")
        ct = write_study(tmp / "ct", series=2, per_series=3)
        for f in ct["files"]:  # a date of its own, for date matching
            ds = dcmread(f)
            ds.StudyDate = "20240315"
            ds.save_as(f, enforce_file_format=True)
        rng = np.random.default_rng(7)
        bits = rng.integers(0, 2, size=(4, 3, 5), dtype=np.uint8)  # 15 bits a frame: frames start inside bytes
        words = rng.integers(0, 4096, size=(3, 16, 12), dtype=np.uint16)
        write_multiframe(tmp / "ct" / "bits.dcm", study_uid=ct["study_uid"], series_number=3, bits=1, frames=bits)
        write_multiframe(tmp / "ct" / "rle.dcm", study_uid=ct["study_uid"], series_number=4, bits=16, frames=words, rle=True)
        ids = {
            "A": _store(relais, settings, tlse, mix["study_uid"], list(mix["files"].values())),
            "B": _store(relais, settings, tlse, ct["study_uid"], [*ct["files"], tmp / "ct" / "bits.dcm", tmp / "ct" / "rle.dcm"]),
        }
        for sid in ids.values():
            relais.attach_received_study(dossier_id=did, actor_id=users["requester"], study_id=sid, confirm_identity=True)
        catch_up("imaging", settings.eventsourcing_env(), relais)

        server, port = start_serve(url, settings.data_dir, tmp / "serve.log")
        yield {
            "base": f"http://127.0.0.1:{port}", "did": did, "relais": relais, "users": users, "tlse": tlse,
            "A": {"uid": mix["study_uid"], "files": mix["files"], "id": ids["A"]},
            "B": {"uid": ct["study_uid"], "files": ct["files"], "id": ids["B"], "bits": (tmp / "ct" / "bits.dcm", bits),
                  "rle": (tmp / "ct" / "rle.dcm", words)},
        }
    finally:
        stop(server)
        pool.close()
        relais.close()
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def signed_in(base: str, login: str) -> requests.Session:
    """A requests session signed in through the login form, as a browser would."""
    import re

    s = requests.Session()
    page = s.get(f"{base}/login", timeout=20)
    token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text).group(1)
    r = s.post(f"{base}/login", data={"login": login, "password": PASSWORD, "_csrf_token": token},
               allow_redirects=False, timeout=20)
    assert r.status_code in (302, 303), r.text[:300]
    return s


def client_for(live, login: str = rpps(2), dossier: str | None = None):
    session = signed_in(live["base"], login)
    return dicomweb_client.DICOMwebClient(url=f"{live['base']}/dicomweb/dossiers/{dossier or live['did']}", session=session)


def v(item: dict, tag: str):
    """The first value of `tag` in a DICOM JSON item (PN as its Alphabetic string)."""
    value = item[tag].get("Value", [None])[0]
    return value["Alphabetic"] if isinstance(value, dict) else value


def uids(items: list[dict], tag: str = "0020000D") -> list[str]:
    return [v(i, tag) for i in items]


def downloads(live) -> list[tuple[str, str]]:
    """(what, practitioner) of every Downloaded event of both studies."""
    out = []
    for key in ("A", "B"):
        for e in live["relais"].events.get(received_study_id(live["tlse"], live[key]["uid"])):
            if type(e).__name__ == "Downloaded":
                out.append((e.what, e.actor["practitioner_id"]))
    return out


def status_of(call) -> int:
    with pytest.raises(requests.HTTPError) as e:
        call()
    return e.value.response.status_code


# ---------------------------------------------------------------------- QIDO-RS


def test_search_for_studies_with_standard_matching(live):
    c = client_for(live)
    a, b = live["A"]["uid"], live["B"]["uid"]
    studies = c.search_for_studies()
    assert sorted(uids(studies)) == sorted([a, b])
    by_uid = {v(s, "0020000D"): s for s in studies}
    assert v(by_uid[b], "00100010") == "DUPONT^JEANNE" and v(by_uid[b], "00100020") == "PAT001"
    assert v(by_uid[b], "00080050") == "ACC0001" and v(by_uid[b], "00080020") == "20240315"
    assert by_uid[b]["00201206"]["Value"] == [4] and by_uid[b]["00201208"]["Value"] == [8]
    assert by_uid[a]["00201208"]["Value"] == [len(live["A"]["files"])]
    assert set(by_uid[a]["00080061"]["Value"]) == {"CT", "MR", "NM", "OT"}
    assert v(by_uid[b], "00081190").endswith(f"/dicomweb/dossiers/{live['did']}/studies/{b}")

    def only(**filters) -> list[str]:
        return uids(c.search_for_studies(search_filters=filters))

    assert only(PatientName="dup*") == [b]  # wildcards, case-insensitive
    assert only(PatientName="d?pont^jeanne") == [b]
    assert only(PatientName="DUPONT") == []  # no wildcard: the whole name
    assert only(PatientID="PATMIX") == [a] and only(PatientID="PAT*") == only(PatientID="*") == [a, b]
    assert only(AccessionNumber="ACC0001") == [b]
    assert only(StudyDate="20240315") == [b]
    assert only(StudyDate="20240101-20241231") == [b]
    assert only(StudyDate="-20100101") == [a]  # CT_small.dcm's 20040119
    assert only(StudyDate="20240316-") == []
    assert only(ModalitiesInStudy="NM") == [a] and sorted(only(ModalitiesInStudy="CT")) == sorted([a, b])
    assert only(StudyInstanceUID=f"{a},{b}") == [a, b] and only(**{"0020000D": b}) == [b]  # list, and tag form
    assert only(**{"00100010": "*JEANNE"}) == [b]
    assert uids(c.search_for_studies(search_filters={"StudyInstanceUID": [a, b]})) == [a, b]  # repeated key
    assert uids(c.search_for_studies(fuzzymatching=False, search_filters={"PatientName": "mixte*"})) == [a]


def test_search_for_studies_includefield_limit_offset(live):
    c = client_for(live)
    a, b = live["A"]["uid"], live["B"]["uid"]
    (study,) = c.search_for_studies(search_filters={"StudyInstanceUID": b}, fields=["StudyTime", "00100040", "InstitutionName"])
    ct = dcmread(live["B"]["files"][0])
    assert v(study, "00080030") == ct.StudyTime and v(study, "00100040") == "F"  # held by the platform
    assert v(study, "00080080") == ct.InstitutionName  # read from the study's header when asked for
    (every,) = c.search_for_studies(search_filters={"StudyInstanceUID": b}, fields=["all"])
    assert v(every, "00080080") == ct.InstitutionName and "00200010" in every and v(every, "00100020") == "PAT001"
    assert "00080080" not in c.search_for_studies(search_filters={"StudyInstanceUID": b})[0]
    assert uids(c.search_for_studies(limit=1)) == [a]
    assert uids(c.search_for_studies(limit=1, offset=1)) == [b]
    assert c.search_for_studies(offset=2) == []
    assert uids(c.search_for_studies(limit=1, get_remaining=True)) == [a, b]  # the client pages with offset


def test_search_for_series_and_instances(live):
    c = client_for(live)
    a, b = live["A"]["uid"], live["B"]["uid"]
    series = c.search_for_series(a)
    assert len(series) == len(live["A"]["files"]) and all(v(s, "0020000D") == a for s in series)
    j2k = dcmread(live["A"]["files"]["jpeg2000"])
    (nm,) = c.search_for_series(a, search_filters={"Modality": "NM"})
    assert v(nm, "0020000E") == j2k.SeriesInstanceUID and nm["00201209"]["Value"] == [1]
    ct_series = c.search_for_series(b)
    assert [v(s, "00200011") for s in ct_series] == [1, 2, 3, 4]  # by series number
    (second,) = c.search_for_series(b, search_filters={"SeriesNumber": 2})
    assert v(second, "0008103E") == "SERIE 2" and v(second, "00080060") == "CT"
    # at the dossier's root: every study's series, with the study's attributes
    root = c.search_for_series(search_filters={"PatientID": "PAT001", "Modality": "CT"})
    assert len(root) == 2 and all(v(s, "0020000D") == b and v(s, "00100020") == "PAT001" for s in root)

    first = v(ct_series[0], "0020000E")
    files = {dcmread(f).SOPInstanceUID: dcmread(f) for f in live["B"]["files"]}
    inst = c.search_for_instances(b, first)
    assert [v(i, "00200013") for i in inst] == [1, 2, 3]
    assert all(v(i, "00080016") == CT_IMAGE and v(i, "00083002") == EXPLICIT_LE for i in inst)
    assert {v(i, "00080018") for i in inst} == {s for s, ds in files.items() if ds.SeriesInstanceUID == first}
    (two,) = c.search_for_instances(b, first, search_filters={"InstanceNumber": 2})
    assert v(two, "00080018") == v(inst[1], "00080018")
    sop = v(inst[2], "00080018")
    (one,) = c.search_for_instances(b, first, search_filters={"SOPInstanceUID": sop}, fields=["Rows", "00280011", "SliceThickness"])
    assert v(one, "00280010") == 128 and v(one, "00280011") == 128 and v(one, "00180050") == float(files[sop].SliceThickness)
    assert c.search_for_instances(b, first, search_filters={"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4"}) == []
    (full,) = c.search_for_instances(b, first, search_filters={"InstanceNumber": 1}, fields=["all"])
    assert v(full, "00280100") == 16 and "7FE00010" not in full
    # study-level instances (with their series) and the dossier's root
    study_inst = c.search_for_instances(b)
    assert len(study_inst) == 8 and {v(i, "0020000E") for i in study_inst} == {v(s, "0020000E") for s in ct_series}
    assert uids(c.search_for_instances(search_filters={"AccessionNumber": "ACCMIX", "SOPClassUID": CT_IMAGE}), "00080018") == [
        dcmread(live["A"]["files"]["explicit"]).SOPInstanceUID]
    paged = c.search_for_instances(b, limit=3, get_remaining=True)
    assert uids(paged, "00080018") == uids(study_inst, "00080018")


def test_invalid_queries_are_400_with_the_reason(live):
    c = client_for(live)
    s = c._session
    dw = f"{live['base']}/dicomweb/dossiers/{live['did']}"
    b = live["B"]["uid"]
    for path, params, words in [
        ("/studies", {"StudyDate": "2024"}, "StudyDate"),
        ("/studies", {"StudyDate": "20241301"}, "20241301"),
        ("/studies", {"StudyDate": "20240102-20240101"}, "StudyDate"),
        ("/studies", {"limit": "-1"}, "limit"),
        ("/studies", {"limit": "abc"}, "limit"),
        ("/studies", {"offset": "x"}, "offset"),
        ("/studies", {"fuzzymatching": "maybe"}, "fuzzymatching"),
        ("/studies", {"includefield": "NotAnAttribute"}, "NotAnAttribute"),
        ("/studies", {"StudyInstanceUID": "abc"}, "UID"),
        ("/studies", {"SOPInstanceUID": "1.2.3"}, "SOPInstanceUID"),  # instance-level key in a study search
        ("/studies", {"InstitutionName": "CHU"}, "InstitutionName"),  # an attribute we do not match on
        ("/studies", {"PatientName": ["A*", "B*"]}, "PatientName"),
        (f"/studies/{b}/series", {"SeriesNumber": "two"}, "SeriesNumber"),
        (f"/studies/{b}/instances", {"InstanceNumber": "1.5"}, "InstanceNumber"),
        ("/studies", {"0040A730.0040A010": "x"}, "séquences"),
    ]:
        r = s.get(dw + path, params=params, timeout=20)
        assert r.status_code == 400, (path, params, r.status_code, r.text[:200])
        assert r.headers["content-type"].startswith("application/json") and words in r.json()["message"], r.text
    # through the client too
    assert status_of(lambda: c.search_for_studies(search_filters={"StudyDate": "yesterday"})) == 400
    assert status_of(lambda: c.search_for_series(b, search_filters={"Modality": "C T!"})) == 400
    assert s.get(dw + "/studies", params={"fuzzymatching": "true"}, timeout=20).headers["Warning"].startswith("299")
    assert s.get(dw + "/studies/not-a-uid/series", timeout=20).status_code == 400


# ---------------------------------------------------------------------- WADO-RS


def test_metadata_and_retrieve_as_stored_record_downloads(live):
    c = client_for(live)
    recipient = live["users"]["recipient"]
    a, b = live["A"]["uid"], live["B"]["uid"]
    meta = c.retrieve_study_metadata(a)
    originals = {dcmread(f).SOPInstanceUID: f for f in live["A"]["files"].values()}
    assert {v(m, "00080018") for m in meta} == set(originals)
    first = Dataset.from_json(meta[0])
    assert str(first.PatientName) == "MIXTE^PATIENT" and "PixelData" not in first or not first.get("PixelData")
    before = downloads(live)

    # one instance: a read, not a download
    j2k = dcmread(live["A"]["files"]["jpeg2000"])
    got = c.retrieve_instance(a, j2k.SeriesInstanceUID, j2k.SOPInstanceUID)
    assert got.SOPInstanceUID == j2k.SOPInstanceUID and got.file_meta.TransferSyntaxUID == J2K
    assert got.PixelData == j2k.PixelData
    assert downloads(live) == before

    # a series: as stored, byte for byte, and recorded
    ct_series = dcmread(live["B"]["files"][0]).SeriesInstanceUID
    series = c.retrieve_series(b, ct_series)
    stored = {dcmread(f).SOPInstanceUID: dcmread(f) for f in live["B"]["files"] if dcmread(f).SeriesInstanceUID == ct_series}
    assert {d.SOPInstanceUID for d in series} == set(stored) and len(series) == 3
    assert all(d.PixelData == stored[d.SOPInstanceUID].PixelData for d in series)
    assert downloads(live) == before + [(f"dicomweb:series:{ct_series}", recipient)]

    # the whole study: every transfer syntax as stored, and recorded
    study = c.retrieve_study(a)
    assert {d.SOPInstanceUID: str(d.file_meta.TransferSyntaxUID) for d in study} == {
        sop: str(dcmread(f).file_meta.TransferSyntaxUID) for sop, f in originals.items()}
    assert sorted(downloads(live)) == sorted(before + [(f"dicomweb:series:{ct_series}", recipient), ("dicomweb:study", recipient)])

    # Explicit VR Little Endian asked for: a compressed instance comes decoded, same SOP Instance UID
    jpeg = dcmread(live["A"]["files"]["jpeg_baseline_rgb"])
    plain = c.retrieve_instance(a, jpeg.SeriesInstanceUID, jpeg.SOPInstanceUID,
                                media_types=(("application/dicom", EXPLICIT_LE),))
    assert plain.file_meta.TransferSyntaxUID == EXPLICIT_LE and plain.SOPInstanceUID == jpeg.SOPInstanceUID
    assert np.array_equal(plain.pixel_array, jpeg.pixel_array)
    # a transfer syntax we cannot give: 406, and nothing recorded
    n = len(downloads(live))
    assert status_of(lambda: c.retrieve_study(a, media_types=(("application/dicom", J2K),))) == 406
    assert len(downloads(live)) == n


def _native(ds) -> list[bytes]:
    arr = pixel_array(ds)
    frames = int(ds.get("NumberOfFrames") or 1)
    arr = arr if frames > 1 else arr[None]
    return [np.ascontiguousarray(f).astype(f"<{'i' if f.dtype.kind == 'i' else 'u'}{int(ds.BitsAllocated) // 8}").tobytes() for f in arr]


def test_frames_native_decoded_and_as_stored(live):
    c = client_for(live)
    a = live["A"]["uid"]
    ct = dcmread(live["A"]["files"]["explicit"])
    (frame,) = c.retrieve_instance_frames(a, ct.SeriesInstanceUID, ct.SOPInstanceUID, [1])
    assert frame == ct.PixelData
    (frame,) = c.retrieve_instance_frames(a, ct.SeriesInstanceUID, ct.SOPInstanceUID, [1], media_types=("application/octet-stream",))
    assert frame == ct.PixelData
    assert status_of(lambda: c.retrieve_instance_frames(a, ct.SeriesInstanceUID, ct.SOPInstanceUID, [1],
                                                        media_types=("image/jpeg",))) == 406
    deflated = dcmread(live["A"]["files"]["deflate"])  # stored deflated: the frame is the inflated pixel data
    (frame,) = c.retrieve_instance_frames(a, deflated.SeriesInstanceUID, deflated.SOPInstanceUID, [1])
    assert frame == deflated.PixelData

    for key, ts, media in [("jpeg2000", J2K, "image/jp2"), ("jpeg_baseline_rgb", JPEG_BASELINE, "image/jpeg"),
                           ("jpeg_ls", JPEG_LS, "image/jls"), ("rle", RLE, "image/dicom-rle")]:
        ds = dcmread(live["A"]["files"][key])
        args = (a, ds.SeriesInstanceUID, ds.SOPInstanceUID, [1])
        # the default (application/octet-stream): decoded native pixel bytes
        (native,) = c.retrieve_instance_frames(*args)
        assert native == _native(ds)[0], key
        (native,) = c.retrieve_instance_frames(*args, media_types=(("application/octet-stream", EXPLICIT_LE),))
        assert native == _native(ds)[0], key
        # the stored bitstream, in its own media type or as octet-stream with transfer-syntax=*
        compressed = get_frame(ds.PixelData, 0, number_of_frames=1)
        (raw,) = c.retrieve_instance_frames(*args, media_types=((media, ts),))
        assert raw == compressed, key
        (raw,) = c.retrieve_instance_frames(*args, media_types=(("application/octet-stream", "*"),))
        assert raw == compressed, key
        other = "image/jpeg" if media != "image/jpeg" else "image/jp2"
        r = c._session.get(f"{live['base']}/dicomweb/dossiers/{live['did']}/studies/{a}/series/{ds.SeriesInstanceUID}"
                           f"/instances/{ds.SOPInstanceUID}/frames/1", headers={"Accept": f'multipart/related; type="{other}"'})
        assert r.status_code == 406 and media in r.json()["message"], (key, r.text)


def test_multiframe_frames_bit_packed_and_rle(live):
    c = client_for(live)
    b = live["B"]["uid"]
    path, bits = live["B"]["bits"]
    ds = dcmread(path)
    args = (b, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    frames = c.retrieve_instance_frames(*args, [2, 1, 4])  # 15 bits a frame: each re-packed from its first bit
    assert frames == [pack_bits(bits[1].ravel(), pad=False), pack_bits(bits[0].ravel(), pad=False), pack_bits(bits[3].ravel(), pad=False)]
    assert [np.unpackbits(np.frombuffer(f, np.uint8), bitorder="little")[:15].tolist() for f in frames] == [
        bits[i].ravel().tolist() for i in (1, 0, 3)]
    path, words = live["B"]["rle"]
    ds = dcmread(path)
    args = (b, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert c.retrieve_instance_frames(*args, [3, 2]) == [words[2].astype("<u2").tobytes(), words[1].astype("<u2").tobytes()]
    rle = c.retrieve_instance_frames(*args, [2], media_types=(("image/dicom-rle", RLE),))
    assert rle == [get_frame(ds.PixelData, 1, number_of_frames=3)]
    s = c._session
    url = f"{live['base']}/dicomweb/dossiers/{live['did']}/studies/{b}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames/"
    assert s.get(url + "4").status_code == 404 and "1 à 3" in s.get(url + "4").json()["message"]
    assert s.get(url + "0").status_code == 400
    assert s.get(url + "abc").status_code == 400
    assert s.get(url + "1,,2").status_code == 400


def test_rendered_instance_and_frame(live):
    c = client_for(live)
    b = live["B"]["uid"]
    ct = dcmread(live["B"]["files"][0])
    args = (b, ct.SeriesInstanceUID, ct.SOPInstanceUID)
    jpeg = c.retrieve_instance_rendered(*args, media_types=("image/jpeg",))
    assert jpeg[:2] == b"\xff\xd8" and Image.open(io.BytesIO(jpeg)).size == (128, 128)
    assert c.retrieve_instance_rendered(*args)[:2] == b"\xff\xd8"  # no Accept: JPEG
    brain = c.retrieve_instance_rendered(*args, media_types=("image/png",), params={"window": "40,80"})
    bone = c.retrieve_instance_rendered(*args, media_types=("image/png",), params={"window": "500,2000,linear"})
    preset = c.retrieve_instance_rendered(*args, media_types=("image/png",), params={"preset": "bone"})
    assert brain[:8] == b"\x89PNG\r\n\x1a\n" and brain != bone and preset == bone
    small = c.retrieve_instance_rendered(*args, media_types=("image/png",), params={"viewport": "64,64"})
    assert Image.open(io.BytesIO(small)).size == (64, 64)
    assert status_of(lambda: c.retrieve_instance_rendered(*args, media_types=("text/plain",))) == 406
    for bad in ({"window": "40"}, {"window": "40,0"}, {"window": "40,80,sigmoid"}, {"quality": "0"},
                {"viewport": "big"}, {"preset": "nope"}, {"zoom": "2"}):
        assert status_of(lambda: c.retrieve_instance_rendered(*args, media_types=("image/jpeg",), params=bad)) == 400, bad
    # one frame of a multi-frame instance
    path, words = live["B"]["rle"]
    ds = dcmread(path)
    base = f"{live['base']}/dicomweb/dossiers/{live['did']}/studies/{b}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    s = c._session
    f2 = s.get(base + "/frames/2/rendered", headers={"Accept": "image/png"})
    f3 = s.get(base + "/frames/3/rendered", headers={"Accept": "image/png"})
    assert f2.status_code == 200 and f2.headers["content-type"] == "image/png" and f2.content != f3.content
    assert Image.open(io.BytesIO(f2.content)).size == (12, 16)
    assert s.get(base + "/frames/4/rendered").status_code == 404
    assert s.get(base + "/frames/1,2/rendered").status_code == 400
    thumb = s.get(base + "/thumbnail", headers={"Accept": "image/jpeg"})
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    series_thumb = s.get(f"{live['base']}/dicomweb/dossiers/{live['did']}/studies/{b}/series/{ct.SeriesInstanceUID}/thumbnail",
                         headers={"Accept": "image/png"})
    assert series_thumb.headers["content-type"] == "image/png" and Image.open(io.BytesIO(series_thumb.content)).size == (128, 128)


def test_other_users_get_403_and_unknown_things_404(live):
    a = live["A"]["uid"]
    ct = dcmread(live["A"]["files"]["explicit"])
    inst = (a, ct.SeriesInstanceUID, ct.SOPInstanceUID)
    n = len(downloads(live))
    for who in (rpps(5), rpps(3)):  # another establishment (Nîmes); same establishment, not addressed
        c = client_for(live, who)
        for call in (
            c.search_for_studies, lambda: c.search_for_series(a), lambda: c.search_for_series(),
            lambda: c.search_for_instances(a, ct.SeriesInstanceUID), lambda: c.search_for_instances(),
            lambda: c.retrieve_study_metadata(a), lambda: c.retrieve_study(a), lambda: c.retrieve_series(a, ct.SeriesInstanceUID),
            lambda: c.retrieve_instance(*inst), lambda: c.retrieve_instance_frames(*inst, [1]),
            lambda: c.retrieve_instance_rendered(*inst), lambda: c.retrieve_instance_rendered(*inst, media_types=("image/png",)),
        ):
            assert status_of(call) == 403
        s = c._session
        thumb = f"{live['base']}/dicomweb/dossiers/{live['did']}/studies/{a}/series/{ct.SeriesInstanceUID}/thumbnail"
        assert s.get(thumb).status_code == 403
        assert s.get(f"{live['base']}/dicomweb/dossiers/{live['did']}/studies/{a}/series/{ct.SeriesInstanceUID}/instances/"
                     f"{ct.SOPInstanceUID}/frames/1/rendered").status_code == 403
    assert len(downloads(live)) == n  # refused retrieves record no download
    stranger = client_for(live, rpps(5), dossier=str(uuid.uuid4()))
    assert status_of(stranger.search_for_studies) == 404  # no such dossier
    recipient = client_for(live)
    assert status_of(lambda: recipient.search_for_series("1.2.3.4")) == 404  # not attached to the dossier
    assert status_of(lambda: recipient.retrieve_instance(a, ct.SeriesInstanceUID, "1.2.3.4")) == 404
    anonymous = dicomweb_client.DICOMwebClient(url=f"{live['base']}/dicomweb/dossiers/{live['did']}")
    assert status_of(anonymous.search_for_studies) == 401
    # the refusals are traced on the dossier
    denied = [
        e for n_ in live["relais"].recorder.select_notifications(1, 1_000_000, topics=["relais:Access.Created"])
        if (e := live["relais"].mapper.to_domain_event(n_)).kind == "imaging" and e.outcome == "denied"
    ]
    assert {e.actor["practitioner_id"] for e in denied} >= {live["users"]["stranger"], live["users"]["outsider"]}
