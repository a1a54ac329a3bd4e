"""The web process (`relais serve`): Litestar under uvicorn on services built for it."""

from __future__ import annotations

import uvicorn

from adapters.settings import Settings
from entrypoints.bootstrap import build_web_app


def serve(settings: Settings) -> None:
    """Serves HTTP on RELAIS_HTTP_HOST:RELAIS_HTTP_PORT until stopped."""
    uvicorn.run(
        build_web_app(settings), host=settings.http_host, port=settings.http_port,
        log_level=settings.log_level.lower(), proxy_headers=True, server_header=False,
        timeout_graceful_shutdown=5,  # open SSE streams (live inboxes) must not hold a stop
    )
