"""The instance store of a C-GET: instances answered once their header is read, written and fsynced
by background threads, recorded only once durable."""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

from adapters.dicom.storage import Chunk, InstanceBytes, InstanceStore

log = logging.getLogger("relais.dicom")


class BackgroundWrites:
    """The instance store of a C-GET, written by background threads.

    A C-STORE sent by the PACS on our C-GET association is answered once its header is read and its
    bytes are queued; writer threads write and fsync them (`InstanceStore.put`) while the next ones
    arrive. Nothing is recorded before its file is durable: the recorder waits for the instances of
    its batch (`durable`). An instance answered but not written (crash, disk full) is simply not
    recorded: the PACS still holds it and the completeness check asks for it again. (The node's
    C-STORE is different: a sender may delete what was acknowledged, so it writes before answering.)
    """

    def __init__(self, store: InstanceStore, *, threads: int = 2, queued: int = 32):
        self.store = store
        self.error: OSError | None = None
        # (establishment, study, SOP) and the bytes, or None: stop. ~0.5 MB each for a CT: bounded memory
        self._queue: queue.Queue[tuple[tuple[str, str, str], list[Chunk]] | None] = queue.Queue(maxsize=queued)
        self._pending: set[tuple[str, str, str]] = set()
        self._failed: set[tuple[str, str, str]] = set()
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._run, name=f"relais-retrieve-write-{i}", daemon=True) for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def path(self, establishment_id: str, study_uid: str, sop_uid: str) -> Path:
        return self.store.path(establishment_id, study_uid, sop_uid)

    def put(self, establishment_id: str, study_uid: str, sop_uid: str, data: InstanceBytes) -> bool:
        """Queues the bytes (copied: the caller may release its buffer); False if already stored or queued.

        A failed write is not reported to the PACS (it would end the C-GET with a PACS-side status
        that hides the cause): the instance stays unrecorded and the outcome names the error."""
        key = (str(establishment_id), study_uid, sop_uid)
        with self._cond:
            if key in self._pending:
                return False
            if self.store.path(*key).exists():
                return False
            self._pending.add(key)
        self._queue.put((key, [bytes(c) for c in (data if isinstance(data, list) else [data])]))
        return True

    def _run(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            key, chunks = task
            try:
                self.store.put(*key, chunks)
            except Exception as e:  # noqa: BLE001 - the instance stays unrecorded, the retrieve says why
                log.error("écriture impossible de l'instance %s : %s", key[2], e)
                with self._cond:
                    self.error = self.error or (e if isinstance(e, OSError) else OSError(str(e)))
                    self._failed.add(key)
            finally:
                with self._cond:
                    self._pending.discard(key)
                    self._cond.notify_all()

    def durable(self, keys: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        """Waits until these instances are written; returns those whose write failed."""
        with self._cond:
            self._cond.wait_for(lambda: not any(k in self._pending for k in keys))
            return {k for k in keys if k in self._failed}

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
