"""Previews of stored instances: PNG or JPEG images with window/level (CT presets or an explicit
window), thumbnails per series.

pydicom decodes the pixel data (pylibjpeg plugins for JPEG, JPEG-LS, JPEG 2000, RLE), numpy
applies the modality LUT and the window, Pillow writes PNG. Thumbnails are cached on disk.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.multival import MultiValue

from adapters.private_files import private_dir, write_private

# (center, width) in Hounsfield units; "auto" uses the file's own window, else min–max
CT_PRESETS: dict[str, tuple[str, tuple[float, float] | None]] = {
    "auto": ("Fenêtre de l'examen", None),
    "brain": ("Cerveau", (40, 80)),
    "stroke": ("AVC (parenchyme)", (40, 40)),
    "subdural": ("Sous-dural", (75, 215)),
    "bone": ("Os", (500, 2000)),
    "lung": ("Poumon", (-600, 1500)),
    "abdomen": ("Abdomen / médiastin", (50, 350)),
}


class RenderError(Exception):
    """The instance has no image this viewer can show (e.g. a structured report)."""


def _first(value: float | str | MultiValue[float] | None) -> float | None:
    """A decimal string's value (DS, e.g. Window Center), the first one when it has several."""
    if value is None:
        return None
    try:
        return float(value[0] if isinstance(value, MultiValue) else value)
    except (TypeError, ValueError, IndexError):
        return None


def render(
    path: Path, *, preset: str = "auto", size: int | tuple[int, int] | None = None, frame: int = 0,
    window: tuple[float, float] | None = None, fmt: str = "PNG", quality: int = 90,
) -> bytes:
    """A PNG (or with `fmt="JPEG"` a JPEG of `quality`) of one frame (0-based) of the instance at
    `path`, windowed by `window` (center, width in modality units) or else by `preset`, at most
    `size` pixels wide/high (or within a `(width, height)` box). Colour images are not windowed."""
    ds = dcmread(path)
    if "PixelData" not in ds:
        raise RenderError("pas d'image dans cette instance")
    try:
        arr = ds.pixel_array
    except Exception as e:  # missing decoder, corrupt data
        raise RenderError(f"image illisible ({e.__class__.__name__})") from None
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        arr = arr[min(max(frame, 0), frames - 1)]
    if arr.ndim == 3 and arr.shape[-1] == 3:  # colour (RGB after pydicom's YBR conversion)
        img = Image.fromarray(arr.astype(np.uint8), "RGB")
    else:
        values = arr.astype(np.float32) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
        window = window or CT_PRESETS.get(preset, CT_PRESETS["auto"])[1]
        if window is None:
            center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
            if center is None or not width:
                lo, hi = float(values.min()), float(values.max())
                center, width = (lo + hi) / 2, max(hi - lo, 1.0)
        else:
            center, width = window
        lo = center - width / 2
        out = np.clip((values - lo) / max(width, 1.0) * 255.0, 0, 255).astype(np.uint8)
        if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            out = 255 - out
        img = Image.fromarray(out, "L")
    if size:
        img.thumbnail(size if isinstance(size, tuple) else (size, size))
    buf = io.BytesIO()
    if fmt.upper() == "JPEG":
        img.save(buf, "JPEG", quality=min(max(int(quality), 1), 100))
    else:
        img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def thumbnail(path: Path, cache: Path, size: int = 128) -> bytes:
    """A cached thumbnail of one instance (the series' middle image is passed in)."""
    if cache.exists():
        return cache.read_bytes()
    png = render(path, size=size)
    private_dir(cache.parent)
    tmp = cache.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)  # left by a crash
    write_private(tmp, png)
    os.replace(tmp, cache)
    return png
