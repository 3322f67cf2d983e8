"""The web inbox's reads and actions on the tenant API (``/v1``).

What the browser inbox needs beyond the plain message and handset reads: the list
of the tenant's simulated handsets, a message's detail (status timeline, callback
attempts, the receipt an SMPP client got, the recipient's consent state), the
segments of a message or of a draft, a handset's thread (MT and MO joined, oldest
first), the flat list with its search filters, and two actions: force a pending message's
outcome (a test control, so it needs ``[simulator] allow_reset``, as resets and
chaos do) and re-send a final status callback (harmless to others: the tenant's
own allow-listed URL, bounded per tenant, so it needs no switch).

The read routes also answer an operator token with ``X-Smsgw-Tenant``
(`gateway.server.http_api.authenticate`); the actions never do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway.callbacks import CallbackAttempt, ResendRefused
from gateway.config import MessageIdFormat, Outcome, TenantConfig
from gateway.documents import handset_document, inbound_document, iso_time, message_document
from gateway.domain import Interface, Message, MessageFilter, Part, Status
from gateway.encoding import Encoding
from gateway.ids import id_floor, normalise_id
from gateway.segments import CONCATENATION_UDH_OCTETS, Breakdown, breakdown
from gateway.server.appkeys import CALLBACKS, CONFIG, PIPELINE, REGISTRY
from gateway.server.http_api import (
    MESSAGE_ID_RE,
    Problem,
    authenticate,
    check_fields,
    checked_cursor,
    json_response,
    msisdn_param,
    page_limit,
    read_json,
    rejection_problem,
    timestamp_param,
)
from gateway.server.http_privacy import state_document
from gateway.server.http_simulator import test_controls_allowed
from smpp.text import ReceiptFacts, data_coding_of, receipt_text
from smpp.translate import wire_id

# What POST /v1/messages/{id}/outcome takes: the network's outcomes, and "failed" for
# the common word (an unknown subscriber, as a rule's "undeliverable").
OUTCOMES: dict[str, Outcome] = {
    **{outcome.value: outcome for outcome in Outcome},
    "failed": Outcome.UNDELIVERABLE,
}
# The timeline's steps before the final one: a status and the row's time for it.
# A scheduled message's step is dated with the time it is due, which the inbox shows.
_STEPS: tuple[tuple[str, str], ...] = (
    ("accepted", "submitted_at"),
    ("scheduled", "send_at"),
    ("enroute", "enroute_at"),
)
# The errors a message ends with when a privacy gate stopped it on its way ("blocked").
BLOCKED_ERRORS = ("opted_out", "consent_withdrawn", "processing_restricted")
MAX_QUERY_TEXT = 200
_UNITS = {Encoding.GSM7: "septets", Encoding.UCS2: "utf16_units", Encoding.BINARY: "octets"}


async def list_handsets(request: web.Request) -> web.Response:
    """The tenant's handsets, most recently active first (``limit``, no cursor: a top list)."""
    tenant = await authenticate(request, operator_may_read=True)
    limit = page_limit(request.query.get("limit"))
    handsets = await request.app[PIPELINE].handsets(tenant.id, limit)
    return json_response({"handsets": [handset_document(h) for h in handsets]})


async def _message(request: web.Request, tenant: TenantConfig) -> Message:
    message_id = normalise_id(request.match_info["id"])
    message = await request.app[PIPELINE].message(tenant.id, message_id)
    if message is None:
        raise Problem(404, "not_found", "no such message for this tenant")
    return message


async def message_detail(request: web.Request) -> web.Response:
    tenant = await authenticate(request, operator_may_read=True)
    message = await _message(request, tenant)
    attempts = request.app[CALLBACKS].attempts(tenant.id, message.id)
    pseudonymised = message.pseudonym_epoch is not None
    consent = None
    if not pseudonymised:
        registry = request.app[REGISTRY]
        subject = registry.subject(tenant.id, message.recipient)
        [state] = await registry.states(tenant.id, [subject])
        consent = {
            **state_document(subject, state),
            "history_url": f"/v1/consents/{quote(message.recipient, safe='')}",
        }
    return json_response(
        {
            "message": message_document(message),
            "data_coding": data_coding_of(message.encoding, message.message_class),
            "timeline": timeline(message),
            "callbacks": {
                "callback_url": message.callback_url is not None,
                "attempts": [_attempt_document(a) for a in attempts],
            },
            "receipt": _receipt_document(message, tenant),
            "consent": consent,
            "pseudonym": {"pseudonym": message.recipient, "number_gone": True}
            if pseudonymised
            else None,
            "segments_url": f"/v1/messages/{message.id}/segments",
        }
    )


def timeline(message: Message) -> list[dict[str, Any]]:
    """Each step the message took, with its time; the final one with its error."""
    steps = [
        {"status": status, "at": iso_time(getattr(message, field)), "error": None}
        for status, field in _STEPS
        if getattr(message, field) is not None
    ]
    if message.status.is_final:
        steps.append(
            {
                "status": message.status.value,
                "at": iso_time(message.final_at),
                "error": message.error,
            }
        )
    return steps


def _attempt_document(attempt: CallbackAttempt) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "at": iso_time(attempt.at),
        "http_status": attempt.http_status,
        "error": attempt.error,
    }


def _receipt_document(message: Message, tenant: TenantConfig) -> dict[str, Any] | None:
    """The receipt's short_message as the SMPP client got it, rebuilt from the row.

    `receipt_text` is pure, so the row's id, status and times give the same text. A
    pseudonymised row's times were coarsened, so its receipt cannot be rebuilt.
    """
    if (
        message.interface is not Interface.SMPP
        or not message.status.is_final
        or not message.receipt.wants(message.status)
        or message.final_at is None
        or message.pseudonym_epoch is not None
    ):
        return None
    ids = tenant.smpp.message_id_format if tenant.smpp else MessageIdFormat.HEX
    receipted = wire_id(message.submission or message.id, ids)
    text = receipt_text(
        ReceiptFacts(receipted, message.status, message.submitted_at, message.final_at)
    )
    return {"receipted_message_id": receipted, "short_message": text.decode("ascii")}


async def message_segments(request: web.Request) -> web.Response:
    """The parts of a stored message, while its body is kept (on its way, or in the inbox)."""
    tenant = await authenticate(request, operator_may_read=True)
    message = await _message(request, tenant)
    item = await request.app[PIPELINE].body(message)
    if item is None:
        raise Problem(
            410, "body_gone", "the body is kept only on its way and in the inbox (body_ttl)"
        )
    binary = message.encoding is Encoding.BINARY
    document = segments_document(breakdown(item.body, binary=binary), request)
    document["message_id"] = message.id
    document["client_part"] = _part_document(item.part)
    return json_response(document)


async def draft_segments(request: web.Request) -> web.Response:
    """``{"text": ...}``: how a draft would travel, counted as a submit would count it."""
    await authenticate(request, operator_may_read=True)
    text = check_fields(await read_json(request), ("text",))["text"]
    return json_response(segments_document(breakdown(text), request))


def segments_document(parts: Breakdown, request: web.Request) -> dict[str, Any]:
    limit = request.app[CONFIG].messages.max_segments
    total = len(parts.segments)
    return {
        "encoding": parts.encoding.value,
        "units": parts.units,
        "unit": _UNITS[parts.encoding],
        "count": total,
        "max_segments": limit,
        "within_limit": total <= limit,
        "udh_octets": CONCATENATION_UDH_OCTETS if total > 1 else 0,
        "forcing_ucs2": [_char_document(c) for c in parts.forcing_ucs2],
        "segments": [
            {
                "seq": s.seq,
                "total": s.total,
                "text": s.text,
                "characters": len(s.text),
                "units": s.units,
                "forcing_ucs2": [_char_document(c) for c in s.forcing_ucs2],
            }
            for s in parts.segments
        ],
    }


def _char_document(char: str) -> dict[str, str]:
    return {"char": char, "code_point": f"U+{ord(char):04X}"}


def _part_document(part: Part | None) -> dict[str, int] | None:
    """The concatenation an SMPP client gave this message (UDH or sar_* TLVs), if any."""
    return None if part is None else {"ref": part.ref, "seq": part.seq, "total": part.total}


async def force_outcome(request: web.Request) -> web.Response:
    """``{"outcome": ...}``: end a pending message now; answered once the state is committed."""
    tenant = await test_controls_allowed(request)
    raw = check_fields(await read_json(request), ("outcome",))["outcome"]
    outcome = OUTCOMES.get(raw)
    if outcome is None:
        allowed = ", ".join(OUTCOMES)
        raise Problem(400, "invalid_request", f"'outcome' must be one of {allowed}")
    message_id = normalise_id(request.match_info["id"])
    rejected = await request.app[PIPELINE].force_outcome(tenant, message_id, outcome)
    if rejected is not None:
        raise rejection_problem(rejected)
    return json_response(message_document(await _message(request, tenant)))


async def resend_callback(request: web.Request) -> web.Response:
    """Queue the final status callback again (202: it goes out in the background)."""
    tenant = await authenticate(request)
    message = await _message(request, tenant)
    if message.callback_url is None:
        raise Problem(409, "no_callback_url", "the message was sent without a callback_url")
    if not message.status.is_final:
        raise Problem(409, "not_final", "the callback carries the final status, not there yet")
    try:
        request.app[CALLBACKS].resend(message)
    except ResendRefused as refused:
        status = 429 if refused.code == "throttled" else 409
        raise Problem(status, refused.code, str(refused)) from None
    return json_response({"queued": True, "message_id": message.id}, 202)


async def handset_thread(request: web.Request) -> web.Response:
    """MT, MO and refused submits of one handset, oldest first; parts delivered together
    are one item."""
    tenant = await authenticate(request, operator_may_read=True)
    msisdn = msisdn_param(request.match_info["msisdn"], tenant)
    limit = page_limit(request.query.get("limit"))
    thread = await request.app[PIPELINE].thread(tenant.id, msisdn, limit)
    joined = {entry.message_ids[0]: entry for entry in thread.received}
    later_parts = {id for entry in thread.received for id in entry.message_ids[1:]}
    items: list[dict[str, Any]] = []
    for message in thread.messages:
        if message.id in later_parts:
            continue
        entry = joined.get(message.id)
        pending = thread.pending.get(message.id)
        items.append(
            {
                "direction": "mt",
                **message_document(message),
                "body": entry.body if entry else pending[0] if pending else None,
                "message_ids": list(entry.message_ids) if entry else [message.id],
                "at": iso_time(message.submitted_at),
            }
        )
    for mo in thread.replies:
        items.append({"direction": "mo", **inbound_document(mo), "at": iso_time(mo.received_at)})
    for attempt in thread.blocked:  # as its message.blocked event named it: no id, no body
        items.append(
            {
                "direction": "blocked",
                "to": attempt.recipient,
                "from": attempt.sender,
                "interface": attempt.interface.value,
                "code": attempt.code.value,
                "at": iso_time(attempt.at),
            }
        )
    items.sort(key=lambda item: (item["at"], item.get("id", "")))
    return json_response({"msisdn": msisdn, "items": items})


def _choice(query: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = query.get(name)
    if value is not None and value not in allowed:
        raise Problem(400, "invalid_request", f"'{name}' must be one of {', '.join(allowed)}")
    return value


def _flag(query: Mapping[str, str], name: str) -> bool:
    return _choice(query, name, ("true", "false")) == "true"


async def search_messages(request: web.Request) -> web.Response:
    """The flat list: the tenant's messages, newest first, each with its body if kept."""
    tenant = await authenticate(request, operator_may_read=True)
    query = request.query
    text = query.get("q") or None
    if text is not None and len(text) > MAX_QUERY_TEXT:
        raise Problem(400, "invalid_request", f"'q' is at most {MAX_QUERY_TEXT} characters")
    status = _choice(query, "status", tuple(s.value for s in Status))
    until = query.get("until")
    narrow = MessageFilter(
        interface=_choice(query, "interface", tuple(i.value for i in Interface)),
        encoding=_choice(query, "encoding", tuple(e.value for e in Encoding)),
        multipart=_flag(query, "multipart"),
        until_id=id_floor(timestamp_param(until, "until")) if until else None,
        errors=BLOCKED_ERRORS if _flag(query, "blocked") else None,
    )
    since = query.get("since")
    limit = page_limit(query.get("limit"))
    pipeline = request.app[PIPELINE]
    messages = await pipeline.messages(
        tenant.id,
        text=text,
        recipient=msisdn_param(query["to"], tenant) if query.get("to") else None,
        status=Status(status) if status else None,
        since_id=id_floor(timestamp_param(since, "since")) if since else None,
        before_id=checked_cursor(query.get("cursor"), MESSAGE_ID_RE),
        limit=limit,
        narrow=narrow,
    )
    bodies = await pipeline.texts(tenant.id, [m.id for m in messages])
    return json_response(
        {
            "messages": [{**message_document(m), "body": bodies.get(m.id)} for m in messages],
            "next_cursor": messages[-1].id if len(messages) == limit else None,
        }
    )


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/v1/simulator/handsets", list_handsets)
    router.add_get("/v1/simulator/handsets/{msisdn}/thread", handset_thread)
    router.add_get("/v1/simulator/messages", search_messages)
    router.add_get("/v1/messages/{id}/detail", message_detail)
    router.add_get("/v1/messages/{id}/segments", message_segments)
    router.add_post("/v1/segments", draft_segments)
    router.add_post("/v1/messages/{id}/outcome", force_outcome)
    router.add_post("/v1/messages/{id}/callbacks", resend_callback)
