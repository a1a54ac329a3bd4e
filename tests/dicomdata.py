"""Test DICOM data: pydicom's bundled files given new UIDs, and generated multi-series studies."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

# Bundled with pydicom (no download): one per transfer syntax family the node must accept.
BUNDLED = {
    "explicit": "CT_small.dcm",
    "mr": "MR_small.dcm",
    "jpeg2000": "JPEG2000.dcm",
    "jpeg_baseline_rgb": "SC_rgb_jpeg_dcmtk.dcm",
    "deflate": "image_dfl.dcm",
    "rle": "MR_small_RLE.dcm",
    "jpeg_ls": "MR_small_jpeg_ls_lossless.dcm",
}


def write_study(
    folder: Path, *, accession: str = "ACC0001", patient_id: str = "PAT001", patient_name: str = "DUPONT^JEANNE",
    birth_date: str = "19500302", sex: str = "F", series: int = 2, per_series: int = 3, source: str = "CT_small.dcm",
    study_uid: str | None = None, description: str = "SCANNER CEREBRAL",
) -> dict:
    """A study of `series` × `per_series` instances written as files; returns its UIDs and paths."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    base = dcmread(get_testdata_file(source))
    files, sops = [], []
    for s in range(series):
        series_uid = generate_uid()
        for n in range(per_series):
            ds = base.copy()
            ds.file_meta = base.file_meta.copy()
            sop = generate_uid()
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, series_uid, sop
            ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.AccessionNumber, ds.PatientID, ds.PatientName = accession, patient_id, patient_name
            ds.PatientBirthDate, ds.PatientSex, ds.StudyDescription = birth_date, sex, description
            ds.SeriesNumber, ds.InstanceNumber = s + 1, n + 1
            ds.SeriesDescription = f"SERIE {s + 1}"
            path = folder / f"s{s}_i{n}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
            sops.append(sop)
    return {"study_uid": study_uid, "sops": sops, "files": files, "accession": accession}


def write_bundled(folder: Path, *, study_uid: str | None = None, accession: str = "ACCMIX") -> dict:
    """Each bundled file (one per transfer syntax) with fresh UIDs, in one study."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    files, sops = {}, []
    for key, name in BUNDLED.items():
        ds = dcmread(get_testdata_file(name))
        sop = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, generate_uid(), sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.AccessionNumber = accession
        ds.PatientID, ds.PatientName = "PATMIX", "MIXTE^PATIENT"
        path = folder / f"{key}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files[key] = path
        sops.append(sop)
    return {"study_uid": study_uid, "sops": sops, "files": files}


def write_multiframe(
    path: Path, *, study_uid: str, series_number: int, bits: int, frames, rle: bool = False,
    patient_id: str = "PAT001", patient_name: str = "DUPONT^JEANNE", accession: str = "ACC0001",
) -> str:
    """A multi-frame secondary capture built from `frames` (a numpy array: frames × rows × columns):
    bit-packed when `bits` is 1 (Multi-frame Single Bit SC), else 16-bit words (Multi-frame Grayscale
    Word SC), RLE Lossless when `rle`. Returns its SOP Instance UID."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.pixels import pack_bits
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless

    sop_class = "1.2.840.10008.5.1.4.1.1.7.1" if bits == 1 else "1.2.840.10008.5.1.4.1.1.7.3"
    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.PatientID, ds.PatientName, ds.AccessionNumber = patient_id, patient_name, accession
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "OT", series_number, 1
    ds.SeriesDescription = f"MULTI {bits} BITS{' RLE' if rle else ''}"
    count, rows, columns = frames.shape
    ds.NumberOfFrames, ds.Rows, ds.Columns = count, rows, columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.FrameIncrementPointer = 0x00181063
    if bits == 1:
        ds.PixelData = pack_bits(frames.ravel())
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = frames.astype("<u2").tobytes()
        ds["PixelData"].VR = "OW"
    if rle:
        ds.compress(RLELossless, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return sop
