"""WADO-RS answers in a form the client accepts: DICOM JSON, instances, frames, rendered images."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from litestar import Request, Response
from litestar.response import Stream
from pydicom import dcmread

from adapters.dicom.dicomjson import header_json
from adapters.dicom.frames import MEDIA_OF_TS, FrameError, StoredFrames
from adapters.dicom.multipart_related import multipart_related
from adapters.dicom.negotiation import Choices, frame_rendition, instance_rendition, rendered_format
from adapters.dicom.negotiation import accepted as parse_accept
from adapters.dicom.render import CT_PRESETS, RenderError, render
from adapters.dicom.transcode import TranscodeError, instance_bytes
from application.errors import NotFoundError
from web.errors import RequestRefused

MAX_FRAMES = 1000
RENDERED_PARAMS = {"window", "preset", "quality", "viewport", "accept", "annotation", "iccprofile", "charset"}


def dicom_json(body: object, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(json.dumps(body).encode(), media_type="application/dicom+json", headers=headers)


def metadata(paths: Iterable[Path]) -> Response[bytes]:
    """The headers of these instances (bulk data left out), as WADO-RS metadata."""
    return dicom_json([header_json(path, None) for path in paths])


def _asked(request: Request[Any, Any, Any]) -> str:
    return request.query_params.get("accept") or request.headers.get("accept") or ""


def accepted(request: Request[Any, Any, Any]) -> Choices:
    """What the client accepts, best first, from the `accept` query parameter or the Accept header."""
    return parse_accept(_asked(request))


def _refuse_media(request: Request[Any, Any, Any], what: str, offered: str) -> RequestRefused:
    return RequestRefused(f"{what} : aucun des formats demandés ({_asked(request)[:200]}) n'est disponible ; possibles : {offered}", 406)


def _multipart(parts: Iterable[tuple[str, bytes]], kind: str) -> Stream:
    """A multipart/related answer streamed part by part (a study is never held in memory whole)."""
    media_type, body = multipart_related(parts, kind)
    return Stream(body, media_type=media_type)


# ---------------------------------------------------------------------- instances


def instance_syntax(request: Request[Any, Any, Any]) -> str:
    """The transfer syntax asked for instances: as stored, else Explicit VR Little Endian
    (compressed instances decoded); 406 for anything else."""
    ts = instance_rendition(accepted(request))
    if ts is None:
        raise _refuse_media(request, "instances", 'multipart/related; type="application/dicom" (tel que stocké, '
                            "transfer-syntax=* ou 1.2.840.10008.1.2.1)")
    return ts


def instances(paths: Iterable[Path], ts: str) -> Stream:
    """The instances stored at `paths`, one part each, in transfer syntax `ts` (see instance_syntax)."""
    def parts() -> Iterable[tuple[str, bytes]]:
        for path in paths:
            try:
                syntax, data = instance_bytes(path, ts)
            except TranscodeError as e:
                raise RequestRefused(str(e), 406) from None
            yield f"application/dicom; transfer-syntax={syntax}", data

    return _multipart(parts(), "application/dicom")


# ---------------------------------------------------------------------- frames


def frame_numbers(frames: str) -> list[int]:
    """The 1-based frame numbers of a `frames/<n>,<m>,…` path segment, else 400."""
    try:
        numbers = [int(n) for n in frames.split(",")]
    except ValueError:
        raise RequestRefused(f"numéros d'image attendus (1,2,…), reçu « {frames[:40]} »") from None
    if not numbers or any(n < 1 for n in numbers):
        raise RequestRefused("les numéros d'image commencent à 1")
    if len(numbers) > MAX_FRAMES:
        raise RequestRefused(f"au plus {MAX_FRAMES} images par requête")
    return numbers


def _frame_refused(e: FrameError) -> Exception:
    return NotFoundError(str(e)) if e.status == 404 else RequestRefused(str(e), e.status)


def frames(request: Request[Any, Any, Any], path: Path, numbers: list[int]) -> Stream:
    """Frames of an instance, one part each, in the first form accepted (see frame_rendition)."""
    try:
        f = StoredFrames(path)
        f.check(numbers)
    except FrameError as e:
        raise _frame_refused(e) from None
    choice = frame_rendition(accepted(request), f.transfer_syntax, f.encapsulated)
    if choice is None:
        offered = 'multipart/related; type="application/octet-stream" (décompressé, ou transfer-syntax=* tel que stocké)'
        if f.encapsulated and MEDIA_OF_TS.get(f.transfer_syntax):
            offered += f' ; type="{MEDIA_OF_TS[f.transfer_syntax]}" (tel que stocké, {f.transfer_syntax})'
        raise _refuse_media(request, "images", offered)
    media, ts, decode = choice
    try:
        data = [f.native(n) if decode else f.stored(n) for n in numbers]
    except FrameError as e:
        raise _frame_refused(e) from None
    return _multipart(((f"{media}; transfer-syntax={ts}", d) for d in data), media)


# ---------------------------------------------------------------------- rendered, thumbnails


def frame_count(path: Path) -> int:
    return int(dcmread(path, stop_before_pixels=True).get("NumberOfFrames") or 1)


def rendered(request: Request[Any, Any, Any], path: Path, frame: int, *, thumbnail: bool = False) -> Response[bytes]:
    """A JPEG (default) or PNG of frame `frame` (0-based): `window=center,width[,linear]`, or our
    `preset=` (CT presets of the viewer), `quality=1..100`, `viewport=width,height` (fit within)."""
    p = request.query_params
    unknown = sorted(set(p.keys()) - RENDERED_PARAMS)
    if unknown:
        raise RequestRefused(f"paramètre inconnu « {unknown[0]} » (possibles : {', '.join(sorted(RENDERED_PARAMS))})")
    window = None
    if p.get("window"):
        w = p["window"].split(",")
        try:
            center, width = float(w[0]), float(w[1])
        except (ValueError, IndexError):
            raise RequestRefused("window : centre,largeur[,fonction] attendus (ex. 40,80)") from None
        if width <= 0 or len(w) > 3 or (len(w) == 3 and w[2].strip().lower() not in ("linear", "")):
            raise RequestRefused("window : largeur positive et fonction « linear » seulement")
        window = (center, width)
    preset = p.get("preset") or "auto"
    if preset not in CT_PRESETS:
        raise RequestRefused(f"preset : un de {', '.join(CT_PRESETS)}")
    quality = 90
    if p.get("quality"):
        if not re.fullmatch(r"\d{1,3}", p["quality"]) or not 1 <= int(p["quality"]) <= 100:
            raise RequestRefused("quality : entier de 1 à 100")
        quality = int(p["quality"])
    size: int | tuple[int, int] | None = 128 if thumbnail else None
    if p.get("viewport"):
        m = re.fullmatch(r"(\d{1,5}),(\d{1,5})", p["viewport"])
        if not m or not int(m.group(1)) or not int(m.group(2)):
            raise RequestRefused("viewport : largeur,hauteur en pixels (ex. 512,512)")
        size = (int(m.group(1)), int(m.group(2)))
    fmt = rendered_format(accepted(request))
    if fmt is None:
        raise _refuse_media(request, "image rendue", "image/jpeg, image/png")
    try:
        data = render(path, preset=preset, window=window, size=size, frame=frame, fmt=fmt, quality=quality)
    except RenderError as e:
        raise RequestRefused(f"image non affichable : {e}", 406) from None
    return Response(data, media_type="image/jpeg" if fmt == "JPEG" else "image/png",
                    headers={"Cache-Control": "private, max-age=600"})
