"""File import: a CD folder made by dcmtk dcmmkdir, ZIPs (traversal, links, bombs), non-DICOM, truncated files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from adapters.dicom.fileimport import ImportRejected, extract_zip, import_studies, scan
from adapters.dicom.recording import recorder
from adapters.dicom.storage import InstanceStore
from domain.imaging import identity_differences, received_study_id

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_bundled, write_study  # noqa: E402


def only(result):
    """The one part (study and patient) of a scan."""
    (part,) = result.studies.values()
    return part


def cd_folder(root: Path) -> dict:
    """A CD image: DICOM/ST1/IMnnnnnn files and a DICOMDIR written by dcmtk's dcmmkdir."""
    study = write_study(root / "tmp", series=2, per_series=2)
    (root / "cd" / "DICOM" / "ST1").mkdir(parents=True)
    for i, f in enumerate(study["files"]):
        shutil.move(f, root / "cd" / "DICOM" / "ST1" / f"IM{i:06d}")
    shutil.rmtree(root / "tmp")
    r = subprocess.run(["dcmmkdir", "+r", "+id", str(root / "cd"), "+D", str(root / "cd" / "DICOMDIR"), "DICOM"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return study


@pytest.mark.skipif(shutil.which("dcmmkdir") is None, reason="dcmtk not installed")
def test_a_cd_with_its_dicomdir_is_scanned_and_imported(relais, world, tmp_path):
    study = cd_folder(tmp_path)
    (tmp_path / "cd" / "AUTORUN.INF").write_text("[autorun]\nopen=viewer.exe\n")
    result = scan(tmp_path / "cd")
    assert result.dicomdir == "ok"
    assert [s.study_instance_uid for s in result.studies.values()] == [study["study_uid"]]
    assert result.skipped == [("AUTORUN.INF", "pas un fichier DICOM")]
    store = InstanceStore(tmp_path / "dicom")
    updates = import_studies(result, list(result.studies), store=store, establishment_id=world["toulouse"],
                             record=recorder(relais))
    assert sum(u.new_instances for u in updates) == 4
    s = relais.repository.get(received_study_id(world["toulouse"], study["study_uid"]))
    assert s.instance_count == 4 and s.sources == ["file_import"]
    # imported again: nothing new is recorded
    version = s.version
    import_studies(result, list(result.studies), store=store, establishment_id=world["toulouse"], record=recorder(relais))
    assert relais.repository.get(s.id).version == version


@pytest.mark.skipif(shutil.which("dcmmkdir") is None, reason="dcmtk not installed")
def test_missing_or_inconsistent_dicomdir_still_finds_every_file(tmp_path):
    cd_folder(tmp_path)
    os.remove(tmp_path / "cd" / "DICOM" / "ST1" / "IM000000")
    result = scan(tmp_path / "cd")
    assert "incohérent" in result.dicomdir
    assert len(only(result).files) == 3
    (tmp_path / "cd" / "DICOMDIR").write_bytes(b"garbage")
    result = scan(tmp_path / "cd")
    assert "illisible" in result.dicomdir and len(only(result).files) == 3
    os.remove(tmp_path / "cd" / "DICOMDIR")
    assert scan(tmp_path / "cd").dicomdir == "" and len(only(scan(tmp_path / "cd")).files) == 3


def test_zip_with_traversal_links_non_dicom_and_truncated_files(tmp_path):
    mix = write_bundled(tmp_path / "mix")
    truncated = tmp_path / "trunc.dcm"
    data = mix["files"]["explicit"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for key, f in mix["files"].items():
            z.write(f, f"EXPORT/{key}.dcm")
        z.write(truncated, "EXPORT/trunc.dcm")
        z.writestr("../../evil.dcm", b"x")
        z.writestr("/etc/cron.d/evil", b"x")
        z.writestr("notes.txt", "compte rendu")
        link = zipfile.ZipInfo("EXPORT/link")
        link.external_attr = 0o120777 << 16
        z.writestr(link, "/etc/passwd")
    dest = tmp_path / "out"
    refused = extract_zip(archive, dest)
    assert sorted(refused) == [("../../evil.dcm", "chemin refusé"), ("/etc/cron.d/evil", "chemin refusé"),
                               ("EXPORT/link", "chemin refusé")]
    assert not (tmp_path / "evil.dcm").exists() and not (dest / "EXPORT" / "link").exists()
    result = scan(dest)
    # the bundled files keep their own birth dates and sexes: one study, split by patient identity
    assert {s.study_instance_uid for s in result.studies.values()} == {mix["study_uid"]}
    assert sum(len(s.files) for s in result.studies.values()) == 7
    assert dict(result.skipped) == {"EXPORT/trunc.dcm": "fichier DICOM tronqué ou corrompu",
                                    "notes.txt": "pas un fichier DICOM"}


def test_zip_bombs_are_refused(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.dcm", b"\0" * (50 * 1024 * 1024))
    with pytest.raises(ImportRejected, match="compression"):
        extract_zip(bomb, tmp_path / "out")
    with pytest.raises(ImportRejected, match="taille"):
        extract_zip(bomb, tmp_path / "out2", max_total=1024 * 1024, max_ratio=10**6)
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as z:
        for i in range(30):
            z.writestr(f"f{i}", b"x")
    with pytest.raises(ImportRejected, match="fichiers"):
        extract_zip(many, tmp_path / "out3", max_files=20)
    (tmp_path / "notzip.zip").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ImportRejected, match="illisible"):
        extract_zip(tmp_path / "notzip.zip", tmp_path / "out4")


def test_several_patients_and_identity_mismatch(tmp_path):
    write_study(tmp_path / "a", patient_id="P1", patient_name="DUPONT^JEANNE", birth_date="19500302", sex="F")
    write_study(tmp_path / "b", patient_id="P2", patient_name="MARTIN^PAUL", birth_date="19611224", sex="M")
    result = scan(tmp_path)
    assert len(result.patients) == 2
    dossier_patient = {"birth_name": "DUPONT", "first_names": "Jeanne Marie", "birth_date": "1950-03-02", "sex": "F"}
    by_name = {s.patient["name"]: s for s in result.studies.values()}
    assert identity_differences(dossier_patient, by_name["DUPONT^JEANNE"].patient) == []
    diffs = identity_differences(dossier_patient, by_name["MARTIN^PAUL"].patient)
    assert [d[0] for d in diffs] == ["Nom", "Prénom(s)", "Date de naissance", "Sexe"]
    assert ("Date de naissance", "1950-03-02", "19611224") in diffs
    accents = {"birth_name": "DUPONT-LÉGER", "first_names": "Élodie", "birth_date": "1950-03-02", "sex": "F"}
    assert identity_differences(accents, {"name": "DUPONT LEGER^ELODIE", "birth_date": "19500302", "sex": "F"}) == []


def corrupt_member(archive: Path, name: str) -> None:
    """Overwrites the middle of `name`'s compressed data in place (a damaged download or disc)."""
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo(name)
    data = bytearray(archive.read_bytes())
    offset = info.header_offset
    start = offset + 30 + int.from_bytes(data[offset + 26:offset + 28], "little") + int.from_bytes(data[offset + 28:offset + 30], "little")
    for i in range(start + info.compress_size // 3, start + info.compress_size // 3 + 64):
        data[i] ^= 0xA5
    archive.write_bytes(bytes(data))


def test_a_corrupt_member_is_refused_with_why_and_the_rest_is_extracted(tmp_path):
    """A deflate error or a bad CRC in one member: that member is reported corrupt (nothing of it left on
    disk), the others are extracted (it was an unhandled zlib.error: HTTP 500 and the folder left behind)."""
    study = write_study(tmp_path / "s", series=1, per_series=3)
    archive = tmp_path / "cd.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for f in study["files"]:
            z.write(f, f"DICOM/{f.name}")
    damaged = f"DICOM/{study['files'][1].name}"
    corrupt_member(archive, damaged)
    dest = tmp_path / "out"
    refused = extract_zip(archive, dest)
    assert refused == [(damaged, "membre corrompu dans l'archive (données illisibles)")]
    assert not (dest / damaged).exists()
    result = scan(dest)
    assert len(only(result).files) == 2


def test_one_study_uid_with_two_patients_is_split_per_identity(tmp_path):
    """The patient is read from every file, not the study's first: one Study Instance UID whose files name
    two patients is two parts of the import (it was one study, under the first file's patient)."""
    from pydicom.uid import generate_uid

    uid = generate_uid()
    write_study(tmp_path / "a", study_uid=uid, series=1, per_series=2)
    write_study(tmp_path / "b", study_uid=uid, series=1, per_series=1, patient_id="P2", patient_name="MARTIN^PAUL",
                birth_date="19611224", sex="M")
    write_study(tmp_path / "c", study_uid=uid, series=1, per_series=1, sex="O")  # same name, another sex
    result = scan(tmp_path)
    assert len(result.studies) == 3 and len(result.patients) == 3 and result.split(uid)
    by_name = sorted((s.patient["name"], s.patient["sex"], len(s.files)) for s in result.studies.values())
    assert by_name == [("DUPONT^JEANNE", "F", 2), ("DUPONT^JEANNE", "O", 1), ("MARTIN^PAUL", "M", 1)]
