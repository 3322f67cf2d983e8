"""What the web inbox shows an operator (``/admin/v1``, operator token, loopback unless allowed).

Reads of the running gateway's parts: its tenants (ids only, to pick one to read
with ``X-Smsgw-Tenant``), the instances sharing its store (itself alone on SQLite),
bound SMPP sessions, every tenant's chaos, retention's
progress, the consent registry's counts, and where the metrics and the Grafana
dashboard are. Chaos may be changed here too, for any tenant, under the same
``[simulator] allow_reset`` as the tenant's own route. None of it names a person:
counts, ids and times only.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from gateway.chaos import OFF
from gateway.cluster.base import ClusterError
from gateway.config import TenantConfig
from gateway.documents import iso_time
from gateway.logs import log_event
from gateway.server.appkeys import CHAOS, CLUSTER, CONFIG, REGISTRY, RETENTION, SMPP_SERVER
from gateway.server.http_admin import PREFIX, AdminProblem, authorise
from gateway.server.http_api import Problem, json_response
from gateway.server.http_chaos import settings_from

log = logging.getLogger(__name__)

# The Grafana dashboard in the source tree (not served: import it into Grafana).
DASHBOARD_FILE = "dashboards/smsgw.json"


async def list_tenants(request: web.Request) -> web.Response:
    await authorise(request)
    return json_response({"tenants": [t.id for t in request.app[CONFIG].tenants]})


async def instances(request: web.Request) -> web.Response:
    await authorise(request)
    cluster = request.app[CLUSTER]
    try:
        views = await cluster.instances.listing()
    except ClusterError:
        raise Problem(503, "store_unavailable", "the instance list cannot be read now") from None
    return json_response(
        {
            "this": cluster.instances.id,
            "instances": [
                {
                    "id": view.id,
                    "alive": view.alive,
                    "started_at": iso_time(view.started_at),
                    "heartbeat_at": iso_time(view.heartbeat_at),
                    "http_url": view.http_url,
                    "admin_url": view.admin_url,
                    "smpp_port": view.smpp_port,
                    "version": view.version,
                    "sessions": view.sessions,
                }
                for view in views
            ],
        }
    )


async def smpp_sessions(request: web.Request) -> web.Response:
    await authorise(request)
    sessions = request.app[SMPP_SERVER].session_views()
    return json_response(
        {
            "sessions": [
                {
                    "session": view.session,
                    "tenant": view.tenant,
                    "system_id": view.system_id,
                    "bind_type": view.bind_type,
                    "since": iso_time(view.bound_at),
                    "tls": view.tls,
                    "deliver_window": {
                        "outstanding": view.deliver_outstanding,
                        "size": view.deliver_window,
                    },
                    "submits": {
                        "pending": view.submits_pending,
                        "max": view.max_submits_pending,
                    },
                }
                for view in sessions
            ]
        }
    )


async def all_chaos(request: web.Request) -> web.Response:
    await authorise(request)
    chaos = request.app[CHAOS]
    return json_response(
        {"tenants": {t.id: chaos.settings(t.id).document() for t in request.app[CONFIG].tenants}}
    )


def _tenant(request: web.Request) -> TenantConfig:
    wanted = request.match_info["tenant"]
    for tenant in request.app[CONFIG].tenants:
        if tenant.id == wanted:
            return tenant
    raise AdminProblem(404, "unknown_tenant", "no tenant is configured under that id")


async def _chaos_change_allowed(request: web.Request) -> TenantConfig:
    await authorise(request)
    if not request.app[CONFIG].simulator.allow_reset:
        raise Problem(403, "reset_disabled", "chaos needs [simulator] allow_reset = true")
    return _tenant(request)


async def put_tenant_chaos(request: web.Request) -> web.Response:
    tenant = await _chaos_change_allowed(request)
    settings = await settings_from(request)
    request.app[CHAOS].set(tenant.id, settings)
    log_event(log, "admin.action", action="chaos_set", tenant=tenant.id)
    return json_response(settings.document())


async def delete_tenant_chaos(request: web.Request) -> web.Response:
    tenant = await _chaos_change_allowed(request)
    request.app[CHAOS].set(tenant.id, OFF)
    log_event(log, "admin.action", action="chaos_off", tenant=tenant.id)
    return json_response(OFF.document())


async def retention_status(request: web.Request) -> web.Response:
    await authorise(request)
    config = request.app[CONFIG].privacy
    retention = request.app[RETENTION]
    oldest = retention.oldest_identifiable_at
    last: dict[str, Any] | None = None
    if retention.last_run is not None:
        ended, report = retention.last_run
        last = {
            "at": iso_time(ended),
            "seconds": round(report.seconds, 3),
            "pseudonymised": report.pseudonymised,
            "deleted": report.deleted,
            "bodies_erased": report.bodies_erased,
            "notices_erased": report.notices_erased,
            "epochs_destroyed": len(report.epochs_destroyed),
        }
    window = config.retention.pseudonymise_after
    age = retention.oldest_identifiable_age() if oldest is not None else None
    return json_response(
        {
            "oldest_identifiable_at": iso_time(oldest),
            "oldest_identifiable_age_seconds": age,
            "pseudonymise_after_seconds": window,
            "within_window": age is None or age <= window + config.retention.interval,
            "delete_after_seconds": config.retention.delete_after,
            "body_ttl_seconds": config.body_ttl,
            "interval_seconds": config.retention.interval,
            "last_run": last,
        }
    )


async def consent_counts(request: web.Request) -> web.Response:
    await authorise(request)
    registry = request.app[REGISTRY]
    return json_response(
        {"tenants": {t.id: await registry.counts(t.id) for t in request.app[CONFIG].tenants}}
    )


async def links(request: web.Request) -> web.Response:
    await authorise(request)
    return json_response(
        {"metrics": "/metrics", "openapi": "/openapi.json", "grafana_dashboard": DASHBOARD_FILE}
    )


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get(f"{PREFIX}/tenants", list_tenants)
    router.add_get(f"{PREFIX}/instances", instances)
    router.add_get(f"{PREFIX}/smpp/sessions", smpp_sessions)
    router.add_get(f"{PREFIX}/chaos", all_chaos)
    router.add_put(f"{PREFIX}/tenants/{{tenant}}/chaos", put_tenant_chaos)
    router.add_delete(f"{PREFIX}/tenants/{{tenant}}/chaos", delete_tenant_chaos)
    router.add_get(f"{PREFIX}/retention", retention_status)
    router.add_get(f"{PREFIX}/consents", consent_counts)
    router.add_get(f"{PREFIX}/links", links)
