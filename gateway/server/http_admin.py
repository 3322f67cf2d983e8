"""The admin API (``/admin/v1``): every operator action, through the running gateway.

The CLI talks to it whenever a gateway runs, so the gateway's caches and in-memory keys
change together with its store. Operator tokens come from ``[admin] tokens`` (in clear or
as ``sha256:`` digests, looked up by digest like tenant API keys); peers other than
loopback are refused unless ``[admin] allow_remote`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from aiohttp import web

from gateway.logs import log_event
from gateway.server.appkeys import ADMIN_TOKENS, CONFIG, OPERATOR, OPERATOR_CHECK
from gateway.server.http_api import Problem, json_response, throttled_check
from gateway.server.operator import Operator, OperatorError

log = logging.getLogger(__name__)

PREFIX = "/admin/v1"

_Action = Callable[[Operator, web.Request], Awaitable[Any]]


class AdminProblem(Problem):
    """A problem of the admin API, titled here (the tenant API's titles do not cover it)."""

    TITLES: ClassVar[dict[str, str]] = {
        "unauthorized": "Missing or invalid operator token",
        "admin_not_local": "The admin API answers loopback peers only",
        "unknown_tenant": "No such tenant",
    }

    def document(self) -> dict[str, Any]:
        document = super().document()
        document["title"] = self.TITLES.get(self.code, document["title"])
        return document


def _is_loopback(remote: str | None) -> bool:
    if remote is None:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


async def authorise(request: web.Request) -> None:
    """Loopback (unless remote peers are allowed), then a known operator token.

    Token checks share the API keys' guess throttle: with ``allow_remote`` the admin
    API is as exposed as the tenant API.
    """
    if not request.app[CONFIG].admin.allow_remote and not _is_loopback(request.remote):
        raise AdminProblem(
            403, "admin_not_local", "the admin API answers loopback peers only ([admin])"
        )
    await throttled_check(
        request,
        _known_token,
        lambda: AdminProblem(401, "unauthorized", "send 'Authorization: Bearer <operator token>'"),
    )


def _known_token(request: web.Request) -> bool | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    digest = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
    # Every known digest is compared, in constant time, whatever the token.
    matches = [hmac.compare_digest(digest, known) for known in request.app[ADMIN_TOKENS]]
    return True if any(matches) else None


def _route(name: str, action: _Action) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        await authorise(request)
        operator = request.app[OPERATOR]
        tenant = request.match_info.get("tenant", "-")
        # A path segment is whatever was typed (a number, by mistake): named only if known.
        shown = tenant if tenant == "-" or operator.knows(tenant) else "unknown"
        log_event(log, "admin.action", action=name, tenant=shown)
        try:
            return json_response(await action(operator, request))
        except OperatorError as error:
            raise AdminProblem(error.status, error.code, error.detail) from None

    return handler


def _subject_args(request: web.Request) -> tuple[str, str]:
    return request.match_info["tenant"], request.match_info["msisdn"]


def add_routes(app: web.Application) -> None:
    app[ADMIN_TOKENS] = app[CONFIG].admin.token_digests()
    app[OPERATOR_CHECK] = authorise
    subject = f"{PREFIX}/tenants/{{tenant}}/subjects/{{msisdn}}"
    router = app.router
    router.add_get(
        f"{subject}/export",
        _route("subject_export", lambda op, r: op.export(*_subject_args(r))),
    )
    router.add_post(
        f"{subject}/erase", _route("subject_erase", lambda op, r: op.erase(*_subject_args(r)))
    )
    router.add_put(
        f"{subject}/restriction",
        _route("subject_restrict", lambda op, r: op.restrict(*_subject_args(r), on=True)),
    )
    router.add_delete(
        f"{subject}/restriction",
        _route("subject_unrestrict", lambda op, r: op.restrict(*_subject_args(r), on=False)),
    )
    router.add_post(
        f"{subject}/objection",
        _route("subject_object", lambda op, r: op.record_objection(*_subject_args(r))),
    )
    router.add_post(
        f"{PREFIX}/tenants/{{tenant}}/purge",
        _route("tenant_purge", lambda op, r: op.purge(r.match_info["tenant"])),
    )
    router.add_post(
        f"{PREFIX}/retention/run", _route("retention_run", lambda op, r: op.run_retention())
    )
    router.add_get(
        f"{PREFIX}/audit/verify", _route("audit_verify", lambda op, r: op.verify_audit())
    )
