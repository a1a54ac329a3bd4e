"""File import (CD-ROM, ZIP, manual PACS export): safe extraction, scan, identity check, import.

An import lives in its own folder under the data folder: uploaded files stream into `files/`,
ZIPs are extracted there with limits (path traversal, symlinks, size, count, ratio). The scan
reads every file (a DICOMDIR, when present and readable with pydicom's FileSet, only adds its
inconsistencies to the report: files are always found by walking the folder), skips and lists
what is not DICOM, truncated or corrupt, and groups the rest by study and patient identity (read per
file: a study whose files name two patients is two parts of the import, never one).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.fileset import FileSet

from adapters.dicom.receive import Record, describe
from adapters.dicom.storage import InstanceStore
from adapters.private_files import create_private, private_dir
from application.imaging import ReceivedInstance, StudyUpdate
from domain.errors import InvalidFieldError
from domain.imaging import identity_key
from domain.values import Json

log = logging.getLogger("relais.dicom.import")

MAX_FILES = 20_000
MAX_TOTAL_BYTES = 8 * 1024**3
MAX_RATIO = 200  # uncompressed / compressed size of one ZIP member
CHUNK = 1024 * 1024


class ImportRejected(InvalidFieldError):
    """The archive or upload breaks a safety limit; nothing of it is imported."""

    def __init__(self, message: str):
        super().__init__("file", message)


def safe_name(name: str) -> PurePosixPath | None:
    """A relative path inside the import folder, or None for names that try to leave it."""
    name = name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


PATH_REFUSED = "chemin refusé"
MEMBER_CORRUPT = "membre corrompu dans l'archive (données illisibles)"
MEMBER_UNREADABLE = "membre chiffré ou compressé d'une façon non prise en charge"


def extract_zip(
    archive: Path, dest: Path, *, max_files: int = MAX_FILES, max_total: int = MAX_TOTAL_BYTES, max_ratio: int = MAX_RATIO,
) -> list[tuple[str, str]]:
    """Extracts a ZIP safely; returns the members refused with why (traversal, links, a corrupt or
    unreadable member: the others are extracted, nothing is left of the refused one). Raises
    ImportRejected when a limit is broken (zip bomb): the declared sizes are checked first, then
    the bytes actually written."""
    refused: list[tuple[str, str]] = []
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError):
        raise ImportRejected("archive ZIP illisible ou corrompue") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > max_files:
            raise ImportRejected(f"archive refusée : {len(members)} fichiers (maximum {max_files})")
        if sum(m.file_size for m in members) > max_total:
            raise ImportRejected("archive refusée : taille décompressée trop grande")
        written = 0
        for m in members:
            rel = safe_name(m.filename)
            mode = m.external_attr >> 16
            if rel is None or stat.S_ISLNK(mode):
                refused.append((m.filename, PATH_REFUSED))
                continue
            if m.compress_size and m.file_size / m.compress_size > max_ratio and m.file_size > CHUNK:
                raise ImportRejected(f"archive refusée : taux de compression suspect ({m.filename})")
            target = dest / rel
            private_dir(target.parent)
            member_bytes = 0
            try:
                with zf.open(m) as src, os.fdopen(create_private(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as out:
                    while chunk := src.read(CHUNK):
                        member_bytes += len(chunk)
                        if written + member_bytes > max_total or member_bytes > m.file_size + CHUNK:
                            raise ImportRejected("archive refusée : taille décompressée trop grande")
                        out.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # a deflate error, a bad CRC, a member cut short
                target.unlink(missing_ok=True)
                refused.append((m.filename, MEMBER_CORRUPT))
                log.info("import : membre corrompu %s (%s)", m.filename[:200], type(e).__name__)
                continue
            except (NotImplementedError, RuntimeError):  # an unsupported compression method, an encrypted member
                target.unlink(missing_ok=True)
                refused.append((m.filename, MEMBER_UNREADABLE))
                continue
            written += member_bytes
    return refused


@dataclass
class ScannedStudy:
    """The instances of one study (Study Instance UID) and one patient identity: a study whose files
    name several patients is split, one ScannedStudy per identity, each offered on its own."""

    study_instance_uid: str
    identity: str  # domain.imaging.identity_key of its patient
    patient: Json  # id, name, birth_date, sex (as in the files)
    description: str
    study_date: str
    accession_number: str
    modalities: set[str] = field(default_factory=set)
    files: list[Path] = field(default_factory=list)
    instances: list[ReceivedInstance] = field(default_factory=list)

    @property
    def key(self) -> str:
        """What names this part of the import in the review's form: study UID and identity."""
        return f"{self.study_instance_uid}/{self.identity}"


@dataclass
class ImportScan:
    studies: dict[str, ScannedStudy] = field(default_factory=dict)  # by ScannedStudy.key
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative name, reason)
    dicomdir: str = ""  # "", "ok", or what is wrong with it

    @property
    def patients(self) -> set[str]:
        """The distinct patient identities among the files."""
        return {s.identity for s in self.studies.values()}

    def split(self, study_uid: str) -> bool:
        """True when this study's files name several patients."""
        return sum(1 for s in self.studies.values() if s.study_instance_uid == study_uid) > 1


def _check_pixels(ds: Dataset) -> None:
    """Raises ValueError when native pixel data is shorter than its attributes say (truncated file)."""
    if "PixelData" not in ds:
        return
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is not None and ts.is_encapsulated:
        from pydicom.encaps import generate_fragments

        for _ in generate_fragments(ds.PixelData):
            pass
        return
    frames = int(ds.get("NumberOfFrames") or 1)
    expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1) * frames * int(ds.BitsAllocated) // 8
    if len(ds.PixelData) < expected:
        raise ValueError("pixel data truncated")


def scan(folder: Path) -> ImportScan:
    """Every DICOM instance under `folder`, grouped by study; the rest skipped with a reason."""
    result = ImportScan()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    dicomdirs = [p for p in files if p.name.upper() == "DICOMDIR"]
    if dicomdirs:
        try:
            dicomdir = dcmread(dicomdirs[0])
            FileSet(dicomdir)  # pydicom's reading of the DICOMDIR: raises when it is not one
            root = dicomdirs[0].parent
            referenced = [
                root.joinpath(*([r.ReferencedFileID] if isinstance(r.ReferencedFileID, str) else r.ReferencedFileID))
                for r in dicomdir.DirectoryRecordSequence if "ReferencedFileID" in r
            ]
            missing = [p for p in referenced if not p.exists()]
            result.dicomdir = "ok" if not missing else f"DICOMDIR incohérent : {len(missing)} fichier(s) référencé(s) absent(s)"
        except Exception:
            result.dicomdir = "DICOMDIR illisible : les fichiers sont lus un à un"
    seen: set[str] = set()
    for path in files:
        rel = str(path.relative_to(folder))
        if path.name.upper() == "DICOMDIR":
            continue
        try:
            ds = dcmread(path)
            _check_pixels(ds)
            if "SOPInstanceUID" not in ds or "StudyInstanceUID" not in ds:
                raise InvalidDicomError("no UIDs")
            item = describe(ds, transfer_syntax=str(ds.file_meta.TransferSyntaxUID), size=path.stat().st_size)
        except InvalidDicomError:
            result.skipped.append((rel, "pas un fichier DICOM"))
            continue
        except InvalidFieldError:
            result.skipped.append((rel, "identifiants DICOM invalides"))
            continue
        except Exception:
            result.skipped.append((rel, "fichier DICOM tronqué ou corrompu"))
            continue
        identity = identity_key(item.patient)
        study = result.studies.get(f"{item.study_instance_uid}/{identity}")
        if study is None:
            study = ScannedStudy(
                study_instance_uid=item.study_instance_uid, identity=identity, patient=dict(item.patient),
                description=item.study.get("description", ""), study_date=item.study.get("date", ""),
                accession_number=item.study.get("accession_number", ""),
            )
            result.studies[study.key] = study
        if item.sop_instance_uid in seen:
            result.skipped.append((rel, "instance en double dans l'import"))
            continue
        seen.add(item.sop_instance_uid)
        study.files.append(path)
        study.instances.append(item)
        if item.series.get("modality"):
            study.modalities.add(item.series["modality"])
    return result


def import_studies(
    scan_result: ImportScan, keys: list[str], *, store: InstanceStore, establishment_id: str,
    record: Record, batch: int = 500,
) -> list[StudyUpdate]:
    """Stores the chosen studies' files (by ScannedStudy.key) as they are and records them (source file_import)."""
    updates: list[StudyUpdate] = []
    source: Json = {"kind": "file_import"}
    for key in keys:
        study = scan_result.studies[key]
        pending: list[ReceivedInstance] = []
        for path, item in zip(study.files, study.instances, strict=True):
            store.put(establishment_id, item.study_instance_uid, item.sop_instance_uid, path.read_bytes())
            pending.append(item)
            if len(pending) >= batch:
                updates += record(establishment_id, pending, source)
                pending = []
        if pending:
            updates += record(establishment_id, pending, source)
    return updates


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
