"""Places of birth as the user types (GET /communes?q=toul): an htmx list of options, or JSON."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, get
from litestar.params import FromQuery
from litestar.response import Response, Template

from adapters.communes import shipped
from domain.values import Role
from web.errors import is_htmx
from web.guards import requires_role

MIN_TYPED = 2
try:
    shipped()  # read at start (~0.2 s), not by the first request: a suggestion then answers in ~30 ms
except OSError as missing:  # an install without its data: the rest of the site still starts
    logging.getLogger("relais.web.communes").error("commune list unreadable (%s): birthplaces by name unavailable", missing)


@get("/communes", guards=[requires_role(Role.CLINICIAN)], sync_to_thread=True, name="communes")
def communes(
    request: Request[Any, Any, Any], q: FromQuery[str] = "", birth_place: FromQuery[str] = "", limit: FromQuery[int] = 10,
) -> Template | Response[Any]:
    """Communes (current and former) and countries whose name has words starting with the words typed,
    accents and case ignored (« st etienne » finds Saint-Étienne), or the places of a code typed. The
    compose form's field sends its own name (`birth_place`)."""
    places = shipped()
    q = q or birth_place
    found = places.search(q, limit=max(1, min(limit, 20))) if len(q.strip()) >= MIN_TYPED else []
    if is_htmx(request):
        return Template("compose/_places.html", context={
            "places": [(p, places.describe(p)) for p in found], "q": q, "typed": len(q.strip()) >= MIN_TYPED,
        })
    return Response([{"code": p.code, "name": p.name, "department": p.department, "kind": p.kind,
                      "label": p.label, "description": places.describe(p)} for p in found])


HANDLERS = [communes]
