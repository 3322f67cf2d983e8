"""The OpenAPI 3.1 description served at ``/openapi.json``.

Kept as data next to the routes; a test checks that every route registered in
the app is described here and nothing else is.
"""

from __future__ import annotations

from typing import Any

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_AUTH = [{"bearer": []}]


def _op(
    summary: str,
    ok: str,
    *,
    auth: bool = True,
    body: str | None = None,
    params: tuple[dict[str, Any], ...] = (),
    errors: tuple[str, ...] = (),
) -> dict[str, Any]:
    responses: dict[str, Any] = {ok: {"description": summary}}
    for status in ("400", "401", *errors) if auth else errors:
        responses[status] = _PROBLEM
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if auth:
        operation["security"] = _AUTH
    if params:
        operation["parameters"] = list(params)
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    return operation


def _param(name: str, where: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": {"type": "string"},
    }


_PATHS: dict[str, dict[str, Any]] = {
    "/v1/messages": {
        "post": _op(
            "Submit one message", "202", body="MessageRequest", errors=("413", "422", "503")
        ),
        "get": _op(
            "List this tenant's messages, newest first",
            "200",
            params=(
                _param("to", "query", "recipient, any common format"),
                _param("status", "query", "accepted, enroute, delivered, undeliverable, ..."),
                _param("since", "query", "RFC 3339 time or epoch seconds"),
                _param("limit", "query", "page size, 1-1000 (default 100)"),
                _param("cursor", "query", "next_cursor of the previous page"),
            ),
        ),
    },
    "/v1/messages/batch": {
        "post": _op(
            "Submit many messages; each item is accepted or rejected on its own",
            "200",
            body="BatchRequest",
            errors=("413", "503"),
        ),
    },
    "/v1/messages/{id}": {
        "get": _op(
            "One message of this tenant",
            "200",
            params=(_param("id", "path", "id"),),
            errors=("404",),
        ),
    },
    "/v1/simulator/handsets/{msisdn}/messages": {
        "get": _op(
            "What the simulated handset received from this tenant",
            "200",
            params=(
                _param("msisdn", "path", "phone number"),
                _param("limit", "query", "1-1000 (default 100)"),
            ),
        ),
    },
    "/v1/simulator/inbound": {
        "post": _op(
            "A simulated handset sends an SMS to one of this tenant's numbers (an MO message)",
            "202",
            body="InboundRequest",
        ),
    },
    "/healthz": {"get": _op("Liveness", "200", auth=False)},
    "/readyz": {"get": _op("Readiness: the store is open", "200", auth=False, errors=("503",))},
    "/metrics": {"get": _op("Prometheus metrics", "200", auth=False)},
    "/openapi.json": {"get": _op("This document", "200", auth=False)},
}

_SCHEMAS: dict[str, Any] = {
    "MessageRequest": {
        "type": "object",
        "required": ["to", "from", "body"],
        "additionalProperties": False,
        "properties": {
            "to": {"type": "string", "description": "E.164, 00-prefixed or national form"},
            "from": {"type": "string", "description": "one of the tenant's senders"},
            "body": {"type": "string"},
            "purpose": {"type": "string", "description": "default: the tenant's default_purpose"},
            "callback_url": {"type": "string", "description": "receives the final status"},
            "client_ref": {"type": "string", "maxLength": 64},
        },
    },
    "InboundRequest": {
        "type": "object",
        "required": ["from", "to", "body"],
        "additionalProperties": False,
        "properties": {
            "from": {"type": "string", "description": "the handset's number"},
            "to": {"type": "string", "description": "one of the tenant's senders"},
            "body": {"type": "string"},
        },
    },
    "BatchRequest": {
        "type": "object",
        "required": ["messages"],
        "properties": {
            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/MessageRequest"}}
        },
    },
    "Problem": {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "code": {"type": "string"},
            "detail": {"type": "string"},
        },
    },
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "smsgw", "version": "1"},
        "paths": _PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Problem": {
                    "description": "application/problem+json with a stable code",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                }
            },
        },
    }
