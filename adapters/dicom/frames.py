"""Frames of a stored instance for WADO-RS: the bytes as stored (native or encapsulated) or decoded
to native little-endian pixel bytes (pydicom with the pylibjpeg decoders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels.utils import pack_bits, pixel_array, unpack_bits  # what pydicom.pixels re-exports (without __all__)

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"

# Media type of the compressed bitstream of each encapsulated transfer syntax (PS3.18 Table 8.7.3-2)
MEDIA_OF_TS = {
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx", "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
}
ALIASES = {"image/x-dicom-rle": "image/dicom-rle", "image/x-jls": "image/jls"}


class FrameError(Exception):
    """The frames cannot be given: `status` 404 (no such frame, no pixel data) or 406 (cannot decode)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class StoredFrames:
    """The pixel data of one stored instance, read once: frames as stored or decoded."""

    def __init__(self, path: Path):
        self.ds: Dataset = dcmread(path)
        if "PixelData" not in self.ds:
            raise FrameError(404, "instance sans image (pas de Pixel Data)")
        self.transfer_syntax = str(self.ds.file_meta.TransferSyntaxUID)
        self.encapsulated = self.ds.file_meta.TransferSyntaxUID.is_encapsulated
        self.count = int(self.ds.get("NumberOfFrames") or 1)

    def check(self, numbers: list[int]) -> None:
        bad = [n for n in numbers if not 1 <= n <= self.count]
        if bad:
            raise FrameError(404, f"image {bad[0]} inexistante : cette instance en a {self.count} (1 à {self.count})")

    def stored(self, n: int) -> bytes:
        """Frame `n` (1-based) as stored: the compressed bitstream, or the native bytes
        (little endian, bit-packed frames cut at their own first bit)."""
        if self.encapsulated:
            return bytes(get_frame(self.ds.PixelData, n - 1, number_of_frames=self.count))
        return self._native_slice(n)

    def native(self, n: int) -> bytes:
        """Frame `n` (1-based) as native Explicit VR Little Endian pixel bytes, decoded if compressed.

        Colour frames decoded from YBR (JPEG) come back RGB, pixel-interleaved (PS3.5 8.2.1 advises
        RGB for decompressed YBR_FULL_422); bit-allocated-1 frames are bit-packed from their first bit."""
        if not self.encapsulated:
            return self._native_slice(n)
        try:
            arr = pixel_array(self.ds, index=n - 1)
        except Exception as e:  # no decoder for this syntax, corrupt bitstream
            raise FrameError(406, f"décompression impossible ({self.transfer_syntax}) : {e.__class__.__name__}") from None
        bits = int(self.ds.BitsAllocated)
        if bits == 1:
            return pack_bits(arr, pad=False)
        kind = "i" if arr.dtype.kind == "i" else ("f" if arr.dtype.kind == "f" else "u")
        return np.ascontiguousarray(arr).astype(f"<{kind}{max(bits // 8, 1)}", copy=False).tobytes()

    def _native_slice(self, n: int) -> bytes:
        ds = self.ds
        bits = int(ds.BitsAllocated)
        pixels = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1)
        data = ds.PixelData
        if bits == 1:
            start, end = (n - 1) * pixels, n * pixels
            if start % 8 == 0 and end % 8 == 0:
                return bytes(data[start // 8 : end // 8])
            # the frame starts or ends inside a byte: re-pack its bits from the first one
            chunk = unpack_bits(bytes(data[start // 8 : (end + 7) // 8]), as_array=True)
            assert isinstance(chunk, np.ndarray)  # as_array with numpy installed (pydicom's annotation adds "or bytes")
            return pack_bits(chunk[start % 8 : start % 8 + pixels], pad=False)
        size = pixels * bits // 8
        frame = bytes(data[(n - 1) * size : n * size])
        if len(frame) < size:
            raise FrameError(404, f"données d'image tronquées (image {n})")
        if self.transfer_syntax == EXPLICIT_BE and bits in (16, 32, 64):
            frame = np.frombuffer(frame, dtype=f">u{bits // 8}").astype(f"<u{bits // 8}").tobytes()
        return frame
