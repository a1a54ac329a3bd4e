"""GET /health: database reachability and projection positions, without login."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency

from adapters.database import ping
from projections.runner import status
from web.guards import PUBLIC
from web.services import Services

log = logging.getLogger("relais.web.health")

try:
    VERSION = version("relais")
except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
    VERSION = "0.1.0"


@get("/health", opt={PUBLIC: True}, sync_to_thread=True)
def health(services: NamedDependency[Services]) -> Response[dict[str, object]]:
    """200 when the database answers (status "degraded" if projections cannot be read), else 503."""
    database = "ok"
    projections: list[dict[str, Any]] = []
    degraded = False
    try:
        ping(services.pool)
    except Exception as e:
        log.error("santé : base de données injoignable", exc_info=e)
        database = f"error: {type(e).__name__}"
    if database == "ok":
        try:
            projections = [asdict(s) for s in status(services.relais, services.settings.eventsourcing_env())]
        except Exception as e:
            log.error("santé : état des projections illisible", exc_info=e)
            degraded = True
    body: dict[str, object] = {
        "status": "ok" if database == "ok" and not degraded else "degraded",
        "database": database,
        "projections": projections,
        "version": VERSION,
        "pid": os.getpid(),  # `relais up` checks that the /health answering is its own web process's
    }
    return Response(body, status_code=200 if database == "ok" else 503)


HANDLERS = [health]
