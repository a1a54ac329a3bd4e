"""What the `relais` commands share: the user-facing error, the database they run on, signal stops."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable

from adapters.database import database
from adapters.settings import Settings

# How a process starts another `relais` process (the supervisor's parts, the DICOM node's workers).
RELAIS_COMMAND = [sys.executable, "-m", "entrypoints.cli.main"]

Command = Callable[[argparse.Namespace, Settings], int]


class CommandError(Exception):
    """A user-facing failure: printed on one line, exit code 2."""


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def with_db(fn: Command) -> Command:
    """Runs the command with a reachable database (the embedded one joined or started if needed)."""

    def wrapped(args: argparse.Namespace, settings: Settings) -> int:
        with database(settings) as resolved:
            return fn(args, resolved)

    wrapped.__doc__ = fn.__doc__
    return wrapped
