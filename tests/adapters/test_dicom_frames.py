"""Frames of stored instances for WADO-RS (adapters/dicom/frames.py) and the choice of what to send."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.pixels import pack_bits

from adapters.dicom.frames import EXPLICIT_LE, FrameError, StoredFrames
from adapters.dicom.negotiation import frame_rendition
from tests.dicomdata import write_multiframe

J2K = "1.2.840.10008.1.2.4.91"


@pytest.mark.parametrize("shape", [(3, 4, 4), (5, 3, 5), (2, 1, 7)])  # byte-aligned frames, then frames cut inside bytes
def test_bit_packed_frames_are_cut_at_their_own_first_bit(tmp_path, shape):
    bits = np.random.default_rng(1).integers(0, 2, size=shape, dtype=np.uint8)
    write_multiframe(tmp_path / "bits.dcm", study_uid="1.2.3", series_number=1, bits=1, frames=bits)
    f = StoredFrames(tmp_path / "bits.dcm")
    for n in range(1, shape[0] + 1):
        assert f.stored(n) == f.native(n) == pack_bits(bits[n - 1].ravel(), pad=False)
    with pytest.raises(FrameError) as e:
        f.check([shape[0] + 1])
    assert e.value.status == 404


def test_rle_multiframe_decodes_each_frame(tmp_path):
    words = np.random.default_rng(2).integers(0, 65535, size=(3, 8, 6), dtype=np.uint16)
    write_multiframe(tmp_path / "rle.dcm", study_uid="1.2.3", series_number=1, bits=16, frames=words, rle=True)
    f = StoredFrames(tmp_path / "rle.dcm")
    assert f.encapsulated and f.count == 3
    assert [f.native(n) for n in (1, 2, 3)] == [w.astype("<u2").tobytes() for w in words]


def test_no_pixel_data_is_404(tmp_path):
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    with pytest.raises(FrameError) as e:
        StoredFrames(tmp_path / "x.dcm")
    assert e.value.status == 404


@pytest.mark.parametrize("choices, stored, encapsulated, expected", [
    ([(None, None)], J2K, True, ("application/octet-stream", EXPLICIT_LE, True)),  # default: decoded
    ([("*/*", None)], J2K, True, ("application/octet-stream", EXPLICIT_LE, True)),
    ([("application/octet-stream", "*")], J2K, True, ("application/octet-stream", J2K, False)),  # OHIF: as stored
    ([("image/jp2", None)], J2K, True, ("image/jp2", J2K, False)),
    ([("image/jp2", "*")], J2K, True, ("image/jp2", J2K, False)),
    ([("image/jpeg", None)], J2K, True, None),
    ([("image/jpeg", None), ("application/octet-stream", None)], J2K, True, ("application/octet-stream", EXPLICIT_LE, True)),
    ([("application/octet-stream", "1.2.840.10008.1.2.4.50")], J2K, True, None),
    ([(None, None)], EXPLICIT_LE, False, ("application/octet-stream", EXPLICIT_LE, False)),
    ([("application/octet-stream", "*")], "1.2.840.10008.1.2", False, ("application/octet-stream", EXPLICIT_LE, False)),
    ([("image/jpeg", None)], EXPLICIT_LE, False, None),
    ([("application/dicom", None)], EXPLICIT_LE, False, None),
])
def test_frame_rendition(choices, stored, encapsulated, expected):
    assert frame_rendition(choices, stored, encapsulated) == expected
