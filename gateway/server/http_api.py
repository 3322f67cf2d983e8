"""HTTP API v1: translates JSON to `SubmitRequest`s and pipeline results back.

Every error is an RFC 9457 ``application/problem+json`` document with a stable
``code``, including the ones nobody planned for (a 500 with a request id that
the log line carries too); `REJECT_STATUS` is the one table from pipeline
rejections to HTTP statuses. Input is checked at the edge: JSON nesting is
capped before parsing, numbers in query parameters are ASCII digits of bounded
length, and text fields must be valid Unicode (a lone surrogate cannot be
stored, and would fail every other item of the store's group commit).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.cluster.held import Unanswered
from gateway.config import TenantConfig
from gateway.documents import (
    encode_json,
    inbound_document,
    inbox_document,
    message_document,
    notice_document,
)
from gateway.domain import Interface, Message, RejectCode, Rejected, Status, SubmitRequest
from gateway.ids import id_floor, normalise_id
from gateway.logs import log_event
from gateway.numbers import InvalidNumber, normalise_msisdn
from gateway.server.appkeys import (
    CONFIG,
    METRICS,
    OPERATOR_CHECK,
    PIPELINE,
    SINGLE_SUBMITS,
    TENANTS_BY_KEY,
)
from gateway.server.openapi import MAX_VALIDITY, openapi_document
from gateway.throttle import GuessThrottle

PROBLEM_TYPE = "application/problem+json"
# With an operator token, names the tenant whose data a read route answers with.
TENANT_HEADER = "X-Smsgw-Tenant"
# Any other method is counted as "other", so a client cannot grow the label set.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_log = logging.getLogger("gateway.http")
log = logging.getLogger(__name__)

# API key and operator token checks, spaced out per peer address once it failed one.
AUTH_THROTTLE = web.AppKey("auth_throttle", GuessThrottle)
_Found = TypeVar("_Found")

REJECT_STATUS: dict[RejectCode, int] = {
    RejectCode.INVALID_REQUEST: 400,
    RejectCode.INVALID_RECIPIENT: 400,
    RejectCode.UNKNOWN_SENDER: 400,
    RejectCode.BODY_TOO_LONG: 400,
    RejectCode.CALLBACK_NOT_ALLOWED: 422,
    RejectCode.STORE_UNAVAILABLE: 503,
    RejectCode.THROTTLED: 429,
    RejectCode.QUEUE_FULL: 503,
    RejectCode.SYSTEM_ERROR: 500,
    RejectCode.NO_RESPONSE: 504,
    RejectCode.NOT_PENDING: 409,
    RejectCode.INVALID_VALIDITY: 400,
    RejectCode.TOO_MANY_SCHEDULED: 429,
    RejectCode.RECIPIENT_OPTED_OUT: 403,
    RejectCode.CONSENT_REQUIRED: 403,
    RejectCode.PROCESSING_RESTRICTED: 403,
}

_TITLES: dict[str, str] = {
    "invalid_json": "Request body is not valid JSON",
    "invalid_request": "Request is not valid",
    "invalid_recipient": "Recipient is not a valid phone number",
    "unknown_sender": "Sender is not allowed for this tenant",
    "body_too_long": "Message body is too long",
    "callback_not_allowed": "Callback URL is not allowed",
    "invalid_send_at": "send_at is not an RFC 3339 time with a zone",
    "invalid_validity": "validity is not a validity period this message can have",
    "too_many_scheduled": "Too many scheduled messages waiting",
    "store_unavailable": "Message store is unavailable",
    "instance_unreachable": "Another gateway instance sharing the store did not answer",
    "throttled": "Too many requests",
    "queue_full": "Message queue is full (simulated)",
    "system_error": "System error (simulated)",
    "no_response": "The SMSC did not answer (simulated)",
    "unauthorized": "Missing or invalid API key",
    "recipient_opted_out": "The recipient opted out",
    "consent_required": "The recipient has not consented to this purpose",
    "processing_restricted": "Processing of the recipient's data is restricted",
    "not_found": "Not found",
    "reset_disabled": "Resets are disabled ([simulator] allow_reset)",
    "not_pending": "The message is not on its way",
    "not_final": "The message has no final state yet",
    "no_callback_url": "The message has no callback URL",
    "callback_in_progress": "A re-send of this callback is under way",
    "body_gone": "The body is no longer kept",
    "operator_read_only": "An operator may only read a tenant's data",
    "unknown_tenant": "No such tenant",
    "method_not_allowed": "Method not allowed",
    "payload_too_large": "Request is too large",
    "request_timeout": "The request did not arrive in time",
    "too_many_connections": "Too many connections",
    "client_closed_request": "The client closed the connection",
    "internal_error": "Internal error",
}

_REQUIRED_FIELDS = ("to", "from", "body")
_OPTIONAL_FIELDS = ("purpose", "callback_url", "client_ref")
_TIMING_FIELDS = ("send_at", "validity")
MESSAGE_ID_RE = re.compile(r"[0-9a-f]{20}")
MAX_PAGE = 1000
# Our deepest document is 3 levels ({"messages": [{...}]}); json.loads recurses per level.
MAX_JSON_DEPTH = 32
# [0-9], not \d or str.isdigit(): those take "²" and "٣", which int() then refuses or reads.
_PAGE_RE = re.compile(r"[0-9]{1,4}")
_EPOCH_RE = re.compile(r"[0-9]{1,11}(?:\.[0-9]{1,9})?")
_MAX_TIMESTAMP = 1e11  # year 5138: beyond it, ids (milliseconds, 12 hex digits) overflow
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# A JSON string, terminated or not (an unterminated one runs to the end, so no quote is
# ever tried twice: linear time on any input).
_JSON_STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_AS_PARENS = bytes.maketrans(b"[{]}", b"(())")
_RUN_RE = re.compile(rb"\(+|\)+")
_MAX_RUNS = 200_000  # a loop over this many runs costs some 30 ms


class Problem(Exception):
    """An error answered as a problem document."""

    content_type = PROBLEM_TYPE

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.close = close  # the connection cannot be reused (a body never finished)

    def document(self) -> dict[str, Any]:
        return {
            "type": f"urn:smsgw:problem:{self.code}",
            "title": _TITLES.get(self.code, self.code),
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
            **self.extra(),
        }

    def extra(self) -> dict[str, Any]:
        """Members beyond the standard five (RFC 9457 extensions)."""
        return {}


class InternalError(Problem):
    """Any exception a handler did not expect; ``request_id`` finds its log line."""

    def __init__(self, request_id: str) -> None:
        super().__init__(
            500, "internal_error", f"an unexpected error; quote request id {request_id}"
        )
        self.request_id = request_id

    def extra(self) -> dict[str, Any]:
        return {"request_id": self.request_id}


def rejection_problem(rejection: Rejected) -> Problem:
    headers = None
    if rejection.code is RejectCode.THROTTLED:
        headers = {"Retry-After": str(retry_after_seconds(rejection))}
    return Problem(
        REJECT_STATUS[rejection.code], rejection.code.value, rejection.detail, headers=headers
    )


def retry_after_seconds(rejection: Rejected) -> int:
    """Whole seconds until a throttled submit could pass (1 when the refusal does not say)."""
    return max(1, math.ceil(rejection.retry_after or 0.0))


def json_response(
    document: object, status: int = 200, content_type: str = "application/json"
) -> web.Response:
    return web.Response(
        body=encode_json(document),
        status=status,
        content_type=content_type,
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
# Headers of aiohttp's own errors that belong in our answer too (405 must name the methods).
_KEPT_HEADERS = ("Allow",)


@web.middleware
async def observe_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count and log every request by its route template, never by its path.

    Paths such as ``/v1/consents/+46701234567`` name a person; the template
    ``/v1/consents/{msisdn}`` does not, and keeps the label set bounded.
    """
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away before the answer
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        method = request.method if request.method in KNOWN_METHODS else "other"
        request.app[METRICS].http_requests.inc(method, route, str(status))
        if access_log.isEnabledFor(logging.DEBUG):  # its fields cost even when it is off
            log_event(
                access_log,
                "http.request",
                logging.DEBUG,
                method=method,
                route=route,
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        error = problem
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
        code = _HTTP_CODES.get(exc.status, "http_error")
        error = Problem(exc.status, code, exc.reason, headers=kept)
    except ConnectionError:
        if request.transport is not None and not request.transport.is_closing():
            error = _unexpected(request)
        else:
            # The client hung up mid-body: nobody will read an answer, nothing is wrong here.
            error = Problem(499, "client_closed_request", "the connection closed mid-request")
    except Unanswered as exc:  # an erasure, reset or purge every instance must take part in
        error = Problem(503, "instance_unreachable", f"not done: {exc}")
    except Exception:
        error = _unexpected(request)
    request.app[METRICS].http_errors.labels(error.code).inc()
    response = json_response(error.document(), error.status, error.content_type)
    response.headers.update(error.headers)
    if error.close:
        response.force_close()
    return response


def _unexpected(request: web.Request) -> InternalError:
    """Log the exception being handled under a fresh id, never with the body or the path."""
    error = InternalError(secrets.token_hex(8))
    resource = request.match_info.route.resource
    log_event(
        log,
        "http.unexpected_error",
        logging.ERROR,
        exc_info=True,
        request_id=error.request_id,
        method=request.method if request.method in KNOWN_METHODS else "other",
        route=resource.canonical if resource is not None else "unmatched",
    )
    return error


async def authenticate(request: web.Request, *, operator_may_read: bool = False) -> TenantConfig:
    """The tenant whose API key is in ``Authorization: Bearer``.

    Keys are looked up by their SHA-256 digest, so lookup timing says nothing
    about a stored key; the final comparison is constant-time all the same.
    With `TENANT_HEADER`, the credential must be an operator token instead (checked
    as the admin API checks it) and the route one that only reads
    (``operator_may_read``): the web inbox's operator reads a tenant's data and
    changes nothing of it (docs/security.md).
    """
    if TENANT_HEADER in request.headers:
        return await _operator_reading(request, operator_may_read)
    return await throttled_check(
        request,
        _tenant_of_key,
        lambda: Problem(
            401,
            "unauthorized",
            "send 'Authorization: Bearer <api key>'",
            headers={"WWW-Authenticate": 'Bearer realm="smsgw"'},
        ),
    )


async def throttled_check(
    request: web.Request,
    check: Callable[[web.Request], _Found | None],
    refusal: Callable[[], Problem],
) -> _Found:
    """Run a credential ``check`` under the guess throttle: what it found, or ``refusal``.

    Once an address has sent a wrong credential, each further check from it waits
    for its slot in `AUTH_THROTTLE` before the credential is looked at, so guesses
    are spaced out however many are sent at once; beyond ``max_auth_wait`` the
    check is refused unchecked (429).
    """
    peer = _peer(request)
    throttle = request.app[AUTH_THROTTLE]
    failures = request.app[METRICS].auth_failures
    if not await throttle.admit(peer):
        failures.labels("http", "refused").inc()
        retry = str(max(1, math.ceil(request.app[CONFIG].http.max_auth_delay)))
        raise Problem(
            429,
            "throttled",
            "too many wrong credentials from this address; retry later",
            headers={"Retry-After": retry},
        )
    found = check(request)
    if found is None:
        throttle.failed(peer)
        failures.labels("http", "failed").inc()
        raise refusal()
    throttle.succeeded(peer)
    return found


async def _operator_reading(request: web.Request, may_read: bool) -> TenantConfig:
    """The tenant an operator reads, named by `TENANT_HEADER`, on a route that only reads."""
    if not may_read:
        raise Problem(403, "operator_read_only", f"{TENANT_HEADER} is accepted on read routes only")
    await request.app[OPERATOR_CHECK](request)
    wanted = request.headers[TENANT_HEADER]
    for tenant in request.app[CONFIG].tenants:
        if hmac.compare_digest(tenant.id.encode(), wanted.encode("utf-8", "surrogateescape")):
            return tenant
    raise Problem(404, "unknown_tenant", f"no tenant is configured under {TENANT_HEADER}")


def api_actor(tenant: TenantConfig) -> str:
    """Who the audit log names for a change made with the tenant's API key."""
    return f"api:{tenant.id}"


def _tenant_of_key(request: web.Request) -> TenantConfig | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    digest = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
    # The lookup compares digests, not keys, so its timing says nothing of a key; the
    # compare_digest over the tenant's digests that followed it re-hashed every key of
    # the tenant on every request to repeat what the lookup had decided.
    return request.app[TENANTS_BY_KEY].get(digest)


def _peer(request: web.Request) -> str:
    """The throttle's key for the client: its IPv4 address, or its IPv6 /64.

    One IPv6 host usually holds a whole /64, so per address it could rotate
    through 2**64 fresh throttle records.
    """
    return _throttle_key(request.remote or "")


@functools.lru_cache(maxsize=4096)
def _throttle_key(remote: str) -> str:
    """`_peer` of an address; cached: parsing it cost 16 us a request on the loaded machine."""
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return remote


async def read_body(request: web.Request) -> bytes:
    """The body, read within ``http.body_timeout`` (its size is capped by the app).

    A body already in whole (almost every one: it came with the headers) is taken with
    no timer: arming and cancelling one was a third of this read (py-spy).
    """
    if request.content.is_eof():
        return await request.read()
    try:
        async with asyncio.timeout(request.app[CONFIG].http.body_timeout):
            return await request.read()
    except TimeoutError:
        raise Problem(
            408, "request_timeout", "the body did not arrive within http.body_timeout", close=True
        ) from None


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object: read within ``http.body_timeout``, nesting capped.

    orjson reads it first (4.8 -> 1.0 us a single submit, 1.3 -> 0.7 ms a batch of 1,000,
    timeit), bounded by its own depth limit; the nesting of what it read is then measured
    on the objects (1 ms a batch, against 10 ms for `nests_deeper` on the text). What it
    refuses (UTF-16 text, NaN, integers beyond 64 bits, an escaped lone surrogate, or no
    JSON at all) goes the way every body went before: `nests_deeper`, then json.loads,
    which decides. So each body is taken or refused with the same answer as before.
    """
    raw = await read_body(request)
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        document = _read_json_text(raw)
    else:
        if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _nests_deeper(document):
            raise _too_deep()
    if not isinstance(document, dict):
        raise Problem(400, "invalid_request", "the request body must be a JSON object")
    return document


def _too_deep() -> Problem:
    return Problem(
        400, "invalid_json", f"the request body nests deeper than {MAX_JSON_DEPTH} levels"
    )


def _read_json_text(raw: bytes) -> object:
    """JSON text as json.loads reads it, once `nests_deeper` found it shallow enough."""
    if nests_deeper(raw, MAX_JSON_DEPTH):
        raise _too_deep()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, "invalid_json", "the request body is not valid JSON") from None


def _nests_deeper(document: object) -> bool:
    """Whether parsed JSON nests arrays and objects deeper than `MAX_JSON_DEPTH`, level by
    level (the same depth `nests_deeper` finds in the text)."""
    level = [document] if type(document) is dict or type(document) is list else []
    depth = 1
    while level:
        if depth > MAX_JSON_DEPTH:
            return True
        inner = []
        for node in level:
            for value in node.values() if type(node) is dict else node:
                if type(value) is dict or type(value) is list:
                    inner.append(value)
        level = inner
        depth += 1
    return False


def nests_deeper(raw: bytes, limit: int) -> bool:
    """Whether JSON text nests arrays and objects deeper than ``limit``, found without recursion.

    Strings are cut out (a bracket in a string is text) and the brackets that remain
    become "(" and ")" (json.loads checks that they pair up). The depth is then summed
    over runs of them; while there are very many runs (``[][][]...``), a pass first
    removes every innermost pair, one level, in C. Linear time, and some 0.1 s for the
    worst 4 MB.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING_RE.sub(b"", raw).translate(_AS_PARENS, _NOT_BRACKETS)
    while brackets.count(b"()") + brackets.count(b")(") > _MAX_RUNS:
        if limit == 0:
            return True
        brackets = brackets.replace(b"()", b"")
        limit -= 1
    depth = 0
    for run in _RUN_RE.finditer(brackets):
        if brackets[run.start()] == ord("("):
            depth += run.end() - run.start()
            if depth > limit:
                return True
        else:
            depth -= run.end() - run.start()
    return False


def check_fields(
    item: object,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    unchecked: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A JSON object with these text fields (optional ones may be null), the ``unchecked``
    ones of any type (the caller checks them), and no others."""
    if not isinstance(item, dict):
        raise Problem(400, "invalid_request", "expected a JSON object")
    unknown = sorted(set(item) - {*required, *optional, *unchecked})
    if unknown:
        # repr: an unknown name is echoed escaped, whatever it holds.
        raise Problem(400, "invalid_request", f"unknown field {unknown[0]!r}")
    for name in required:
        if not isinstance(item.get(name), str):
            raise Problem(400, "invalid_request", f"'{name}' is required and must be a string")
        check_text(item[name], name)
    for name in optional:
        if item.get(name) is not None:
            if not isinstance(item[name], str):
                raise Problem(400, "invalid_request", f"'{name}' must be a string")
            check_text(item[name], name)
    return item


def check_text(value: str, name: str) -> None:
    """Refuse a lone surrogate: JSON can carry one ("\\ud800"), UTF-8 (and SQLite) cannot."""
    if not value.isascii() and _SURROGATE_RE.search(value):
        raise Problem(
            400, "invalid_request", f"'{name}' is not valid text (it holds a lone surrogate)"
        )


def _submit_request(tenant: TenantConfig, item: object) -> SubmitRequest:
    """Check the shape of one message object; content is the pipeline's job."""
    item = check_fields(item, _REQUIRED_FIELDS, _OPTIONAL_FIELDS, _TIMING_FIELDS)
    return SubmitRequest(
        tenant=tenant,
        interface=Interface.HTTP,
        to=item["to"],
        sender=item["from"],
        body=item["body"],
        purpose=item.get("purpose"),
        callback_url=item.get("callback_url"),
        client_ref=item.get("client_ref"),
        send_at=send_at_param(item.get("send_at")),
        validity=validity_param(item.get("validity")),
    )


def send_at_param(raw: object) -> datetime | None:
    """``send_at``: an RFC 3339 time with its zone (``2026-12-01T15:00:00Z``), or null."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise Problem(400, "invalid_send_at", "'send_at' must be an RFC 3339 time, e.g. ...Z")
    return datetime.fromtimestamp(_rfc3339(raw, "send_at", "invalid_send_at"), UTC)


def validity_param(raw: object) -> timedelta | None:
    """``validity``: whole seconds (1 or more) from when the message is due, or null."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_VALIDITY:
        raise Problem(
            400, "invalid_validity", f"'validity' must be whole seconds, 1 to {MAX_VALIDITY}"
        )
    return timedelta(seconds=raw)


async def post_message(request: web.Request) -> web.Response:
    tenant = await authenticate(request)
    submit = _submit_request(tenant, await read_json(request))
    result = await request.app[SINGLE_SUBMITS].submit(submit)
    if isinstance(result, Rejected):
        raise rejection_problem(result)
    response = json_response(message_document(result), 202)
    response.headers["Location"] = f"/v1/messages/{result.id}"
    return response


async def post_batch(request: web.Request) -> web.Response:
    tenant = await authenticate(request)
    document = await read_json(request)
    items = document.get("messages")
    if set(document) != {"messages"} or not isinstance(items, list) or not items:
        raise Problem(400, "invalid_request", 'send {"messages": [...]} with at least one item')
    limit = request.app[CONFIG].http.max_batch
    if len(items) > limit:
        raise Problem(413, "payload_too_large", f"at most {limit} messages per batch")
    results: list[dict[str, Any] | None] = [None] * len(items)
    submits: list[SubmitRequest] = []
    positions: list[int] = []
    for index, item in enumerate(items):
        try:
            submits.append(_submit_request(tenant, item))
            positions.append(index)
        except Problem as problem:
            results[index] = {"index": index, "problem": problem.document()}
    outcomes = await request.app[PIPELINE].submit_many(submits)
    accepted = 0
    retry_after = 0
    for index, outcome in zip(positions, outcomes, strict=True):
        if isinstance(outcome, Message):
            accepted += 1
            results[index] = {"index": index, "message": message_document(outcome)}
        else:
            results[index] = {"index": index, "problem": rejection_problem(outcome).document()}
            if outcome.code is RejectCode.THROTTLED:
                retry_after = max(retry_after, retry_after_seconds(outcome))
    response = json_response(
        {"accepted": accepted, "rejected": len(items) - accepted, "results": results}
    )
    if retry_after:  # some items were throttled: when to send those again
        response.headers["Retry-After"] = str(retry_after)
    return response


async def post_inbound(request: web.Request) -> web.Response:
    """A simulated handset sends an SMS to one of the tenant's numbers."""
    tenant = await authenticate(request)
    document = check_fields(await read_json(request), ("from", "to", "body"))
    result = await request.app[PIPELINE].receive(
        tenant, document["from"], document["to"], document["body"]
    )
    if isinstance(result, Rejected):
        raise rejection_problem(result)
    return json_response(notice_document(result), 202)


async def get_message(request: web.Request) -> web.Response:
    tenant = await authenticate(request, operator_may_read=True)
    message_id = normalise_id(request.match_info["id"])
    message = await request.app[PIPELINE].message(tenant.id, message_id)
    if message is None:
        raise Problem(404, "not_found", "no such message for this tenant")
    return json_response(message_document(message))


async def cancel_message(request: web.Request) -> web.Response:
    """Withdraw a message that is not final yet (scheduled or on its way): it ends ``deleted``.

    Answered once that is committed, with the message as it is then.
    """
    tenant = await authenticate(request)
    pipeline = request.app[PIPELINE]
    message_id = normalise_id(request.match_info["id"])
    if await pipeline.message(tenant.id, message_id) is None:
        raise Problem(404, "not_found", "no such message for this tenant")
    rejected = await pipeline.cancel(tenant, message_id)
    if rejected is not None:
        if rejected.code is RejectCode.NOT_PENDING:
            raise Problem(409, "not_pending", "the message is final already")
        raise rejection_problem(rejected)
    message = await pipeline.message(tenant.id, message_id)
    assert message is not None
    return json_response(message_document(message))


async def list_messages(request: web.Request) -> web.Response:
    tenant = await authenticate(request, operator_may_read=True)
    query = request.query
    recipient = msisdn_param(query["to"], tenant) if "to" in query else None
    status = None
    if "status" in query:
        try:
            status = Status(query["status"])
        except ValueError:
            allowed = ", ".join(s.value for s in Status)
            raise Problem(400, "invalid_request", f"'status' must be one of {allowed}") from None
    since = id_floor(timestamp_param(query["since"], "since")) if "since" in query else None
    cursor = checked_cursor(query.get("cursor"), MESSAGE_ID_RE)
    limit = page_limit(query.get("limit"))
    messages = await request.app[PIPELINE].messages(
        tenant.id,
        recipient=recipient,
        status=status,
        since_id=since,
        before_id=cursor,
        limit=limit,
    )
    next_cursor = messages[-1].id if len(messages) == limit else None
    return json_response(
        {"messages": [message_document(m) for m in messages], "next_cursor": next_cursor}
    )


async def handset_messages(request: web.Request) -> web.Response:
    tenant = await authenticate(request, operator_may_read=True)
    msisdn = msisdn_param(request.match_info["msisdn"], tenant)
    limit = page_limit(request.query.get("limit"))
    entries = await request.app[PIPELINE].inbox(tenant.id, msisdn, limit)
    return json_response({"msisdn": msisdn, "messages": [inbox_document(e) for e in entries]})


async def list_inbound(request: web.Request) -> web.Response:
    """What handsets sent to this tenant's numbers (MO), newest first, paged like messages."""
    tenant = await authenticate(request, operator_may_read=True)
    cursor = checked_cursor(request.query.get("cursor"), MESSAGE_ID_RE)
    limit = page_limit(request.query.get("limit"))
    received = await request.app[PIPELINE].inbound(tenant.id, cursor, limit)
    next_cursor = received[-1].message_id if len(received) == limit else None
    return json_response(
        {"messages": [inbound_document(mo) for mo in received], "next_cursor": next_cursor}
    )


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    pipeline = request.app.get(PIPELINE)
    if pipeline is None:
        return json_response({"status": "starting"}, 503)
    if not await pipeline.ready():  # the database does not answer, or is not migrated
        return json_response({"status": "store_unavailable"}, 503)
    return json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


def msisdn_param(raw: str, tenant: TenantConfig) -> str:
    try:
        return normalise_msisdn(raw, tenant.default_country)
    except InvalidNumber as exc:
        raise Problem(400, "invalid_recipient", f"not a phone number: {exc}") from None


def timestamp_param(raw: str, name: str) -> float:
    """A time parameter as RFC 3339 (``2026-11-29T10:00:00Z``) or epoch seconds, ASCII only."""
    if not _EPOCH_RE.fullmatch(raw):
        return _rfc3339(raw, name, "invalid_request", " or epoch seconds")
    seconds = float(raw)
    if not 0 <= seconds < _MAX_TIMESTAMP:
        raise Problem(400, "invalid_request", f"'{name}' is out of range")
    return seconds


def _rfc3339(raw: str, name: str, code: str, alternative: str = "") -> float:
    """An RFC 3339 time with a zone (ASCII, at most 40 characters) in epoch seconds, or
    a 400 problem with ``code`` naming the field ``name``."""
    try:
        if not raw.isascii() or len(raw) > 40:
            raise ValueError(raw)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise Problem(400, code, f"'{name}' must be RFC 3339{alternative}") from None
    if moment.tzinfo is None:
        raise Problem(400, code, f"'{name}' needs a time zone, e.g. Z")
    seconds = moment.timestamp()
    if not 0 <= seconds < _MAX_TIMESTAMP:
        raise Problem(400, code, f"'{name}' is out of range")
    return seconds


def page_limit(raw: str | None) -> int:
    if raw is None:
        return 100
    if not _PAGE_RE.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE:
        raise Problem(400, "invalid_request", f"'limit' must be 1-{MAX_PAGE}")
    return int(raw)


def checked_cursor(raw: str | None, pattern: re.Pattern[str]) -> str | None:
    """A ``cursor`` query parameter, which must look like the next_cursor a page gave."""
    if raw is not None and not pattern.fullmatch(raw):
        raise Problem(400, "invalid_request", "'cursor' is not a cursor this API returned")
    return raw


def add_routes(app: web.Application) -> None:
    """The v1 routes, and the API key throttle they share."""
    http = app[CONFIG].http
    app[AUTH_THROTTLE] = GuessThrottle(
        http.failed_auth_delay, http.max_auth_delay, max_wait=http.max_auth_wait
    )
    app.router.add_post("/v1/messages", post_message)
    app.router.add_post("/v1/messages/batch", post_batch)
    app.router.add_get("/v1/messages", list_messages)
    app.router.add_get("/v1/messages/{id}", get_message)
    app.router.add_post("/v1/messages/{id}/cancel", cancel_message)
    app.router.add_get("/v1/simulator/handsets/{msisdn}/messages", handset_messages)
    app.router.add_post("/v1/simulator/inbound", post_inbound)
    app.router.add_get("/v1/inbound", list_inbound)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
