"""The projections process (`relais projections run`): read models following the event log."""

from __future__ import annotations

import logging
import threading

from adapters.settings import Settings
from entrypoints.bootstrap import install_process_fixes
from projections.runner import PROJECTIONS
from projections.runner import run as run_projections

log = logging.getLogger("relais")


def run(settings: Settings, names: list[str], stop: threading.Event) -> None:
    """Follows the log with the named projections (all when none is named) until `stop` is set."""
    install_process_fixes()
    names = names or list(PROJECTIONS)
    log.info("projections suivies : %s", ", ".join(names))
    run_projections(names, settings.eventsourcing_env(), stop)
