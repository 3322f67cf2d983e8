"""The web inbox's reads and actions on the tenant API (``/v1``).

What the browser inbox needs beyond the plain message and handset reads: the list
of the tenant's simulated handsets.
"""

from __future__ import annotations

from aiohttp import web

from gateway.documents import handset_document
from gateway.server.appkeys import PIPELINE
from gateway.server.http_api import authenticate, json_response, page_limit


async def list_handsets(request: web.Request) -> web.Response:
    """The tenant's handsets, most recently active first (``limit``, no cursor: a top list)."""
    tenant = await authenticate(request)
    limit = page_limit(request.query.get("limit"))
    handsets = await request.app[PIPELINE].handsets(tenant.id, limit)
    return json_response({"handsets": [handset_document(h) for h in handsets]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/simulator/handsets", list_handsets)
