"""Stored instances in the transfer syntax WADO-RS asks for: as stored, or Explicit VR Little Endian."""

from __future__ import annotations

import io
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian

from adapters.dicom.frames import EXPLICIT_LE
from adapters.dicom.negotiation import AS_STORED


class TranscodeError(Exception):
    """The instance cannot be given in the transfer syntax asked for (no decoder, corrupt data)."""


def instance_bytes(path: Path, ts: str) -> tuple[str, bytes]:
    """(transfer syntax, Part 10 bytes) of a stored instance: as stored (`ts` AS_STORED) or in
    Explicit VR Little Endian (`ts` EXPLICIT_LE)."""
    if ts == AS_STORED:
        data = path.read_bytes()
        stored = str(dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).file_meta.TransferSyntaxUID)
        return stored, data
    ds = dcmread(path)
    stored = ds.file_meta.TransferSyntaxUID
    if stored == EXPLICIT_LE:
        return EXPLICIT_LE, path.read_bytes()
    try:
        if stored.is_encapsulated:
            ds.decompress(generate_instance_uid=False)
        else:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    except Exception as e:  # no decoder, corrupt data: the part cannot be given as asked
        raise TranscodeError(f"instance {ds.SOPInstanceUID} : décompression impossible ({e.__class__.__name__})") from None
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return EXPLICIT_LE, buf.getvalue()
