"""Durable storage of received DICOM instances: bytes as received, fsynced, one file per SOP Instance UID."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from adapters.private_files import create_private, private_dir
from domain.imaging import valid_uid

Chunk = bytes | memoryview
InstanceBytes = Chunk | list[Chunk]  # the whole file, or its chunks in order (a received file's meta, then its data set)


class InstanceWriter(Protocol):
    """Where a receiver puts the instances it is sent: an `InstanceStore`, or a C-GET's background writes."""

    def put(self, establishment_id: str, study_uid: str, sop_uid: str, data: InstanceBytes) -> bool: ...


@runtime_checkable
class FileInstanceWriter(InstanceWriter, Protocol):
    """A writer that also takes a received instance as a file it renames into place (`InstanceStore`)."""

    def incoming(self) -> tuple[int, Path]: ...
    def incoming_dir(self) -> Path: ...
    def put_file(self, establishment_id: str, study_uid: str, sop_uid: str, path: Path) -> bool: ...


PARTIAL_AGE = 300.0  # seconds without a write after which a `.part` file is a crash's leftover
INCOMING = ".incoming"  # under the root: large data sets being received, written as they arrive


class InstanceStore:
    """Files under `<root>/<establishment>/<study uid>/<sop uid>.dcm` (DICOM Part 10, as received).

    `put` writes to a temporary file, fsyncs it, renames it into place and fsyncs the folder:
    once it returns, the instance survives a crash. An instance already stored is left as it
    is (deduplication by SOP Instance UID within an establishment).
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    def study_dir(self, establishment_id: str, study_uid: str) -> Path:
        return self.root / str(establishment_id) / valid_uid(study_uid, "study_instance_uid")

    def path(self, establishment_id: str, study_uid: str, sop_uid: str) -> Path:
        return self.study_dir(establishment_id, study_uid) / f"{valid_uid(sop_uid, 'sop_instance_uid')}.dcm"

    def exists(self, establishment_id: str, study_uid: str, sop_uid: str) -> bool:
        return self.path(establishment_id, study_uid, sop_uid).exists()

    def put(self, establishment_id: str, study_uid: str, sop_uid: str, data: InstanceBytes) -> bool:
        """Stores the bytes (or the list of byte chunks) durably; False if this instance was already
        there (nothing written)."""
        final = self.path(establishment_id, study_uid, sop_uid)
        if final.exists():
            return False
        folder = self._study_folder(final)
        tmp = folder / f".{final.name}.{secrets.token_hex(4)}.part"
        fd = create_private(tmp)
        try:
            for chunk in data if isinstance(data, list) else [data]:
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return _place(tmp, final)

    def incoming_dir(self) -> Path:
        """The folder of data sets being received (made if missing)."""
        return private_dir(self.root / INCOMING)

    def incoming(self) -> tuple[int, Path]:
        """A new private file (descriptor, path) in the folder of data sets being received: on the
        same file system as the instances, so that `put_file` renames it into place."""
        path = self.incoming_dir() / f"{secrets.token_hex(8)}.part"
        return create_private(path), path

    def put_file(self, establishment_id: str, study_uid: str, sop_uid: str, path: Path) -> bool:
        """Stores the complete instance file at `path` (from `incoming`) durably by renaming it into
        place; False, and the file removed, if this instance was already there."""
        final = self.path(establishment_id, study_uid, sop_uid)
        if final.exists():
            path.unlink(missing_ok=True)
            return False
        self._study_folder(final)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return _place(path, final)

    @staticmethod
    def _study_folder(final: Path) -> Path:
        """The folder of an instance file, made (and its making made durable) if missing."""
        folder = final.parent
        if not folder.exists():
            private_dir(folder)
            _fsync_dir(folder.parent)
        return folder

    def instances(self, establishment_id: str, study_uid: str) -> Iterator[Path]:
        folder = self.study_dir(establishment_id, study_uid)
        if folder.is_dir():
            yield from sorted(p for p in folder.iterdir() if p.suffix == ".dcm" and not p.name.startswith("."))

    def remove_partial(self, older_than: float = PARTIAL_AGE) -> int:
        """Removes the temporary `.part` files a crash left mid-write (never renamed into place, so never
        acknowledged nor recorded) that nobody has written for `older_than` seconds: a write in progress
        in another process keeps its file's mtime fresh. Returns how many were removed."""
        removed = 0
        limit = time.time() - older_than
        folders = [self.study_dir(e, s) for e, s in self.studies()]
        parts = [p for f in folders for p in f.glob(".*.part")] + list((self.root / INCOMING).glob("*.part"))
        for part in parts:
            try:
                if part.stat().st_mtime < limit:
                    part.unlink()
                    removed += 1
            except FileNotFoundError:  # finished or removed meanwhile
                continue
        return removed

    def studies(self) -> Iterator[tuple[str, str]]:
        """(establishment id, study uid) of every study folder on disk."""
        if not self.root.is_dir():
            return
        for est in sorted(self.root.iterdir()):
            if est.is_dir() and not est.name.startswith("."):
                for study in sorted(est.iterdir()):
                    if study.is_dir():
                        yield est.name, study.name


def _place(written: Path, final: Path) -> bool:
    """Renames a complete, fsynced file into place durably; False (and the file removed) when a
    concurrent resend of the same instance won the race: the first copy is kept."""
    if final.exists():
        written.unlink(missing_ok=True)
        return False
    os.replace(written, final)
    _fsync_dir(final.parent)
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
