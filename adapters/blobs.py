"""Document files on disk under the data folder, content-addressed by SHA-256, written as they stream in."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from adapters.private_files import private_dir

MAX_DOCUMENT_BYTES = 25 * 1024 * 1024
# What a document may be, told by its first bytes (never by the name or the browser's claim).
SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
EXTENSIONS = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg"}


class DocumentRejectedError(ValueError):
    """The file is too large, empty, or not a PDF/PNG/JPEG; the message says which (French)."""


class StorageFullError(DocumentRejectedError):
    """The data folder's file system is full (or the file exceeds what it may hold): nothing was kept."""

    def __init__(self) -> None:
        super().__init__("espace disque insuffisant sur le serveur : le document n'a pas été enregistré ; "
                         "réessayez plus tard ou prévenez l'administrateur")


FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a write refused for lack of room, whatever the reason


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    media_type: str


def sniff(head: bytes) -> str | None:
    for magic, media_type in SIGNATURES:
        if head.startswith(magic):
            return media_type
    return None


class BlobWriter:
    """Receives one file chunk by chunk: hashes, counts and checks it, then moves it into place."""

    def __init__(self, store: BlobStore, max_bytes: int = MAX_DOCUMENT_BYTES):
        self.store = store
        self.max_bytes = max_bytes
        self.hash = hashlib.sha256()
        self.size = 0
        self.head = b""
        fd, name = tempfile.mkstemp(dir=store.incoming, prefix="upload-")
        self.file = os.fdopen(fd, "wb")
        self.tmp = Path(name)

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.abort()
            raise DocumentRejectedError(f"fichier trop volumineux (maximum {self.max_bytes // (1024 * 1024)} Mo)")
        if len(self.head) < 16:
            self.head += chunk[: 16 - len(self.head)]
        self.hash.update(chunk)
        try:
            self.file.write(chunk)
        except OSError as e:
            self._full(e)

    def _full(self, error: OSError) -> NoReturn:
        """Drops the partial file; a full disk becomes a clear refusal, any other error is raised as it is."""
        try:
            self.abort()
        except OSError:
            pass
        if error.errno in FULL:
            raise StorageFullError() from error
        raise error

    def finish(self) -> StoredBlob:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())  # on disk before any event names it
            self.file.close()
        except OSError as e:
            self._full(e)
        if self.size == 0:
            self.tmp.unlink(missing_ok=True)
            raise DocumentRejectedError("fichier vide")
        media_type = sniff(self.head)
        if media_type is None:
            self.tmp.unlink(missing_ok=True)
            raise DocumentRejectedError("type de fichier non accepté : PDF, PNG ou JPEG uniquement")
        digest = self.hash.hexdigest()
        target = self.store.path(digest)
        private_dir(target.parent)
        if target.exists():
            self.tmp.unlink()
        else:
            os.replace(self.tmp, target)  # mkstemp made it 0600
            os.chmod(target, 0o400)  # never rewritten
        return StoredBlob(sha256=digest, size=self.size, media_type=media_type)

    def abort(self) -> None:
        if not self.file.closed:
            try:
                self.file.close()  # flushing what is buffered may fail on a full disk: the file goes anyway
            except OSError:
                pass
        self.tmp.unlink(missing_ok=True)


class BlobStore:
    """`<data_dir>/documents/ab/cd/<sha256>`: the same content is stored once, never rewritten."""

    def __init__(self, data_dir: Path):
        self.root = Path(data_dir) / "documents"
        self.incoming = self.root / "incoming"
        private_dir(self.incoming)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError("sha256")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def writer(self, max_bytes: int = MAX_DOCUMENT_BYTES) -> BlobWriter:
        return BlobWriter(self, max_bytes)
