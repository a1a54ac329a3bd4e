"""The one place where exceptions become responses: French HTML pages, htmx fragments or JSON."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import psycopg
import psycopg_pool
import redis.exceptions
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_401_UNAUTHORIZED, HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from adapters.database import DatabaseUnavailableError
from adapters.jobs import JobsUnavailableError
from application.errors import ConflictError, ForbiddenError, NotFoundError
from domain.errors import DossierStateError, InvalidFieldError, NotAllowedError, RelaisError
from web.guards import LoginRequired
from web.redirects import page_to_return_to
from web.session import COOKIE_NAME as SESSION_COOKIE


class StaleView(ConflictError):
    """A command met a newer version of the dossier: nothing was recorded; `context` holds the
    page in its new state and the user's input, shown in place of the old one."""

    def __init__(self, message: str, template: str, block: str, context: dict[str, Any]):
        super().__init__(message)
        self.template = template
        self.block = block
        self.context = context


class RequestRefused(RelaisError):
    """A request that cannot be answered as asked: `status` 400 (invalid query or parameter) or 406
    (no representation in the media types the client accepts). Nothing was read or recorded."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


log = logging.getLogger("relais.web.errors")

STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (NotAllowedError, 403),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (DossierStateError, 409),
    (InvalidFieldError, 422),
)

TITLES = {
    400: "Requête invalide",
    401: "Connexion requise",
    403: "Accès refusé",
    404: "Page ou élément introuvable",
    405: "Action non permise",
    406: "Format non disponible",
    409: "Conflit",
    413: "Envoi trop volumineux",
    422: "Donnée invalide",
    429: "Trop de requêtes",
    500: "Erreur interne",
    503: "Service indisponible",
}

GENERIC = {
    400: "La requête n'a pas pu être comprise. Vérifiez les données saisies.",
    401: "Veuillez vous connecter.",
    403: "Vous n'avez pas accès à cette page ou à cette action.",
    404: "La page ou l'élément demandé n'existe pas.",
    405: "Cette action n'est pas permise à cette adresse.",
    413: "L'envoi dépasse la taille autorisée.",
    429: "Trop de requêtes : patientez un instant puis réessayez.",
    500: "Une erreur inattendue s'est produite. Elle a été enregistrée ; réessayez plus tard ou contactez le support.",
    503: "Le service est momentanément indisponible. Réessayez dans quelques instants.",
}

CSRF_MESSAGE = (
    "Le jeton de sécurité du formulaire est absent ou périmé. Rechargez la page puis recommencez."
)

API_PREFIXES = ("/health", "/api/", "/dicomweb/")


def status_for(exc: Exception) -> int:
    if isinstance(exc, RequestRefused):
        return exc.status
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 400


def wants_json(request: Request[Any, Any, Any]) -> bool:
    if request.url.path.startswith(API_PREFIXES):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true" and request.headers.get("hx-boosted") != "true"


def error_response(
    request: Request[Any, Any, Any], status: int, message: str, field: str = "",
) -> Response[dict[str, object]] | Template:
    """The error as JSON, as an htmx fragment shown in #messages (naming the `field` refused, which
    web/static/relais.js marks in the form sent), or as a full French page."""
    title = TITLES.get(status, "Erreur")
    if wants_json(request):
        return Response({"error": title, "message": message, "status": status}, status_code=status)
    context = {"status": status, "title": title, "message": message, "field": field}
    if is_htmx(request):
        return Template(
            template_name="errors/_error.html", context=context, status_code=status,
            headers={"HX-Retarget": "#messages", "HX-Reswap": "innerHTML"},
        )
    return Template(template_name="errors/error.html", context=context, status_code=status)


def relais_error_handler(request: Request[Any, Any, Any], exc: RelaisError) -> Response[dict[str, object]] | Template:
    status = status_for(exc)
    if status == 422 and request.url.path.startswith("/dicomweb/"):  # DICOMweb: an invalid UID or value is a 400
        status = 400
    message = exc.message if isinstance(exc, InvalidFieldError) else str(exc)
    field = exc.field if isinstance(exc, InvalidFieldError) else ""
    log.info("%s %s → %s %s", request.method, request.url.path, status, type(exc).__name__)
    return error_response(request, status, message or GENERIC.get(status, ""), field)


class FormRejected(InvalidFieldError):
    """A form value was refused: the same form is shown again with the message and the input kept."""

    def __init__(self, error: InvalidFieldError, template: str, context: dict[str, Any]):
        super().__init__(error.field, error.message)
        self.template = template
        self.context = context


def form_rejected_handler(request: Request[Any, Any, Any], exc: FormRejected) -> Template:
    context = dict(exc.context, error=exc.message, error_field=exc.field)
    return Template(template_name=exc.template, context=context, status_code=422)


def stale_view_handler(request: Request[Any, Any, Any], exc: StaleView) -> Template:
    """409 with the new state (htmx swaps it in place: the page config swaps 4xx answers)."""
    from jinja2_fragments.litestar import HTMXBlockTemplate

    log.info("%s %s → 409 version périmée", request.method, request.url.path)
    context = dict(exc.context, stale=str(exc))
    if is_htmx(request):
        return HTMXBlockTemplate(template_name=exc.template, block_name=exc.block, context=context, status_code=409)
    return Template(template_name=exc.template, context=context, status_code=409)


def http_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, object]] | Template:
    status = exc.status_code
    if status >= 500:
        log.error("%s %s → %s", request.method, request.url.path, status, exc_info=exc)
        return error_response(request, status, GENERIC.get(status, GENERIC[500]))
    message = CSRF_MESSAGE if status == 403 and "CSRF" in str(exc.detail) else GENERIC.get(status, TITLES.get(status, "Erreur"))
    response = error_response(request, status, message)
    if exc.headers:  # e.g. Allow on 405
        response.headers.update({k: v for k, v in exc.headers.items() if k.lower() != "content-type"})
    return response


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]] | Template:
    log.error("erreur non gérée : %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request, HTTP_500_INTERNAL_SERVER_ERROR, GENERIC[500])


UNAVAILABLE: tuple[type[Exception], ...] = (
    JobsUnavailableError, DatabaseUnavailableError, psycopg.OperationalError, psycopg_pool.PoolTimeout,
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError,
)
RETRY_AFTER = "5"  # seconds: every process reconnects by itself within a few seconds of the part coming back


def unavailable_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]] | Template:
    """A part the request needs (PostgreSQL, Redis holding sessions and jobs) is out of reach: a 503
    saying to retry, not an « erreur interne »; nothing was recorded (commands are transactions)."""
    log.warning("%s %s → 503, dépendance injoignable : %s", request.method, request.url.path, str(exc).strip()[:200])
    response = error_response(request, 503, GENERIC[503])
    response.headers["Retry-After"] = RETRY_AFTER
    return response


def had_session(request: Request[Any, Any, Any]) -> bool:
    """The browser sent a session cookie the store no longer knows: the session expired (idle), or
    was ended elsewhere; a signed-out browser has none (logout deletes the cookie)."""
    return request.cookies.get(SESSION_COOKIE, "") not in ("", "null")


def login_required_handler(request: Request[Any, Any, Any], exc: LoginRequired) -> Response[Any]:
    """To the login page, saying why when the session expired, and back to the page the user was on
    afterwards; htmx gets a full-page redirect (HX-Redirect), never the login page in a fragment.
    Nothing of a refused form is lost: the browser keeps it as a draft (static/drafts.js)."""
    expired = exc.expired or had_session(request)
    if wants_json(request):
        return Response({"error": "Connexion requise", "status": 401, "expired": expired}, status_code=HTTP_401_UNAUTHORIZED)
    htmx = request.headers.get("hx-request") == "true"
    if htmx:  # the page the fragment was asked from
        where = request.headers.get("hx-current-url", "")
    elif request.method in ("GET", "HEAD"):
        where = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    else:  # a form sent to an action: back to the page that showed the form
        where = request.headers.get("referer", "")
    query = {"motif": exc.reason} if exc.reason else ({"expiree": "1"} if expired else {})
    back = "" if exc.reason else page_to_return_to(request, where)  # a deactivated account goes nowhere back
    if back:
        query["next"] = back
    url = "/login" + (f"?{urlencode(query)}" if query else "")
    if htmx:
        return Response(content="", status_code=HTTP_401_UNAUTHORIZED, headers={"HX-Redirect": url})
    return Redirect(url, status_code=303)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    LoginRequired: login_required_handler,
    StaleView: stale_view_handler,
    FormRejected: form_rejected_handler,
    RelaisError: relais_error_handler,
    HTTPException: http_error_handler,
    **dict.fromkeys(UNAVAILABLE, unavailable_handler),
    Exception: internal_error_handler,
}
