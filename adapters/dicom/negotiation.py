"""DICOMweb content negotiation (PS3.18 8.7): what a client accepts, and what it is given."""

from __future__ import annotations

import re

from adapters.dicom.frames import ALIASES, DEFLATED_LE, EXPLICIT_LE, IMPLICIT_LE, MEDIA_OF_TS

AS_STORED = "*"  # the transfer syntax of an instance given as it is stored (`transfer-syntax=*`)

Choices = list[tuple[str | None, str | None]]


def accepted(header: str) -> Choices:
    """(media type, transfer syntax) the client accepts, best first, from an Accept value (the header
    or the `accept` query parameter); `multipart/related; type=X` counts as X, a missing type as None
    (the resource's default). Empty: [(None, None)].

    Litestar's `Accept` does not serve here: it splits at commas inside quoted parameters, ranks
    more specific types before earlier ones of the same q (we keep the client's order), keeps q=0
    and knows nothing of multipart/related's `type` and `transfer-syntax` parameters."""
    ranked = []
    for i, item in enumerate(re.findall(r'(?:[^,"]|"[^"]*")+', header)):
        parts = [p.strip() for p in re.findall(r'(?:[^;"]|"[^"]*")+', item)]
        if not parts or not parts[0]:
            continue
        media: str | None = parts[0].lower()
        params = {}
        for p in parts[1:]:
            k, _, v = p.partition("=")
            params[k.strip().lower()] = v.strip().strip('"')
        try:
            q = float(params.get("q") or 1)
        except ValueError:
            q = 1.0
        if q <= 0:
            continue
        if media == "multipart/related":
            media = params.get("type", "").lower() or None
        if media:
            media = ALIASES.get(media, media)
        ranked.append((-q, i, media, params.get("transfer-syntax")))
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [(m, ts) for _, _, m, ts in ranked] or [(None, None)]


def instance_rendition(choices: Choices) -> str | None:
    """The transfer syntax to give instances in: AS_STORED, or Explicit VR Little Endian (compressed
    instances decoded); None when nothing the client accepts can be given."""
    for media, ts in choices:
        if media in (None, "application/dicom", "*/*", "application/*"):
            if ts in (None, "*"):
                return AS_STORED
            if ts == EXPLICIT_LE:
                return EXPLICIT_LE
    return None


def frame_rendition(choices: Choices, stored_ts: str, encapsulated: bool) -> tuple[str, str, bool] | None:
    """(part media type, part transfer syntax, decode?) for the first acceptable choice, or None.

    application/octet-stream (the default) is native pixel data: compressed frames are decoded;
    with `transfer-syntax=*` (or the stored one) they come as stored. image/jpeg, image/jp2,
    image/jls, image/dicom-rle… are the stored bitstream, when that is how the frame is stored."""
    stored_media = MEDIA_OF_TS.get(stored_ts)
    native = (None, "*", EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE, stored_ts)
    for media, ts in choices:
        if media in (None, "application/octet-stream", "*/*", "application/*"):
            if not encapsulated:
                if ts in native:
                    return "application/octet-stream", EXPLICIT_LE if ts != IMPLICIT_LE else IMPLICIT_LE, False
                continue
            if ts in (None, EXPLICIT_LE):
                return "application/octet-stream", EXPLICIT_LE, True
            if ts in ("*", stored_ts):
                return ("application/octet-stream" if media != "*/*" else stored_media or "application/octet-stream"), stored_ts, False
            continue
        if encapsulated and stored_media and media in (stored_media, "image/*") and ts in (None, "*", stored_ts):
            return stored_media, stored_ts, False
    return None


def rendered_format(choices: Choices) -> str | None:
    """The Pillow format of a rendered image: "JPEG" (the default) or "PNG"; None if neither is accepted."""
    for media, _ts in choices:
        if media in (None, "image/jpeg", "image/*", "*/*"):
            return "JPEG"
        if media == "image/png":
            return "PNG"
    return None
