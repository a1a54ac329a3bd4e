"""Recording what the DICOM node stored but did not record: instances acknowledged to their sender
(their files fsynced) whose batch died with its process (a kill -9, a crash, the machine stopping).

Every process of the node looks at start, then every `EVERY` seconds: a worker killed and started
again by the acceptor, or a surviving worker's next pass, records what the dead one held in memory,
without `relais scp` itself restarting. A pass is cheap when nothing is missing: it looks only at
the study folders changed (a file renamed into place changes its folder's mtime) since the last
complete pass of any process of the node began, which the mtime of a marker file in the DICOM root
says. Such a pass recorded every file that existed when it began, so nothing older is missed.

Two processes recovering at once (a restarted worker and another's periodic pass, or a pass and a
batch being recorded) are safe: recording skips instances already recorded and retries on a
concurrent write of the same study (`record_received`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from adapters.dicom.storage import PARTIAL_AGE, InstanceStore
from adapters.private_files import create_private

log = logging.getLogger("relais.dicom")

MARKER = ".recovered"  # in the DICOM root: its mtime is when the last complete pass began
EVERY = 60.0  # seconds between two passes of one process
RETRY = 5.0  # seconds before trying again after a failed pass (PostgreSQL away, …)
SLACK = 10.0  # seconds looked back past the marker (file times use a coarse clock)


class ChangedStudies(InstanceStore):
    """The store seen through its study folders changed since `since` (a wall-clock time; None: all).
    Temporary files are looked for `PARTIAL_AGE` further back, so that one left by a crash is
    still seen once it is old enough to be removed."""

    def __init__(self, root: Path, since: float | None):
        super().__init__(root)
        self.since = since

    def studies(self) -> Iterator[tuple[str, str]]:
        for establishment_id, study_uid in super().studies():
            if self.since is None:
                yield establishment_id, study_uid
                continue
            try:
                changed = (self.root / establishment_id / study_uid).stat().st_mtime
            except FileNotFoundError:  # removed meanwhile
                continue
            if changed >= self.since:
                yield establishment_id, study_uid

    def remove_partial(self, older_than: float = PARTIAL_AGE) -> int:
        wider = ChangedStudies(self.root, None if self.since is None else self.since - older_than)
        return InstanceStore.remove_partial(wider, older_than)


class Recovery:
    """Passes of `recover` (records what a store holds and the events do not; returns how many) over
    the study folders changed since the last complete pass: `run` once, or `start` a thread that
    passes now (or after `every` seconds when `first_after` says so), then every `every` seconds."""

    def __init__(self, root: Path, recover: Callable[[InstanceStore], int], *, every: float = EVERY):
        self.root = Path(root)
        self.recover = recover
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    def since(self) -> float | None:
        """Where the next pass starts looking (None: everywhere, no pass ever completed)."""
        try:
            return self.marker.stat().st_mtime - SLACK
        except FileNotFoundError:
            return None

    def run(self, *, full: bool = False) -> int:
        """One pass (`full`: every study folder); raises what recording raised (nothing is marked)."""
        began = time.time()
        since = None if full else self.since()
        found = self.recover(ChangedStudies(self.root, since))
        self.passes += 1
        if found:
            log.warning("%d instance(s) reçue(s) mais non enregistrée(s) (arrêt brutal d'un processus) "
                        "enregistrée(s) par la reprise", found)
        self._mark(began)
        return found

    def _mark(self, began: float) -> None:
        """Moves the marker forward to `began` (never back: another process may have passed later)."""
        if not self.root.is_dir():
            return  # nothing ever stored: the next pass looks everywhere, at nothing
        try:
            try:
                os.close(create_private(self.marker))
            except FileExistsError:
                pass
            if self.marker.stat().st_mtime < began:
                os.utime(self.marker, (began, began))
        except OSError as e:  # a full disk: the next pass looks further back, that is all
            log.warning("reprise DICOM : repère %s non mis à jour (%s)", self.marker, e)

    def start(self, *, first_after: float = 0.0) -> Recovery:
        self._thread = threading.Thread(target=self._loop, args=(first_after,), name="relais-dicom-recovery", daemon=True)
        self._thread.start()
        return self

    def _loop(self, wait: float) -> None:
        failing = False
        while not self._stop.wait(wait):
            try:
                self.run()
            except Exception as e:
                if not failing:  # once per outage, not every few seconds
                    log.warning("reprise DICOM reportée (%s) : nouvel essai toutes les %.0f s", e, RETRY, exc_info=True)
                failing, wait = True, RETRY
                continue
            if failing:
                log.info("reprise DICOM : passage réussi")
            failing, wait = False, self.every

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
