"""The Litestar application of a web process, on services built by `entrypoints/bootstrap.py`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from litestar import Litestar, Request
from litestar.config.csrf import CSRFConfig
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.plugins.htmx import HTMXPlugin, HTMXRequest
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from web import present
from web.body_guard import DEFAULT_BODY_LIMIT, BodyGuard, close_unread_body
from web.dicomweb import routes as dicomweb
from web.errors import EXCEPTION_HANDLERS
from web.guards import PUBLIC, LoginRequired, current_user, requires_login
from web.labels import role_label
from web.pages import (
    admin_mails,
    audit,
    communes,
    compose,
    dossier,
    health,
    home,
    imaging,
    imaging_import,
    inbox,
    login,
    mdt,
    milestones,
    notifications,
    pacs,
    preferences,
    report,
    stats,
    thread,
    viewer,
)
from web.security import security_headers
from web.services import Services
from web.session import IDLE_TIMEOUT, SessionUser, session_config

log = logging.getLogger("relais.web")

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def _templates() -> TemplateConfig[JinjaTemplateEngine]:
    def configure(engine: JinjaTemplateEngine) -> None:
        engine.register_template_callable("current_user", lambda ctx: current_user(ctx["request"]))
        engine.register_template_callable("unread_notifications", lambda ctx: notifications.unread_of(ctx["request"]))
        engine.engine.filters["role_label"] = role_label
        engine.engine.globals["version"] = health.VERSION
        engine.engine.globals["session_idle_timeout"] = IDLE_TIMEOUT  # the page warns before it ends
        present.register(engine.engine)

    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=configure)


def provide_user(request: Request[Any, Any, Any]) -> SessionUser:
    user = current_user(request)
    if user is None:
        raise LoginRequired()
    return user


def create_app(services: Services, csrf_secret: str) -> Litestar:
    """The Relais web application on these services (login required everywhere but public handlers);
    it closes them when it shuts down."""
    settings = services.settings
    sessions = session_config(secure=settings.secure_cookies)
    csrf = CSRFConfig(
        secret=csrf_secret, cookie_name="csrftoken", header_name="x-csrftoken",
        cookie_secure=settings.secure_cookies, cookie_httponly=True, cookie_samesite="lax",
        exclude=["^/static/", "^/health"],
    )
    app = Litestar(
        route_handlers=[
            *login.HANDLERS, *home.HANDLERS, *health.HANDLERS, *inbox.HANDLERS, *dossier.HANDLERS, *thread.HANDLERS,
            *compose.HANDLERS, *communes.HANDLERS, *audit.HANDLERS, *stats.HANDLERS, *imaging.HANDLERS, *pacs.HANDLERS,
            *imaging_import.HANDLERS, *viewer.HANDLERS, *dicomweb.HANDLERS, *notifications.HANDLERS,
            *preferences.HANDLERS, *admin_mails.HANDLERS, *mdt.HANDLERS, *report.HANDLERS, *milestones.HANDLERS,
            create_static_files_router(path="/static", directories=[STATIC], opt={PUBLIC: True}),
        ],
        dependencies={
            "services": Provide(lambda: services, sync_to_thread=False),
            "user": Provide(provide_user, sync_to_thread=False),
        },
        guards=[requires_login],
        # the body guard first: nothing reads a body before it (login, CSRF header, size limit)
        middleware=[DefineMiddleware(BodyGuard, session=sessions, csrf=csrf), sessions.middleware],
        request_max_body_size=DEFAULT_BODY_LIMIT,
        stores={"sessions": services.session_store},
        csrf_config=csrf,
        template_config=_templates(),
        plugins=[HTMXPlugin()],
        request_class=HTMXRequest,
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[security_headers(https=settings.secure_cookies), close_unread_body],
        after_response=report.after_dossier_change,  # the reports of a changed dossier's answered sends
        # the live feeds' listeners (adapters/live.py): the inbox's changes, new notifications (the bell)
        on_startup=[services.live.start, services.notification_feed.start],
        on_shutdown=[services.close],
        openapi_config=None,
    )
    app.state.services = services
    return app
