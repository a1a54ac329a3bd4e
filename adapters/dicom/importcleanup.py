"""Imports in progress under `<data>/imports`: their size per user, and abandoned ones removed periodically.

An import is a folder named by a 32-hex id holding `owner.json` (dossier, practitioner), the upload and
its extracted files. It ends when its review is confirmed or the upload fails; one left in review
(the page closed, never confirmed nor rejected) is abandoned: removed once nobody touched it for a day.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import time
from contextlib import suppress
from pathlib import Path

log = logging.getLogger("relais.dicom.import")

DAY = 24 * 3600
EVERY = 3600  # seconds between two sweeps
IMPORT_DIR = re.compile(r"[0-9a-f]{32}")


def _last_touched(folder: Path) -> float:
    """When the import last changed: its folder, owner file, upload and files folders (a file written in a
    subfolder changes that subfolder's mtime; an upload stream rewrites its file's mtime)."""
    latest = 0.0
    for p in (folder, folder / "owner.json", folder / "upload", folder / "files"):
        with suppress(OSError):
            latest = max(latest, p.stat().st_mtime)
    upload = folder / "upload"
    with suppress(OSError):
        for part in upload.iterdir():  # the files being streamed (one folder each)
            for f in part.iterdir():
                with suppress(OSError):
                    latest = max(latest, f.stat().st_mtime)
    return latest


def remove_abandoned(imports: Path, max_age: float = DAY, now: float | None = None) -> int:
    """Removes the imports nobody touched for `max_age` seconds; returns how many."""
    now = time.time() if now is None else now
    removed = 0
    with suppress(FileNotFoundError):
        for folder in imports.iterdir():
            if not IMPORT_DIR.fullmatch(folder.name) or not folder.is_dir() or folder.is_symlink():
                continue
            if now - _last_touched(folder) >= max_age:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    if removed:
        log.info("%d import(s) abandonné(s) supprimé(s)", removed)
    return removed


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def user_bytes(imports: Path, practitioner_id: str, *, skip: str = "") -> int:
    """The bytes on disk of this user's imports in progress (uploading or in review), but `skip`."""
    total = 0
    with suppress(FileNotFoundError):
        for folder in imports.iterdir():
            if folder.name == skip or not IMPORT_DIR.fullmatch(folder.name):
                continue
            try:
                owner = json.loads((folder / "owner.json").read_text())
            except (OSError, ValueError):
                continue
            if owner.get("practitioner_id") == practitioner_id:
                total += folder_bytes(folder)
    return total


class ImportSweeper:
    """Removes abandoned imports now and every `every` seconds, on the running event loop (the web
    process owns the imports: `start`/`stop` are its startup and shutdown hooks)."""

    def __init__(self, imports: Path, *, max_age: float = DAY, every: float = EVERY):
        self.imports, self.max_age, self.every = imports, max_age, every
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(remove_abandoned, self.imports, self.max_age)
            except Exception:  # a sweep failing must not end the loop (a disk error, a permission)
                log.exception("nettoyage des imports abandonnés en échec")
            await asyncio.sleep(self.every)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="relais-import-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
