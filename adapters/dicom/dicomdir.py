"""A study as removable media: an IHE PDI-style folder with a DICOMDIR (pydicom's FileSet), zipped."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from pydicom import dcmread
from pydicom.fileset import FileSet

# Type 1 keys of the DICOMDIR records (PS3.3 F.5) that real instances sometimes leave empty
DIR_DEFAULTS = {
    "StudyDate": "19000101", "StudyTime": "000000", "StudyID": "1", "PatientID": "INCONNU",
    "SeriesNumber": 1, "InstanceNumber": 1, "Modality": "OT",
}


def zip_with_dicomdir(files: list[Path], workdir: Path) -> Path:
    """An IHE PDI-style folder (DICOM/… files and a DICOMDIR written by pydicom's FileSet), zipped.

    The DICOMDIR records need a few attributes that some instances lack: they are filled in for
    the directory only; each instance file in the ZIP is the stored file, byte for byte."""
    fs = FileSet()
    originals: dict[str, Path] = {}
    for p in files:
        ds = dcmread(p)
        for key, value in DIR_DEFAULTS.items():
            if ds.get(key) in (None, ""):
                setattr(ds, key, value)
        originals[str(ds.SOPInstanceUID)] = p
        fs.add(ds)
    out = workdir / "cd"
    fs.write(out)
    for instance in FileSet(dcmread(out / "DICOMDIR")):
        shutil.copyfile(originals[str(instance.SOPInstanceUID)], instance.path)
    archive = workdir / "etude.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for p in sorted(out.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(out).as_posix())
    return archive
