"""The web inbox's reads: handsets, threads, a message's segments, and search.

JSON routes of the tenant API (``/v1``), scoped by the API key like every other:
the browser page at ``/ui`` is their first client, but nothing in them is for the
page alone. Bodies appear only while the stores keep them (the outbox until a
message is final, the handset inbox and MO for ``privacy.body_ttl``); segments are
cut by the gateway's own encoding code, so the page holds no GSM 03.38 table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.documents import inbound_document, iso_time, message_document
from gateway.domain import HandsetSummary, Interface, Message, MessageFilter, MessageText, Status
from gateway.encoding import Encoding, gsm7_runs, part_units, split_parts
from gateway.ids import id_floor, normalise_id
from gateway.server.appkeys import PIPELINE
from gateway.server.http_api import (
    MESSAGE_ID_RE,
    Problem,
    authenticate,
    checked_cursor,
    json_response,
    msisdn_param,
    page_limit,
    timestamp_param,
)
from smpp.text import data_coding_of

# The errors a message ends with when a privacy gate stopped it on its way ("blocked").
BLOCKED_ERRORS = ("opted_out", "consent_withdrawn", "processing_restricted")
MAX_QUERY_TEXT = 200


def handset_document(summary: HandsetSummary) -> dict[str, Any]:
    return {
        "msisdn": summary.msisdn,
        "sent": summary.sent,
        "replies": summary.replies,
        "last": {
            "at": iso_time(summary.last_at),
            "direction": summary.last_direction,
            "body": summary.last_body,
        },
    }


def segments_document(message: Message, text: MessageText | None) -> dict[str, Any]:
    """How the message travels: each part's text and units, and what forced UCS-2."""
    document: dict[str, Any] = {
        "id": message.id,
        "encoding": message.encoding.value,
        "data_coding": data_coding_of(message.encoding, message.message_class),
        "class": message.message_class,
        "flash": message.message_class == 0,
        "segments": message.segments,
        "text": None if text is None else text.shown,
        "parts": [],
        "reference": None,
    }
    if text is None:
        return document
    if text.part is not None:  # the client cut the message: this id is one part of it
        numbered = [(text.part.seq, text.part.total, text.body)]
        document["reference"] = text.part.ref
    elif message.encoding is Encoding.BINARY:
        numbered = [(1, 1, text.body)]
    else:
        texts = split_parts(text.body, message.encoding)
        numbered = [(n, len(texts), part) for n, part in enumerate(texts, 1)]
    document["parts"] = [
        {
            "number": number,
            "of": total,
            "units": part_units(body, message.encoding),
            # Runs of text, each saying whether it fits GSM 03.38 ("gsm": false forced UCS-2).
            "runs": [{"text": run, "gsm": fits} for run, fits in gsm7_runs(body)]
            if message.encoding is not Encoding.BINARY
            else [{"text": body, "gsm": True}],
        }
        for number, total, body in numbered
    ]
    return document


async def list_handsets(request: web.Request) -> web.Response:
    tenant = await authenticate(request)
    limit = page_limit(request.query.get("limit"))
    summaries = await request.app[PIPELINE].handsets(tenant.id, limit)
    return json_response({"handsets": [handset_document(s) for s in summaries]})


async def handset_thread(request: web.Request) -> web.Response:
    """MT and MO of one handset, oldest first; parts delivered together are one item."""
    tenant = await authenticate(request)
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
    items.sort(key=lambda item: (item["at"], item["id"]))
    return json_response({"msisdn": msisdn, "items": items})


async def message_segments(request: web.Request) -> web.Response:
    tenant = await authenticate(request)
    message_id = normalise_id(request.match_info["id"])
    pipeline = request.app[PIPELINE]
    message = await pipeline.message(tenant.id, message_id)
    if message is None:
        raise Problem(404, "not_found", "no such message for this tenant")
    return json_response(segments_document(message, await pipeline.text(tenant.id, message)))


def _choice(query: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = query.get(name)
    if value is not None and value not in allowed:
        raise Problem(400, "invalid_request", f"'{name}' must be one of {', '.join(allowed)}")
    return value


def _flag(query: Mapping[str, str], name: str) -> bool:
    return _choice(query, name, ("true", "false")) == "true"


async def search_messages(request: web.Request) -> web.Response:
    """The flat list: the tenant's messages, newest first, each with its body if kept."""
    tenant = await authenticate(request)
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
    app.router.add_get("/v1/simulator/handsets", list_handsets)
    app.router.add_get("/v1/simulator/handsets/{msisdn}/thread", handset_thread)
    app.router.add_get("/v1/simulator/messages", search_messages)
    app.router.add_get("/v1/messages/{id}/segments", message_segments)
