"""Receiving C-STORE: bytes stored durably first, then recorded as events in batches per association."""

from __future__ import annotations

import logging
import os
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag, Tag
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from adapters.dicom.bounds import MAX_INFLATED, Incomplete, TooLarge, check_complete, inflate_into, mapped
from adapters.dicom.reactor import Spill, SpillingBuffer
from adapters.dicom.storage import FileInstanceWriter, InstanceStore, InstanceWriter
from application.imaging import ReceivedInstance, StudyUpdate
from domain.errors import InvalidFieldError
from domain.imaging import valid_uid
from domain.values import Json

log = logging.getLogger("relais.dicom")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
REFUSED_NOT_AUTHORIZED = 0x0124

Record = Callable[[str, list[ReceivedInstance], Json], list[StudyUpdate]]  # (establishment id, instances, source)

SPILL_THRESHOLD = 16 << 20  # a data set larger than this is written to disk as it arrives, not held in memory


def _text(ds: Dataset, keyword: str, limit: int = 200) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()[:limit]


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def describe(ds: Dataset, *, transfer_syntax: str, size: int, sop_class: str | None = None) -> ReceivedInstance:
    """What is recorded of an instance, from its header (UIDs checked: they name files)."""
    return ReceivedInstance(
        sop_instance_uid=valid_uid(_text(ds, "SOPInstanceUID"), "sop_instance_uid"),
        series_instance_uid=valid_uid(_text(ds, "SeriesInstanceUID"), "series_instance_uid"),
        study_instance_uid=valid_uid(_text(ds, "StudyInstanceUID"), "study_instance_uid"),
        sop_class_uid=sop_class or _text(ds, "SOPClassUID", 64),
        transfer_syntax_uid=str(transfer_syntax),
        instance_number=_int(ds, "InstanceNumber"),
        size=size,
        patient=_patient(ds),
        study={
            "accession_number": _text(ds, "AccessionNumber", 16), "date": _text(ds, "StudyDate", 8),
            "time": _text(ds, "StudyTime", 16), "description": _text(ds, "StudyDescription", 64),
            "referring": _text(ds, "ReferringPhysicianName", 64),
        },
        series={
            "modality": _text(ds, "Modality", 16), "description": _text(ds, "SeriesDescription", 64),
            "number": _int(ds, "SeriesNumber"),
        },
    )


def _patient(ds: Dataset) -> Json:
    """The instance's patient: id, name, birth date, sex, and the issuer of its id when given (the
    gateway's patient ID domain: an exam awaited by Patient ID and issuer matches on both)."""
    patient = {
        "id": _text(ds, "PatientID", 64), "name": _text(ds, "PatientName", 200),
        "birth_date": _text(ds, "PatientBirthDate", 8), "sex": _text(ds, "PatientSex", 16),
    }
    issuer = _text(ds, "IssuerOfPatientID", 64)
    return dict(patient, issuer=issuer) if issuer else patient


# What `describe` reads: all of it lies before (0020,0013) Instance Number, so reading stops
# there (a CT header has twice as many elements after it: 3x faster than reading to the pixels).
DESCRIBED = [
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
    "Modality", "ReferringPhysicianName", "StudyDescription", "SeriesDescription", "PatientName", "PatientID",
    "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "InstanceNumber",
]
_DESCRIBED_TAGS: list[BaseTag | int] = [Tag(keyword) for keyword in DESCRIBED]
_LAST_DESCRIBED = 0x00200013


def _after_described(tag: Any, vr: Any, length: Any) -> bool:
    return int.__gt__(tag, _LAST_DESCRIBED)  # BaseTag's own comparison is Python code, 128 calls per CT header


def _read_described(fp: Any, ts: Any) -> Dataset:
    return read_dataset(fp, ts.is_implicit_VR, ts.is_little_endian, stop_when=_after_described, specific_tags=_DESCRIBED_TAGS)


class Refused(ValueError):
    """A received data set that is not stored: incomplete, or inflating beyond the bound."""


@dataclass
class _Received:
    raw: memoryview | None  # the data set's bytes as received, in memory (stored as they are)
    spilled: Path | None  # else the file they were spilled to (the file meta before them)
    reader: Any  # a file-like over the data set to decode (the inflated one when deflated), at its start
    view: Any  # the bytes `reader` reads
    start: int  # where the data set starts in them
    ts: Any  # its transfer syntax

    def header(self) -> Dataset:
        """What `describe` needs of the data set; raises `Refused` unless the data set is complete.
        The walk of the elements' lengths starts where pydicom stopped reading the header (it read
        those before whole), unless it read to the end (then from the start: it may have stopped short)."""
        ds = _read_described(self.reader, self.ts)
        stopped = self.reader.tell()
        start = stopped if self.start < stopped < len(self.view) else self.start
        try:
            check_complete(self.view, implicit_vr=self.ts.is_implicit_VR, little_endian=self.ts.is_little_endian, start=start)
        except Incomplete as e:
            raise Refused(f"données incomplètes : {e}") from None
        return ds


@contextmanager
def _received(event: Any, inflate_limit: int, scratch: Path | None) -> Iterator[_Received]:
    """The received data set of a C-STORE (in pynetdicom's buffer, or in the file it was spilled
    to). A deflated data set is inflated as a stream into a scratch file, within `inflate_limit`
    bytes (`Refused` beyond), to be checked and read."""
    ts = event.context.transfer_syntax
    buf = event.request.DataSet
    spilled = buf.finish() if isinstance(buf, SpillingBuffer) else None
    with ExitStack() as stack:
        raw: memoryview | None = None
        if spilled is not None:
            source = stack.enter_context(open(spilled, "rb"))
            view: Any = stack.enter_context(mapped(source))
            start = cast(SpillingBuffer, buf).offset
            reader = view
        else:
            view = raw = stack.enter_context(buf.getbuffer())
            start, reader, source = 0, buf, buf
        if ts.is_deflated:
            inflated = stack.enter_context(tempfile.TemporaryFile(dir=scratch))
            try:
                source.seek(start)
                inflate_into(source, inflated, inflate_limit)
            except TooLarge as e:
                raise Refused(f"données trop volumineuses une fois décompressées ({e})") from None
            except (Incomplete, zlib.error) as e:
                raise Refused(f"données compressées incomplètes ou illisibles ({e})") from None
            view = reader = stack.enter_context(mapped(inflated))
            start = 0
        reader.seek(start)
        yield _Received(raw=raw, spilled=spilled, reader=reader, view=view, start=start, ts=ts)


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element (the file meta group's encoding)."""
    if vr == b"OB":
        return struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def _ui(uid: str) -> bytes:
    raw = str(uid).encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _text_value(text: str) -> bytes:
    raw = text.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def file_meta(*, sop_class: str, sop_instance: str, transfer_syntax: str, source_aet: str = "") -> bytes:
    """Preamble, "DICM" and the File Meta Information group of a received instance (PS3.10 7.1),
    encoded directly: pydicom's general writer costs more than the rest of the C-STORE handling.
    The calling AE title is kept as Source Application Entity Title."""
    group = b"".join([
        _element(0x00020001, b"OB", b"\x00\x01"),
        _element(0x00020002, b"UI", _ui(sop_class)),
        _element(0x00020003, b"UI", _ui(sop_instance)),
        _element(0x00020010, b"UI", _ui(transfer_syntax)),
        _element(0x00020012, b"UI", _ui(PYNETDICOM_IMPLEMENTATION_UID)),
        _element(0x00020013, b"SH", _text_value(PYNETDICOM_IMPLEMENTATION_VERSION)),
        *([_element(0x00020016, b"AE", _text_value(source_aet.strip()[:16]))] if source_aet.strip() else []),
    ])
    return b"\x00" * 128 + b"DICM" + _element(0x00020000, b"UL", struct.pack("<I", len(group))) + group


def command_meta(command: Any, transfer_syntax: Any, source_aet: str = "") -> bytes:
    """The file meta of the instance a C-STORE request carries (its data set follows as received)."""
    return file_meta(
        sop_class=command.AffectedSOPClassUID, sop_instance=command.AffectedSOPInstanceUID,
        transfer_syntax=transfer_syntax, source_aet=source_aet,
    )


@dataclass
class _Batch:
    establishment_id: str
    source: Json
    items: list[ReceivedInstance] = field(default_factory=list)
    first_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    ended: bool = False  # its association is over: recorded at once, then forgotten


class Receiver:
    """Stores each C-STORE durably before answering, and records what arrived in batches.

    A batch belongs to one association; it is recorded when it reaches `batch_size`, when it
    has waited `max_delay` seconds, and when the association ends. Recording failures keep the
    batch for the next try (the files are already safe; `recover` also finds them at start).
    """

    def __init__(
        self, *, store: InstanceWriter, record: Record,
        after_record: Callable[[list[StudyUpdate]], object] | None = None,
        batch_size: int = 500, max_delay: float = 0.5,
        spill_threshold: int = SPILL_THRESHOLD, inflate_limit: int = MAX_INFLATED,
    ):
        self.store = store
        self.spill_threshold, self.inflate_limit = spill_threshold, inflate_limit
        # deflated data sets are inflated next to the instances (not in a small /tmp), when stored on disk
        self.scratch = store.incoming_dir() if isinstance(store, FileInstanceWriter) else None
        self.record = record
        self.after_record = after_record
        self.batch_size = batch_size
        self.max_delay = max_delay
        self._batches: dict[Any, _Batch] = {}
        self._lock = threading.Lock()
        # One recording at a time in this process: associations sending the same study would
        # otherwise clash on its version and retry (PostgreSQL serialises the writes anyway).
        self._record_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.stored = 0
        self.duplicates = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Receiver:
        self._thread = threading.Thread(target=self._flush_loop, name="relais-dicom-record", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush_all()

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.max_delay / 2)
            self._wake.clear()
            now = time.monotonic()
            with self._lock:
                due = [(k, b.ended) for k, b in self._batches.items()
                       if b.ended or (b.items and now - b.first_at >= self.max_delay)]
            for key, ended in due:
                self.flush(key, keep=not ended)

    def end(self, key: Any) -> None:
        """The association `key` is over: its batch is recorded by the recording thread at once, then
        forgotten. Not in the association's thread: while PostgreSQL is away recording waits, and the
        association would not end (its sender, its worker's count of associations, kept waiting)."""
        with self._lock:
            batch = self._batches.get(key)
            if batch is None:
                return
            batch.ended = True
        self._wake.set()

    # ------------------------------------------------------------------ C-STORE

    def spill(self) -> Spill | None:
        """Where the node's associations put data sets above `spill_threshold` bytes as they arrive
        (None when the store cannot take a received file)."""
        store = self.store
        if not isinstance(store, FileInstanceWriter):
            return None
        return Spill(
            threshold=self.spill_threshold, create=store.incoming,
            prefix=command_meta,
        )

    def store_event(self, event: Any, *, establishment_id: str, source: Json) -> int:
        """The body of an EVT_C_STORE handler (SCP or C-GET): check, store, then queue for recording.
        Nothing is stored unless the data set is complete (and, deflated, inflates within the bound)."""
        aet = source.get("calling_aet") or ""
        buf = event.request.DataSet
        try:
            with _received(event, self.inflate_limit, self.scratch) as received:
                try:
                    ds = received.header()
                    meta = command_meta(event.request, event.context.transfer_syntax, aet)
                    size = os.path.getsize(received.spilled) if received.spilled else len(meta) + len(cast(memoryview, received.raw))
                    item = describe(
                        ds, transfer_syntax=event.context.transfer_syntax, size=size,
                        sop_class=str(event.request.AffectedSOPClassUID),
                    )
                    if item.sop_instance_uid != str(event.request.AffectedSOPInstanceUID).strip():
                        raise InvalidFieldError(
                            "sop_instance_uid", f"{item.sop_instance_uid} dans l'instance, "
                            f"{event.request.AffectedSOPInstanceUID} dans la commande C-STORE",
                        )
                except InvalidFieldError as e:
                    log.warning("instance refusée (%s) depuis %s", e, aet)
                    return CANNOT_UNDERSTAND
                except Refused:
                    raise
                except Exception:
                    log.exception("instance illisible depuis %s", aet)
                    return CANNOT_UNDERSTAND
                try:
                    if received.spilled is not None:
                        written = cast(FileInstanceWriter, self.store).put_file(
                            establishment_id, item.study_instance_uid, item.sop_instance_uid, received.spilled,
                        )
                    else:
                        written = self.store.put(
                            establishment_id, item.study_instance_uid, item.sop_instance_uid,
                            [meta, cast(memoryview, received.raw)],
                        )
                except OSError:
                    log.exception("écriture impossible de l'instance %s", item.sop_instance_uid)
                    return OUT_OF_RESOURCES
        except Refused as e:
            log.warning("instance refusée (%s) depuis %s, rien n'est enregistré", e, aet)
            return CANNOT_UNDERSTAND
        finally:
            if isinstance(buf, SpillingBuffer):
                buf.discard()  # refused, or already renamed into place
        if written:
            self.stored += 1
        else:
            self.duplicates += 1
        self.add(event.assoc, item, establishment_id=establishment_id, source=source)
        return SUCCESS

    def add(self, key: Any, item: ReceivedInstance, *, establishment_id: str, source: Json) -> None:
        with self._lock:
            batch = self._batches.get(key)
            if batch is None:
                batch = self._batches[key] = _Batch(establishment_id=establishment_id, source=source)
            if not batch.items:
                batch.first_at = time.monotonic()
            batch.items.append(item)
            full = len(batch.items) >= self.batch_size
        if full:
            self.flush(key, keep=True)

    def flush(self, key: Any, keep: bool = False) -> list[StudyUpdate]:
        """Records the batch of this association (then forgets it unless `keep`).

        The batch stays listed while it is being recorded, so that `flush_all` waits for it."""
        with self._lock:
            batch = self._batches.get(key)
        if batch is None:
            return []
        updates: list[StudyUpdate] = []
        with batch.lock:
            with self._lock:
                items, batch.items = batch.items, []
            if items:
                try:
                    with self._record_lock:
                        updates = self.record(batch.establishment_id, items, batch.source)
                except Exception:
                    log.exception("enregistrement de %d instances reporté", len(items))
                    with self._lock:
                        batch.items[:0] = items
                        batch.first_at = time.monotonic()
                    return []
                if self.after_record is not None:
                    try:
                        self.after_record(updates)
                    except Exception:
                        log.exception("rattachement automatique en échec")
            if not keep:
                with self._lock:
                    if not batch.items and self._batches.get(key) is batch:
                        del self._batches[key]
        return updates

    def flush_all(self) -> None:
        with self._lock:
            keys = list(self._batches)
        for key in keys:
            self.flush(key)


def recover(store: InstanceStore, record: Record, known: Callable[[str, str], set[str]]) -> int:
    """Records instances found on disk but absent from the events (a crash between the fsync
    and the batch). `known(establishment, study_uid)` gives the SOP UIDs already recorded. Temporary
    files a crash left mid-write are removed (they were never acknowledged nor recorded)."""
    removed = store.remove_partial()
    if removed:
        log.warning("%d fichier(s) temporaire(s) laissé(s) par un arrêt brutal supprimé(s)", removed)
    total = 0
    for establishment_id, study_uid in store.studies():
        recorded = known(establishment_id, study_uid)
        missing: list[ReceivedInstance] = []
        for path in store.instances(establishment_id, study_uid):
            if path.stem in recorded:
                continue
            try:
                ds = dcmread(path, stop_before_pixels=True)
                missing.append(describe(ds, transfer_syntax=str(ds.file_meta.TransferSyntaxUID), size=path.stat().st_size))
            except Exception:
                log.exception("fichier DICOM illisible ignoré : %s", path)
        if missing:
            record(establishment_id, missing, {"kind": "dicom_store", "recovered": True})
            total += len(missing)
    return total
