"""Twilio's Programmable Messaging API (2010-04-01 Messages), one more front end.

The official ``twilio`` SDK, pointed at smsgw (docs/twilio.md), sends, fetches,
lists, cancels, redacts and deletes messages here unchanged. Requests are
form-encoded and authenticated with HTTP Basic (Account SID and auth token, or an
API key SID and secret) under the same guess throttle as API keys; they become
`SubmitRequest`s for the one pipeline, so the consent gates, the restriction
gate and the tenant's rate limit are the same ones. Every error, ours included,
answers in Twilio's shape ``{code, message, more_info, status}``; the pure
mappings live in `gateway.twilio`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import BasicAuth, web

from gateway.config import TenantConfig, TwilioConfig
from gateway.domain import Interface, Message, RejectCode, Rejected, Status, SubmitRequest
from gateway.ids import id_floor
from gateway.numbers import InvalidNumber, is_numeric_address, is_short_code, normalise_msisdn
from gateway.server.appkeys import CONFIG, PIPELINE, SINGLE_SUBMITS
from gateway.server.http_api import (
    Problem,
    json_response,
    read_body,
    retry_after_seconds,
    throttled_check,
)
from gateway.twilio import (
    AUTHENTICATION,
    BAD_SEND_AT,
    BODY_REQUIRED,
    BODY_TOO_LONG,
    FROM_REQUIRED,
    INVALID_CALLBACK,
    INVALID_FROM,
    INVALID_PARAMETER,
    INVALID_TO,
    MAX_BODY_CHARACTERS,
    NOT_CANCELABLE,
    NOT_FINAL,
    NOT_FOUND,
    PAGE_TOKEN_PREFIX,
    REJECTION_ERRORS,
    TEST_FROM_ERRORS,
    TEST_TO_ERRORS,
    THROTTLED,
    TO_REQUIRED,
    TwilioError,
    account_path,
    message_id_of,
    message_resource,
    message_sid,
)

# Username (Account SID or API key SID) -> the tenant it authenticates.
TWILIO_USERS = web.AppKey("twilio_users", dict[str, TenantConfig])

MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
MESSAGE_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json"
MAX_FORM_FIELDS = 64
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_PAGE_RE = re.compile(r"[0-9]{1,6}")
_SERVICE_RE = re.compile(r"MG[0-9a-fA-F]{32}")
_ALPHANUMERIC_RE = re.compile(r"[A-Za-z0-9 ._-]{1,11}")
_DAY = 86400.0
_MAX_TIMESTAMP = 1e11  # year 5138: beyond it, ids (milliseconds, 12 hex digits) overflow
# Twilio's longest ValidityPeriod, in seconds (10 hours); messages.max_validity caps it too.
MAX_VALIDITY_PERIOD = 36_000
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# The list filters, in the order next_page_uri repeats them.
_FILTERS = ("To", "From", "DateSent", "DateSent<", "DateSent>")
# Edge errors raised as our problems (guess throttle, body timeout...), in Twilio's words.
_EDGE_ERRORS: dict[int, TwilioError] = {401: AUTHENTICATION, 404: NOT_FOUND, 429: THROTTLED}

Form = dict[str, str]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TwilioProblem(Problem):
    """An error answered as Twilio does: ``{code, message, more_info, status}``."""

    content_type = "application/json"

    def __init__(
        self, error: TwilioError, detail: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(error.status, f"twilio_{error.code}", detail or "", headers=headers)
        self.error = error

    def document(self) -> dict[str, Any]:
        return self.error.document(self.detail or None)


def _twilio_errors(handler: Handler) -> Handler:
    """Answer the problems raised below the handler (throttle, timeouts) in Twilio's shape."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except TwilioProblem:
            raise
        except Problem as problem:
            raise TwilioProblem(
                _edge_error(problem.status, problem.code), problem.detail, problem.headers
            ) from None
        except web.HTTPException as exc:  # aiohttp's own, such as 413 for a body too large
            if exc.status < 400:
                raise
            raise TwilioProblem(_edge_error(exc.status, exc.reason), exc.reason) from None

    return wrapped


def _edge_error(status: int, reason: str) -> TwilioError:
    """Twilio's code for an HTTP status (20003, 20404, 20429), else 20000 + the status."""
    return _EDGE_ERRORS.get(status) or TwilioError(20000 + status, status, reason.replace("_", " "))


# --- authentication ------------------------------------------------------------------


async def _authenticate(request: web.Request) -> tuple[TenantConfig, TwilioConfig]:
    """The tenant whose Account SID (or API key SID) and secret are in HTTP Basic auth.

    The path's AccountSid must then be the tenant's: another account's is not found.
    """
    tenant = await throttled_check(
        request,
        _tenant_of_credentials,
        lambda: TwilioProblem(
            AUTHENTICATION, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'}
        ),
    )
    twilio = tenant.twilio
    assert twilio is not None  # only tenants with a twilio table are in TWILIO_USERS
    if request.match_info["AccountSid"] != twilio.account_sid:
        raise TwilioProblem(NOT_FOUND, "no such account")
    return tenant, twilio


def _tenant_of_credentials(request: web.Request) -> TenantConfig | None:
    header = request.headers.get("Authorization", "")
    try:
        credentials = BasicAuth.decode(header, encoding="utf-8")
    except ValueError:
        return None
    tenant = request.app[TWILIO_USERS].get(credentials.login)
    if tenant is None or tenant.twilio is None:
        return None
    digest = hashlib.sha256(credentials.password.encode("utf-8", "surrogateescape")).digest()
    known = tenant.twilio.secret_digests(credentials.login)
    return tenant if any(hmac.compare_digest(digest, k) for k in known) else None


# --- reading requests ----------------------------------------------------------------


async def _read_form(request: web.Request) -> Form:
    """A form-encoded body as UTF-8 text fields, at most `MAX_FORM_FIELDS` of them.

    The first of repeated fields counts. Strict UTF-8 refuses an encoded lone
    surrogate, which the store could not hold.
    """
    raw = await read_body(request)
    try:
        pairs = parse_qsl(
            raw.decode("ascii"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise TwilioProblem(
            INVALID_PARAMETER, f"send at most {MAX_FORM_FIELDS} form-encoded UTF-8 fields"
        ) from None
    form: Form = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


def _message_id(request: web.Request) -> str:
    message_id = message_id_of(request.match_info["Sid"])
    if message_id is None:
        raise TwilioProblem(NOT_FOUND, "no such message")
    return message_id


async def _message(request: web.Request, tenant: TenantConfig) -> Message:
    message = await request.app[PIPELINE].message(tenant.id, _message_id(request))
    if message is None:
        raise TwilioProblem(NOT_FOUND, "no such message")
    return message


def _rejection(rejection: Rejected, sender: str = "") -> TwilioProblem:
    """A pipeline rejection in Twilio's words (a sender that is no address at all: 21212)."""
    error = REJECTION_ERRORS[rejection.code]
    headers = None
    if rejection.code is RejectCode.THROTTLED:
        headers = {"Retry-After": str(retry_after_seconds(rejection))}
    elif rejection.code is RejectCode.UNKNOWN_SENDER and not _is_address(sender):
        error = INVALID_FROM
    return TwilioProblem(error, rejection.detail, headers)


def _is_address(sender: str) -> bool:
    if is_short_code(sender):
        return True
    if not is_numeric_address(sender):
        return _ALPHANUMERIC_RE.fullmatch(sender) is not None
    try:
        normalise_msisdn(sender)
    except InvalidNumber:
        return False
    return True


# --- Messages.json -------------------------------------------------------------------


@_twilio_errors
async def create_message(request: web.Request) -> web.Response:
    tenant, twilio = await _authenticate(request)
    form = await _read_form(request)
    to, body = form.get("To", ""), form.get("Body", "")
    if not to:
        raise TwilioProblem(TO_REQUIRED)
    service = form.get("MessagingServiceSid") or None
    if service is not None and not _SERVICE_RE.fullmatch(service):
        raise TwilioProblem(INVALID_PARAMETER, "'MessagingServiceSid' is not a MG sid")
    # A Messaging Service's sender pool is the tenant's senders: the first one sends.
    sender = form.get("From") or (tenant.senders[0] if service else "")
    if not sender:
        raise TwilioProblem(FROM_REQUIRED)
    if not body:
        raise TwilioProblem(BODY_REQUIRED)
    if len(body) > MAX_BODY_CHARACTERS:
        raise TwilioProblem(BODY_TOO_LONG)
    if twilio.test_numbers:
        _test_number_error(tenant, sender, to)
    callback = form.get("StatusCallback") or None
    if callback is not None and not twilio.can_sign:
        raise TwilioProblem(
            INVALID_CALLBACK, "twilio.auth_token is a sha256: digest, which cannot sign callbacks"
        )
    send_at, validity = _schedule(form)
    submit = SubmitRequest(
        tenant,
        Interface.TWILIO,
        to,
        sender,
        body,
        callback_url=callback,
        send_at=send_at,
        validity=validity,
    )
    result = await request.app[SINGLE_SUBMITS].submit(submit)
    if isinstance(result, Rejected):
        raise _rejection(result, sender)
    resource = message_resource(
        result, twilio.account_sid, body=body, messaging_service_sid=service
    )
    return json_response(resource, 201)


def _schedule(form: Form) -> tuple[datetime | None, timedelta | None]:
    """``SendAt`` (with ``ScheduleType=fixed``) and ``ValidityPeriod`` for the pipeline.

    A past SendAt sends at once, and Twilio's 15-minute minimum and 35-day maximum are
    not enforced: a simulator's tests may schedule a few seconds ahead.
    """
    raw_send_at, schedule_type = form.get("SendAt"), form.get("ScheduleType")
    send_at = None
    if raw_send_at or schedule_type:
        if schedule_type != "fixed" or not raw_send_at:
            raise TwilioProblem(INVALID_PARAMETER, "send 'SendAt' with 'ScheduleType=fixed'")
        try:
            if not raw_send_at.isascii() or len(raw_send_at) > 40:
                raise ValueError(raw_send_at)
            send_at = datetime.fromisoformat(raw_send_at)
        except ValueError:
            raise TwilioProblem(BAD_SEND_AT, "'SendAt' must be an ISO 8601 time") from None
        if send_at.tzinfo is None or not 0 <= send_at.timestamp() < _MAX_TIMESTAMP:
            raise TwilioProblem(BAD_SEND_AT, "'SendAt' needs a zone (Z) and a sane year")
        send_at = send_at.astimezone(UTC)
    validity = None
    if (raw := form.get("ValidityPeriod")) is not None:
        if not _PAGE_RE.fullmatch(raw) or not 1 <= int(raw) <= MAX_VALIDITY_PERIOD:
            raise TwilioProblem(
                INVALID_PARAMETER, f"'ValidityPeriod' must be 1-{MAX_VALIDITY_PERIOD} seconds"
            )
        validity = timedelta(seconds=int(raw))
    return send_at, validity


def _test_number_error(tenant: TenantConfig, sender: str, to: str) -> None:
    """Twilio's magic test numbers: each one's error, as Twilio's test credentials give it."""
    for raw, errors in ((sender, TEST_FROM_ERRORS), (to, TEST_TO_ERRORS)):
        try:
            number = normalise_msisdn(raw, tenant.default_country)
        except InvalidNumber:
            continue  # not a number: the pipeline says what is wrong with it
        if number in errors:
            raise TwilioProblem(errors[number], "a Twilio magic test number")


@_twilio_errors
async def list_messages(request: web.Request) -> web.Response:
    tenant, twilio = await _authenticate(request)
    query = request.query
    pipeline = request.app[PIPELINE]
    recipient = None
    if query.get("To"):
        try:
            recipient = normalise_msisdn(query["To"], tenant.default_country)
        except InvalidNumber as exc:
            raise TwilioProblem(INVALID_TO, str(exc)) from None
    sender = None
    if query.get("From"):
        sender = pipeline.sender_of(tenant, query["From"]) or query["From"]
    since, before = _date_bounds(query)
    size = _number(query.get("PageSize"), "PageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    page = _number(query.get("Page"), "Page", 0, 0, 10**6)
    token = query.get("PageToken")
    if token is not None:
        cursor = message_id_of(token.removeprefix(PAGE_TOKEN_PREFIX))
        if not token.startswith(PAGE_TOKEN_PREFIX) or cursor is None:
            raise TwilioProblem(INVALID_PARAMETER, "'PageToken' is not one this API returned")
        before = min(before, cursor) if before else cursor
    elif page:
        raise TwilioProblem(INVALID_PARAMETER, "a 'Page' after the first needs its 'PageToken'")
    found = await pipeline.messages(
        tenant.id,
        recipient=recipient,
        sender=sender,
        since_id=since,
        before_id=before,
        limit=size + 1,  # one more than a page: is there a next one?
    )
    messages = found[:size]
    path = f"{account_path(twilio.account_sid)}/Messages.json"
    filters = {name: query[name] for name in _FILTERS if query.get(name)}
    first = f"{path}?{urlencode({**filters, 'PageSize': size, 'Page': 0})}"
    next_uri = None
    if len(found) > size:
        last = PAGE_TOKEN_PREFIX + message_sid(messages[-1].id)
        next_query = {**filters, "PageSize": size, "Page": page + 1, "PageToken": last}
        next_uri = f"{path}?{urlencode(next_query)}"
    this_query = {
        **filters,
        "PageSize": size,
        "Page": page,
        **({"PageToken": token} if token else {}),
    }
    start = page * size
    return json_response(
        {
            "messages": [message_resource(m, twilio.account_sid) for m in messages],
            "end": start + max(len(messages) - 1, 0),
            "first_page_uri": first,
            "next_page_uri": next_uri,
            "page": page,
            "page_size": size,
            "previous_page_uri": None,
            "start": start,
            "uri": f"{path}?{urlencode(this_query)}",
        }
    )


def _date_bounds(query: Mapping[str, str]) -> tuple[str | None, str | None]:
    """``DateSent`` (its UTC day: the SDK sends a date as its midnight), ``DateSent>``
    (on or after) and ``DateSent<`` (on or before) as id bounds: ids are time-ordered."""
    since: float | None = None
    before: float | None = None
    if query.get("DateSent"):
        moment, _ = _moment(query["DateSent"], "DateSent")
        since = moment - moment % _DAY
        before = since + _DAY
    if query.get("DateSent>"):
        after, _ = _moment(query["DateSent>"], "DateSent>")
        since = max(since, after) if since is not None else after
    if query.get("DateSent<"):
        until, span = _moment(query["DateSent<"], "DateSent<")
        before = min(before, until + span) if before is not None else until + span
    return (
        id_floor(since) if since is not None else None,
        id_floor(before) if before is not None else None,
    )


def _moment(raw: str, name: str) -> tuple[float, float]:
    """A date (``2026-12-01``: the day) or an ISO 8601 time with zone (one second)."""
    try:
        if _DATE_RE.fullmatch(raw):
            day = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
            return day.timestamp(), _DAY
        if not raw.isascii() or len(raw) > 40:
            raise ValueError(name)
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            raise ValueError(name)
    except ValueError:
        raise TwilioProblem(
            INVALID_PARAMETER, f"'{name}' must be YYYY-MM-DD or an ISO 8601 time with a zone"
        ) from None
    if not 0 <= moment.timestamp() < _MAX_TIMESTAMP:
        raise TwilioProblem(INVALID_PARAMETER, f"'{name}' is out of range")
    return moment.timestamp(), 1.0


def _number(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    if not _PAGE_RE.fullmatch(raw) or not low <= int(raw) <= high:
        raise TwilioProblem(INVALID_PARAMETER, f"'{name}' must be {low}-{high}")
    return int(raw)


# --- Messages/{Sid}.json -------------------------------------------------------------


@_twilio_errors
async def fetch_message(request: web.Request) -> web.Response:
    tenant, twilio = await _authenticate(request)
    return json_response(message_resource(await _message(request, tenant), twilio.account_sid))


@_twilio_errors
async def update_message(request: web.Request) -> web.Response:
    """``Status=canceled`` cancels a message not sent yet; ``Body=""`` redacts one."""
    tenant, twilio = await _authenticate(request)
    form = await _read_form(request)
    message = await _message(request, tenant)
    pipeline = request.app[PIPELINE]
    if "Status" in form:
        if form["Status"] != "canceled":
            raise TwilioProblem(INVALID_PARAMETER, "'Status' can only be canceled")
        if message.status not in (Status.ACCEPTED, Status.SCHEDULED):
            raise TwilioProblem(NOT_CANCELABLE, "only a message not sent yet")
        rejected = await pipeline.cancel(tenant, message.id)
        if rejected is not None and rejected.code is RejectCode.NOT_PENDING:
            raise TwilioProblem(NOT_CANCELABLE, "it was sent already")
        if rejected is not None:
            raise _rejection(rejected)
        message = await _message(request, tenant)
    if "Body" in form:
        if form["Body"]:
            raise TwilioProblem(INVALID_PARAMETER, "'Body' can only be emptied (a redaction)")
        redacted = await pipeline.redact(tenant, message.id)
        if isinstance(redacted, Rejected):
            raise _final_only(redacted)
        message = redacted
    if "Status" not in form and "Body" not in form:
        raise TwilioProblem(INVALID_PARAMETER, "send 'Body' (empty) or 'Status' (canceled)")
    return json_response(message_resource(message, twilio.account_sid))


@_twilio_errors
async def delete_message(request: web.Request) -> web.Response:
    """Forget a final message: its row in the traffic log and the body a handset holds."""
    tenant, _ = await _authenticate(request)
    message = await _message(request, tenant)
    rejected = await request.app[PIPELINE].forget(tenant, message.id)
    if rejected is not None:
        raise _final_only(rejected)
    return web.Response(status=204)


def _final_only(rejection: Rejected) -> TwilioProblem:
    if rejection.code is RejectCode.NOT_PENDING:
        return TwilioProblem(NOT_FINAL, "only a message in a final state")
    return _rejection(rejection)


def add_routes(app: web.Application) -> None:
    users: dict[str, TenantConfig] = {}
    for tenant in app[CONFIG].tenants:
        if tenant.twilio is not None:
            users[tenant.twilio.account_sid] = tenant
            users.update(dict.fromkeys(tenant.twilio.api_keys, tenant))
    app[TWILIO_USERS] = users
    app.router.add_post(MESSAGES_PATH, create_message)
    app.router.add_get(MESSAGES_PATH, list_messages)
    app.router.add_get(MESSAGE_PATH, fetch_message)
    app.router.add_post(MESSAGE_PATH, update_message)
    app.router.add_delete(MESSAGE_PATH, delete_message)
