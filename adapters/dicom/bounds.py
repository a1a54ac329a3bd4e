"""Cheap checks on received DICOM bytes: is a data set complete, and inflating a deflated one within a bound.

`complete` walks the top-level elements by their declared lengths (values are skipped, never
decoded: no pixel data is read) and says whether the walk ends exactly at the end of the bytes.
Undefined-length elements (sequences, encapsulated pixel data) are followed through their items
to their delimiter. A data set cut short anywhere — inside its pixel data, inside a sequence,
inside an element's header — is incomplete. Usable on received C-STORE data sets and on files
(after their File Meta Information).
"""

from __future__ import annotations

import io
import mmap
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import UID

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
# Explicit VR: these have 2 reserved bytes and a 4-byte length (PS3.5 7.1.2)
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
MAX_DEPTH = 32  # nested undefined-length sequences: deeper is not a real data set
MAX_INFLATED = 1 << 30  # a deflated data set inflating beyond this is refused (1 GiB)
CHUNK = 1 << 20

Buffer = bytes | bytearray | memoryview | mmap.mmap


class Incomplete(ValueError):
    """The data set is cut short or its structure does not add up."""


class TooLarge(ValueError):
    """A deflated data set inflates beyond the bound."""


_STRUCTS = {
    little: (struct.Struct(f"{o}HH2sH"), struct.Struct(f"{o}L"), struct.Struct(f"{o}HHL"))
    for little, o in ((True, "<"), (False, ">"))
}


def _walk(buf: Buffer, pos: int, end: int, *, implicit: bool, little: bool, until: int | None, depth: int) -> int:
    """Walks elements from `pos` until `until` (a delimiter tag, its end returned) or, at the top
    level (`until` None), exactly to `end`."""
    head, long_, item = _STRUCTS[little]
    while True:
        if until is None and pos == end:
            return pos
        if pos + 8 > end:
            raise Incomplete("données tronquées")
        group, elem, vr, short = head.unpack_from(buf, pos)
        if group == 0xFFFE:  # delimiters and items carry no VR
            tag, length = group << 16 | elem, long_.unpack_from(buf, pos + 4)[0]
            if tag == until and length == 0:
                return pos + 8
            raise Incomplete(f"délimiteur inattendu ({tag:08X})")
        if implicit:
            length = long_.unpack_from(buf, pos + 4)[0]
            pos += 8
        elif vr in LONG_VRS:
            if pos + 12 > end:
                raise Incomplete("données tronquées")
            length = long_.unpack_from(buf, pos + 8)[0]
            pos += 12
        else:
            length = short
            pos += 8
        if length != UNDEFINED:
            pos += length
            if pos > end:
                raise Incomplete("données tronquées")
            continue
        # A sequence, or encapsulated pixel data: items up to the sequence delimiter. Inside an
        # explicit VR data set, an undefined-length UN is encoded implicit VR little endian.
        if depth >= MAX_DEPTH:
            raise Incomplete("séquences imbriquées trop profondément")
        inner_implicit, inner_little = (True, True) if vr == b"UN" and not implicit else (implicit, little)
        inner_item = _STRUCTS[inner_little][2]
        while True:  # the items
            if pos + 8 > end:
                raise Incomplete("données tronquées")
            group, elem, length = inner_item.unpack_from(buf, pos)
            tag = group << 16 | elem
            pos += 8
            if tag == SEQUENCE_END:
                break
            if tag != ITEM:
                raise Incomplete(f"élément inattendu dans une séquence ({tag:08X})")
            if length == UNDEFINED:
                pos = _walk(buf, pos, end, implicit=inner_implicit, little=inner_little, until=ITEM_END, depth=depth + 1)
            else:
                pos += length
                if pos > end:
                    raise Incomplete("données tronquées")


def check_complete(buf: Buffer, *, implicit_vr: bool, little_endian: bool, start: int = 0) -> None:
    """Raises `Incomplete` unless the data set in `buf` (bytes, a memoryview, an mmap) from `start`
    is complete: its elements' declared lengths lead exactly to the end of `buf`. Values are
    skipped, never read (an mmap'ed file's pixel data is not even paged in)."""
    _walk(buf, start, len(buf), implicit=implicit_vr, little=little_endian, until=None, depth=0)


def complete(buf: Buffer, *, implicit_vr: bool, little_endian: bool, start: int = 0) -> bool:
    """Whether the data set in `buf` from `start` is complete (see `check_complete`)."""
    try:
        check_complete(buf, implicit_vr=implicit_vr, little_endian=little_endian, start=start)
    except Incomplete:
        return False
    return True


@contextmanager
def mapped(fp: BinaryIO) -> Iterator[Buffer]:
    """A file's bytes as a read-only buffer (an mmap: pages are read only where looked at)."""
    size = os.fstat(fp.fileno()).st_size
    if not size:
        yield b""
        return
    with mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as view:
        yield view


def file_complete(fp: BinaryIO, limit: int = MAX_INFLATED) -> bool:
    """Whether a DICOM Part 10 file (preamble, File Meta Information, data set) is complete. A
    deflated data set is inflated, as a stream into a temporary file, within `limit` bytes (beyond:
    not complete)."""
    fp.seek(0)
    read_preamble(fp, False)
    meta = read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag >> 16 != 2)
    ts = UID(str(meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")))
    start = fp.tell()
    try:
        if ts.is_deflated:
            with tempfile.TemporaryFile() as inflated:
                inflate_into(fp, inflated, limit)
                with mapped(inflated) as buf:
                    return complete(buf, implicit_vr=False, little_endian=True)
        with mapped(fp) as buf:
            return complete(buf, implicit_vr=ts.is_implicit_VR, little_endian=ts.is_little_endian, start=start)
    except (Incomplete, TooLarge, zlib.error):
        return False


class Inflating(io.RawIOBase):
    """The inflated bytes of a deflated data set (raw deflate, PS3.5 A.5) read from `fp`, as a
    stream: never more than a chunk in memory; `TooLarge` once more than `limit` bytes came out.
    `Incomplete` at the end if the deflate stream was cut short."""

    def __init__(self, fp: BinaryIO, limit: int = MAX_INFLATED):
        super().__init__()
        self.fp, self.limit = fp, limit
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self.produced = 0
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        want = len(buffer)
        while not self._pending:
            if self.inflater.eof:
                return 0
            data = self.inflater.unconsumed_tail or self.fp.read(CHUNK)
            if not data:
                raise Incomplete("flux compressé tronqué")
            self._pending = self.inflater.decompress(data, CHUNK)
        out, self._pending = self._pending[:want], self._pending[want:]
        self.produced += len(out)
        if self.produced > self.limit:
            raise TooLarge(f"données décompressées au-delà de {self.limit} octets")
        buffer[: len(out)] = out
        return len(out)


def inflate_into(fp: BinaryIO, out: BinaryIO, limit: int = MAX_INFLATED) -> int:
    """Inflates the deflated data set read from `fp` into `out`, a chunk at a time; raises
    `TooLarge` beyond `limit` bytes, `Incomplete` if the deflate stream is cut short. Returns the
    inflated size."""
    reader = Inflating(fp, limit)
    while chunk := reader.read(CHUNK):
        out.write(chunk)
    out.flush()
    return reader.produced
