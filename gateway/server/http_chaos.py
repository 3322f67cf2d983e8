"""Run-time chaos for a tenant's own tests: ``GET``, ``PUT`` and ``DELETE /v1/simulator/chaos``.

PUT replaces the tenant's chaos with the document sent (every key optional; ``{}``
is none), DELETE turns it off; both answer the settings now in force, which GET
shows too. Changing chaos, like a reset, needs ``[simulator] allow_reset`` (403
``reset_disabled`` otherwise). A setting that is not valid is ``400 invalid_request`` naming it. The
settings are `gateway.chaos.ChaosSettings`; they live in memory only.
"""

from __future__ import annotations

from aiohttp import web

from gateway.chaos import OFF, ChaosError, ChaosSettings
from gateway.server.appkeys import CHAOS
from gateway.server.http_api import Problem, authenticate, json_response, read_json
from gateway.server.http_simulator import test_controls_allowed

ROUTE = "/v1/simulator/chaos"


async def get_chaos(request: web.Request) -> web.Response:
    tenant = await authenticate(request)
    return json_response(request.app[CHAOS].settings(tenant.id).document())


async def settings_from(request: web.Request) -> ChaosSettings:
    """The chaos settings the request body describes, or 400 naming the bad one."""
    try:
        return ChaosSettings.from_document(await read_json(request))
    except ChaosError as exc:
        raise Problem(400, "invalid_request", str(exc)) from None


async def put_chaos(request: web.Request) -> web.Response:
    tenant = await test_controls_allowed(request)
    settings = await settings_from(request)
    request.app[CHAOS].set(tenant.id, settings)
    return json_response(settings.document())


async def delete_chaos(request: web.Request) -> web.Response:
    tenant = await test_controls_allowed(request)
    request.app[CHAOS].set(tenant.id, OFF)
    return json_response(OFF.document())


def add_routes(app: web.Application) -> None:
    app.router.add_get(ROUTE, get_chaos)
    app.router.add_put(ROUTE, put_chaos)
    app.router.add_delete(ROUTE, delete_chaos)
