"""Completeness of a data set walked by its declared lengths, and bounded inflation (adapters/dicom/bounds.py)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from adapters.dicom.bounds import Inflating, TooLarge, complete, file_complete, mapped

# implicit VR, explicit VR little/big endian, encapsulated (undefined-length pixel data), sequences
FILES = ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm",
         "SC_rgb_jpeg_dcmtk.dcm", "MR_small_RLE.dcm", "image_dfl.dcm"]


def _dataset_bytes(ds: Dataset, *, implicit: bool, little: bool) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    write_dataset(fp, ds)
    return fp.getvalue()


def _file(folder: Path, raw: bytes):
    path = folder / "f.dcm"
    path.write_bytes(raw)
    return open(path, "rb")  # noqa: SIM115 - closed by the GC, the test is short


@pytest.mark.parametrize("name", FILES)
def test_every_bundled_file_is_complete_and_any_cut_is_not(name, tmp_path):
    path = Path(get_testdata_file(name))
    raw = path.read_bytes()
    assert file_complete(_file(tmp_path, raw))
    pixels = max(raw.rfind(b"\xe0\x7f\x10\x00"), raw.rfind(b"\x7f\xe0\x00\x10"))
    cuts = [pixels + 6, pixels + 20, (pixels + len(raw)) // 2, len(raw) - 3, len(raw) - 1]
    if name == "image_dfl.dcm":  # deflated (its file has 8 bytes after the stream): cuts of the stream
        cuts = [len(raw) // 2, len(raw) - 20]
    assert pixels > 0 or name == "image_dfl.dcm"
    # cut inside the pixel data's header, inside its value, one byte short
    for cut in cuts:
        assert not file_complete(_file(tmp_path, raw[:cut])), cut


def test_undefined_length_sequences_are_followed_to_their_delimiters():
    ds = Dataset()
    ds.PatientName = "A^B"
    item = Dataset()
    item.CodeValue = "X"
    inner = Dataset()
    inner.CodeMeaning = "Y"
    item.ConceptNameCodeSequence = [inner]
    ds.ContentSequence = [item, item]
    for elem in (ds["ContentSequence"], item["ConceptNameCodeSequence"]):
        elem.is_undefined_length = True
    for it in (item, inner):
        it.is_undefined_length_sequence_item = True
    for implicit, little in ((True, True), (False, True), (False, False)):
        raw = _dataset_bytes(ds, implicit=implicit, little=little)
        delimiters = (b"\xfe\xff\xdd\xe0", b"\xfe\xff\x0d\xe0") if little else (b"\xff\xfe\xe0\xdd", b"\xff\xfe\xe0\x0d")
        assert all(raw.count(d) >= 2 for d in delimiters)  # really undefined lengths, nested
        assert complete(raw, implicit_vr=implicit, little_endian=little)
        # any cut after the sequence's first byte (a cut between top-level elements is undetectable)
        for cut in range(13, len(raw)):
            assert not complete(raw[:cut], implicit_vr=implicit, little_endian=little), (implicit, little, cut)


def test_a_file_is_walked_through_a_mapping_from_an_offset(tmp_path):
    raw = _dataset_bytes(dcmread(get_testdata_file("CT_small.dcm")), implicit=False, little=True)
    path = tmp_path / "ds"
    path.write_bytes(b"x" * 10 + raw)
    with open(path, "rb") as fp, mapped(fp) as buf:
        assert complete(buf, implicit_vr=False, little_endian=True, start=10)
    path.write_bytes(b"x" * 10 + raw[:-100])
    with open(path, "rb") as fp, mapped(fp) as buf:
        assert not complete(buf, implicit_vr=False, little_endian=True, start=10)


def test_inflation_stops_at_its_bound():
    bomb = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    payload = bomb.compress(b"\0" * (8 << 20)) + bomb.flush()
    assert len(payload) < 20_000
    with pytest.raises(TooLarge):
        Inflating(io.BytesIO(payload), limit=1 << 20).read()
    assert len(Inflating(io.BytesIO(payload), limit=16 << 20).read()) == 8 << 20
