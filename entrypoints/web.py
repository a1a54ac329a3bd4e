"""The web process (`relais serve`): Litestar under uvicorn on services built for it."""

from __future__ import annotations

import uvicorn

from adapters.settings import Settings
from entrypoints.bootstrap import build_web_app


def serve(settings: Settings) -> None:
    """Serves HTTP on RELAIS_HTTP_HOST:RELAIS_HTTP_PORT until stopped."""
    uvicorn.run(
        build_web_app(settings), host=settings.http_host, port=settings.http_port,
        log_level=settings.log_level.lower(), server_header=False,
        # X-Forwarded-For/-Proto only from the configured proxies (uvicorn alone would believe any
        # loopback peer, so a local client could pick the address the login throttle keys it by)
        proxy_headers=True, forwarded_allow_ips=list(settings.trusted_proxies),
        timeout_graceful_shutdown=5,  # open SSE streams (live inboxes) must not hold a stop
    )
