"""The simulator's reset routes, for test suites: handset inboxes, or a tenant's whole state.

Refused (403 ``reset_disabled``) unless ``[simulator] allow_reset``, as changing chaos
is; each touches only the calling tenant's data and is recorded in its audit log.
"""

from __future__ import annotations

from aiohttp import web

from gateway.config import TenantConfig
from gateway.server.appkeys import CONFIG, SIMULATOR
from gateway.server.http_api import (
    Problem,
    api_actor,
    authenticate,
    json_response,
    msisdn_param,
    read_json,
)

_RESET_FLAGS = ("traffic", "consent")


async def test_controls_allowed(request: web.Request) -> TenantConfig:
    """The tenant, if this gateway lets tests reset and inject chaos (``allow_reset``)."""
    tenant = await authenticate(request)
    if not request.app[CONFIG].simulator.allow_reset:
        raise Problem(403, "reset_disabled", "resets and chaos need [simulator] allow_reset = true")
    return tenant


async def clear_handset(request: web.Request) -> web.Response:
    tenant = await test_controls_allowed(request)
    msisdn = msisdn_param(request.match_info["msisdn"], tenant)
    cleared = await request.app[SIMULATOR].clear_handset(tenant, msisdn, api_actor(tenant))
    return json_response({"cleared": cleared})


async def clear_handsets(request: web.Request) -> web.Response:
    tenant = await test_controls_allowed(request)
    cleared = await request.app[SIMULATOR].clear_handsets(tenant, api_actor(tenant))
    return json_response({"cleared": cleared})


async def reset(request: web.Request) -> web.Response:
    """``{"traffic": true, "consent": true}`` (both optional, default false)."""
    tenant = await test_controls_allowed(request)
    flags = await read_json(request) if request.body_exists else {}
    unknown = sorted(set(flags) - set(_RESET_FLAGS))
    if unknown:
        raise Problem(400, "invalid_request", f"unknown field {unknown[0]!r}")
    for name in _RESET_FLAGS:
        if not isinstance(flags.get(name, False), bool):
            raise Problem(400, "invalid_request", f"'{name}' must be true or false")
    cleared = await request.app[SIMULATOR].reset(
        tenant,
        api_actor(tenant),
        traffic=flags.get("traffic", False),
        consent=flags.get("consent", False),
    )
    return json_response({"cleared": cleared})


def add_routes(app: web.Application) -> None:
    app.router.add_delete("/v1/simulator/handsets/{msisdn}/messages", clear_handset)
    app.router.add_delete("/v1/simulator/handsets", clear_handsets)
    app.router.add_post("/v1/simulator/reset", reset)
