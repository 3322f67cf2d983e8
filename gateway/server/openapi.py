"""The OpenAPI 3.1 description served at ``/openapi.json``.

Kept as data next to the routes; a test checks that every route registered in
the app is described here and nothing else is, and that the bounds stated for
``limit`` are the ones the handlers enforce. Patterns and lengths are those the
handlers check (the msisdn pattern is the plain ASCII form; the handlers also
fold full-width digits and no-break spaces).
"""

from __future__ import annotations

from typing import Any

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]
# Any operation with an API key: 401 for a wrong one, 429 once an address sent too many.
_AUTH_ERRORS = ("400", "401", "429")
MSISDN_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": r"^\+?[0-9][0-9 ().\-]*$",
    "maxLength": 64,
}
# The longest ``validity`` accepted (ten years; messages.max_validity caps it further).
MAX_VALIDITY = 10 * 365 * 86400
PAGE_LIMIT: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}


def _op(
    summary: str,
    ok: str,
    *,
    auth: bool = True,
    body: str | None = None,
    params: tuple[dict[str, Any], ...] = (),
    errors: tuple[str, ...] = (),
    returns: str | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {ok: {"description": summary}}
    if returns:
        schema = {"$ref": f"#/components/schemas/{returns}"}
        responses[ok]["content"] = {"application/json": {"schema": schema}}
    # A body that does not arrive within http.body_timeout is answered 408.
    for status in (*(_AUTH_ERRORS if auth else ()), *(("408",) if body else ()), *errors):
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


def _param(
    name: str, where: str, description: str, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _cursor(pattern: str) -> dict[str, Any]:
    return _param(
        "cursor",
        "query",
        "next_cursor of the previous page",
        {
            "type": "string",
            "pattern": pattern,
        },
    )


_MSISDN = _param("msisdn", "path", "phone number, any accepted form", MSISDN_SCHEMA)
_SENDER = _param("sender", "query", "limit to one of the tenant's senders")
_LIMIT = _param("limit", "query", "page size", PAGE_LIMIT)
_ID = _param("id", "path", "id")

_PATHS: dict[str, dict[str, Any]] = {
    "/v1/messages": {
        "post": _op(
            "Submit one message (send_at: scheduled until then)",
            "202",
            body="MessageRequest",
            errors=("413", "422", "503"),
            returns="Message",
        ),
        "get": _op(
            "List this tenant's messages, newest first",
            "200",
            params=(
                _param("to", "query", "recipient, any common format", MSISDN_SCHEMA),
                _param("status", "query", "accepted, scheduled, enroute, delivered, expired, ..."),
                _param(
                    "since",
                    "query",
                    "RFC 3339 time with a zone (2026-11-29T10:00:00Z) or epoch seconds",
                    {"type": "string", "maxLength": 40},
                ),
                _LIMIT,
                _cursor("^[0-9a-f]{20}$"),
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
            returns="Message",
        ),
    },
    "/v1/messages/{id}/cancel": {
        "post": _op(
            "Withdraw a message that is not final yet (scheduled or on its way): it ends"
            " deleted, and a scheduled one never reaches the handset. 409 not_pending if"
            " it is final already",
            "200",
            params=(_param("id", "path", "id"),),
            errors=("404", "409", "503"),
            returns="Message",
        ),
    },
    "/v1/simulator/handsets/{msisdn}/messages": {
        "get": _op(
            "What the simulated handset received from this tenant",
            "200",
            params=(_MSISDN, _LIMIT),
        ),
        "delete": _op(
            "Empty the handset's inbox (needs [simulator] allow_reset; audited)",
            "200",
            params=(_MSISDN,),
            errors=("403",),
        ),
    },
    "/v1/simulator/handsets": {
        "delete": _op(
            "Empty every handset inbox of this tenant (needs [simulator] allow_reset; audited)",
            "200",
            errors=("403",),
        ),
    },
    "/v1/simulator/handsets/{msisdn}/thread": {
        "get": _op(
            "The handset's conversation, oldest first: messages from this tenant (direction"
            " mt, with status, and the body while kept; parts delivered together are one"
            " item), its replies (direction mo) and the refused submits to it still kept"
            " in memory (direction blocked: to, from, interface, code, at; no body)",
            "200",
            params=(_MSISDN, _LIMIT),
        ),
    },
    "/v1/simulator/messages": {
        "get": _op(
            "Search this tenant's messages, newest first, each with its body while kept",
            "200",
            params=(
                _param(
                    "q",
                    "query",
                    "text in the body (any case)",
                    {"type": "string", "maxLength": 200},
                ),
                _param("to", "query", "recipient, any common format", MSISDN_SCHEMA),
                _param("status", "query", "accepted, enroute, delivered, undeliverable, ..."),
                _param("interface", "query", "http, smpp, twilio, system"),
                _param("encoding", "query", "gsm7, ucs2, binary"),
                _param("multipart", "query", "true: only messages of more than one segment"),
                _param(
                    "blocked",
                    "query",
                    "true: only messages an opt-out, withdrawn consent or restriction stopped",
                ),
                _param("since", "query", "from this time (RFC 3339 or epoch seconds)"),
                _param("until", "query", "before this time (RFC 3339 or epoch seconds)"),
                _LIMIT,
                _cursor("^[0-9a-f]{20}$"),
            ),
        ),
    },
    "/v1/simulator/reset": {
        "post": _op(
            "Clear this tenant's inboxes, MO, kept notices and messages on their way, and"
            " optionally its traffic log and consent records (needs [simulator] allow_reset;"
            " audited)",
            "200",
            body="ResetRequest",
            errors=("403",),
        ),
    },
    "/v1/simulator/inbound": {
        "post": _op(
            "A simulated handset sends an SMS to one of this tenant's numbers (an MO message)",
            "202",
            body="InboundRequest",
        ),
    },
    "/v1/simulator/chaos": {
        "get": _op("This tenant's run-time chaos settings (all zero: none)", "200"),
        "put": _op(
            "Replace this tenant's chaos settings ({} turns it off); answers them",
            "200",
            body="ChaosSettings",
        ),
        "delete": _op("Turn this tenant's chaos off; answers the settings now (none)", "200"),
    },
    "/v1/inbound": {
        "get": _op(
            "What handsets sent to this tenant's numbers (MO), newest first, with keyword marks",
            "200",
            params=(_LIMIT, _cursor("^[0-9a-f]{20}$")),
        ),
    },
    "/v1/consents": {
        "get": _op(
            "This tenant's consent records, one per subject (pseudonym), in pages",
            "200",
            params=(_cursor("^p1:[0-9a-f]{32}$"), _LIMIT),
        ),
    },
    "/v1/consents/{msisdn}": {
        "put": _op("Record consent for a purpose", "200", params=(_MSISDN,), body="Consent"),
        "get": _op("Current state and full history", "200", params=(_MSISDN,)),
        "delete": _op(
            "Withdraw consent for a purpose",
            "200",
            params=(_MSISDN, _param("purpose", "query", "required"), _SENDER),
        ),
    },
    "/v1/opt-outs": {
        "post": _op(
            "Import opt-outs in bulk (up to 10,000)", "200", body="OptOutImport", errors=("413",)
        ),
    },
    "/v1/opt-outs/{msisdn}": {
        "get": _op("Whether the number opted out", "200", params=(_MSISDN,)),
        "delete": _op("Lift an opt-out", "200", params=(_MSISDN, _SENDER)),
    },
    "/v1/audit": {
        "get": _op(
            "This tenant's audit log, newest first (hash-chained)",
            "200",
            params=(_cursor("^[0-9]{1,18}$"), _LIMIT),
        ),
    },
    "/v1/subjects/{msisdn}/export": {
        "get": _op(
            "Everything held about this number within the tenant, as one document",
            "200",
            params=(_MSISDN,),
        ),
    },
    "/v1/subjects/{msisdn}/erase": {
        "post": _op(
            "Erase the subject's data (a suppression entry stays if it opted out)",
            "200",
            params=(_MSISDN,),
        ),
    },
    "/v1/subjects/{msisdn}/restriction": {
        "put": _op("Restrict processing: every submit is refused", "200", params=(_MSISDN,)),
        "delete": _op("Lift the restriction", "200", params=(_MSISDN,)),
    },
    "/v1/subjects/{msisdn}/objection": {
        "post": _op("Object: an opt-out of every purpose", "200", params=(_MSISDN,)),
    },
    "/v1/events": {
        "get": _op(
            "This tenant's live event stream (text/event-stream, Server-Sent Events)",
            "200",
            params=(
                _param(
                    "Last-Event-ID",
                    "header",
                    "resume after this event id (what the last event's id line said)",
                    {"type": "string", "pattern": "^[0-9]{1,18}$"},
                ),
                _param(
                    "after",
                    "query",
                    "resume after this event id; 'now' (the default) for new events only",
                    {"type": "string", "pattern": "^([0-9]{1,18}|now)$"},
                ),
            ),
        ),
    },
    "/": {"get": _op("Redirects to the web inbox (/ui/)", "302", auth=False)},
    "/ui": {"get": _op("Redirects to the web inbox (/ui/)", "302", auth=False)},
    "/ui/": {"get": _op("The web inbox (HTML; its API calls use this API)", "200", auth=False)},
    "/ui/{file}": {
        "get": _op(
            "The web inbox's scripts and styles",
            "200",
            auth=False,
            params=(_param("file", "path", "file name"),),
            errors=("404",),
        ),
    },
    "/healthz": {"get": _op("Liveness", "200", auth=False)},
    "/readyz": {"get": _op("Readiness: the store is open", "200", auth=False, errors=("503",))},
    "/metrics": {"get": _op("Prometheus metrics", "200", auth=False)},
    "/openapi.json": {"get": _op("This document", "200", auth=False)},
}

_PATHS["/v1/simulator/reset"]["post"]["requestBody"]["required"] = False  # {} if none

# The web inbox's reads and actions (gateway/server/http_inbox.py).
_INBOX_PATHS: dict[str, dict[str, Any]] = {
    "/v1/simulator/handsets": {
        "get": _op(
            "This tenant's simulated handsets, most recently active first, with counts and"
            " the newest message either way",
            "200",
            params=(_LIMIT,),
        ),
    },
    "/v1/messages/{id}/detail": {
        "get": _op(
            "One message with its status timeline, callback attempts, the SMPP receipt"
            " text, the recipient's consent state (or its pseudonym)",
            "200",
            params=(_ID,),
            errors=("404",),
        ),
    },
    "/v1/messages/{id}/segments": {
        "get": _op(
            "The parts a message travels as: characters, units, encoding and the characters"
            " that forced UCS-2 (while its body is kept)",
            "200",
            params=(_ID,),
            errors=("404", "410"),
        ),
    },
    "/v1/segments": {
        "post": _op(
            "The parts a draft text would travel as, counted as a submit counts them",
            "200",
            body="DraftSegments",
        ),
    },
    "/v1/messages/{id}/outcome": {
        "post": _op(
            "End a message still on its way or scheduled now with this outcome; a scheduled"
            " one delivered now passes the privacy gates again first; its receipt, callback"
            " and events follow (needs [simulator] allow_reset)",
            "200",
            params=(_ID,),
            body="ForcedOutcome",
            errors=("403", "404", "409"),
        ),
    },
    "/v1/messages/{id}/callbacks": {
        "post": _op(
            "Send the final status callback again, with the usual retries",
            "202",
            params=(_ID,),
            errors=("404", "409"),
        ),
    },
}

# The read routes an operator token may use for a tenant named in X-Smsgw-Tenant
# (docs/security.md); every other /v1 route refuses the header (403).
OPERATOR_READS: tuple[tuple[str, str], ...] = (
    ("/v1/messages", "get"),
    ("/v1/messages/{id}", "get"),
    ("/v1/messages/{id}/detail", "get"),
    ("/v1/messages/{id}/segments", "get"),
    ("/v1/segments", "post"),
    ("/v1/simulator/handsets", "get"),
    ("/v1/simulator/handsets/{msisdn}/messages", "get"),
    ("/v1/simulator/handsets/{msisdn}/thread", "get"),
    ("/v1/simulator/messages", "get"),
    ("/v1/inbound", "get"),
    ("/v1/events", "get"),
    ("/v1/consents/{msisdn}", "get"),
)
_TENANT_HEADER = _param(
    "X-Smsgw-Tenant",
    "header",
    "with an operator token instead of an API key: the tenant to read",
    {"type": "string", "maxLength": 64},
)
for _path, _method in OPERATOR_READS:
    _read = {**_PATHS.get(_path, {}), **_INBOX_PATHS.get(_path, {})}[_method]
    _read["parameters"] = [*_read.get("parameters", ()), _TENANT_HEADER]
    _read["security"] = [*_AUTH, {"operator": []}]
    _read["responses"]["404"] = _PROBLEM  # unknown_tenant

_TENANT = _param("tenant", "path", "the tenant (controller) id")


def _admin(summary: str, *params: dict[str, Any]) -> dict[str, Any]:
    """An admin API operation: an operator token, from loopback unless allowed (403)."""
    operation = _op(summary, "200", params=params, errors=("403", "404"))
    operation["security"] = [{"operator": []}]
    return operation


_SUBJECT = "/admin/v1/tenants/{tenant}/subjects/{msisdn}"
_ADMIN_PATHS: dict[str, dict[str, Any]] = {
    f"{_SUBJECT}/export": {"get": _admin("Export a subject's data", _TENANT, _MSISDN)},
    f"{_SUBJECT}/erase": {"post": _admin("Erase a subject's data", _TENANT, _MSISDN)},
    f"{_SUBJECT}/restriction": {
        "put": _admin("Restrict processing of a subject's data", _TENANT, _MSISDN),
        "delete": _admin("Lift a restriction", _TENANT, _MSISDN),
    },
    f"{_SUBJECT}/objection": {"post": _admin("Record an objection", _TENANT, _MSISDN)},
    "/admin/v1/tenants/{tenant}/purge": {
        "post": _admin("Delete every row of a tenant and destroy its keys", _TENANT)
    },
    "/admin/v1/retention/run": {"post": _admin("One retention run, now")},
    "/admin/v1/audit/verify": {"get": _admin("Verify every tenant's audit chain")},
    # The web inbox's operator views (gateway/server/http_admin_views.py).
    "/admin/v1/tenants": {"get": _admin("The configured tenants' ids")},
    "/admin/v1/instances": {
        "get": _admin("The instances sharing the store: id, alive, heartbeat, URLs, sessions")
    },
    "/admin/v1/smpp/sessions": {
        "get": _admin("Bound SMPP sessions: system_id, bind type, since, window occupancy")
    },
    "/admin/v1/chaos": {"get": _admin("Every tenant's chaos settings")},
    "/admin/v1/tenants/{tenant}/chaos": {
        "put": _admin("Replace a tenant's chaos (needs [simulator] allow_reset)", _TENANT),
        "delete": _admin("Turn a tenant's chaos off (needs [simulator] allow_reset)", _TENANT),
    },
    "/admin/v1/retention": {
        "get": _admin("Retention: the oldest identifiable record against the window, the last run")
    },
    "/admin/v1/consents": {
        "get": _admin("The consent registry's counts per tenant: opted out, consents, restricted")
    },
    "/admin/v1/links": {
        "get": _admin("Where the metrics, the OpenAPI document and the dashboard are")
    },
}
_ADMIN_PATHS["/admin/v1/tenants/{tenant}/chaos"]["put"]["requestBody"] = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChaosSettings"}}},
}

# Purpose names are lower-case tokens (config.py checks them); only configured ones pass.
_PURPOSE: dict[str, Any] = {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"}
_EVIDENCE: dict[str, Any] = {
    "type": "string",
    "maxLength": 500,
    "description": "proof (form id, text, reference): stored as written, so it must hold"
    " no personal data; text with a phone number in it is refused",
}

_CHANCE: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": 1}


def _chances(kinds: tuple[str, ...], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {kind: _CHANCE for kind in kinds},
        "description": description,
    }


_SCHEMAS: dict[str, Any] = {
    "MessageRequest": {
        "type": "object",
        "required": ["to", "from", "body"],
        "additionalProperties": False,
        "properties": {
            "to": {**MSISDN_SCHEMA, "description": "E.164, 00-prefixed or national form"},
            "from": {"type": "string", "description": "one of the tenant's senders"},
            "body": {"type": "string"},
            "purpose": {**_PURPOSE, "description": "default: the tenant's default_purpose"},
            "callback_url": {"type": "string", "description": "receives the final status"},
            "client_ref": {"type": "string", "maxLength": 64},
            "send_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "maxLength": 40,
                "description": "RFC 3339 with a zone: the message is scheduled until then (a"
                " past time sends at once); malformed: 400 invalid_send_at",
            },
            "validity": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": MAX_VALIDITY,
                "description": "seconds from when the message is due (send_at, else now);"
                " still on its way then, it ends expired. Default and cap: [messages]"
                " max_validity. Malformed: 400 invalid_validity",
            },
        },
    },
    "Message": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "status": {
                "type": "string",
                "enum": [
                    "accepted",
                    "scheduled",
                    "enroute",
                    "delivered",
                    "undeliverable",
                    "expired",
                    "rejected",
                    "deleted",
                ],
            },
            "to": {"type": "string"},
            "from": {"type": "string"},
            "purpose": {"type": "string"},
            "segments": {"type": "integer"},
            "encoding": {"type": "string"},
            "interface": {"type": "string"},
            "client_ref": {"type": ["string", "null"]},
            "callback_url": {"type": ["string", "null"]},
            "error": {"type": ["string", "null"]},
            "submitted_at": {"type": "string", "format": "date-time"},
            "enroute_at": {"type": ["string", "null"], "format": "date-time"},
            "final_at": {"type": ["string", "null"], "format": "date-time"},
            "send_at": {"type": ["string", "null"], "format": "date-time"},
            "expires_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "when its validity ends",
            },
            "pseudonymised": {"type": "boolean"},
            "class": {"type": ["integer", "null"]},
            "flash": {"type": "boolean"},
        },
    },
    "Consent": {
        "type": "object",
        "required": ["purpose"],
        "additionalProperties": False,
        "properties": {
            "purpose": _PURPOSE,
            "evidence": _EVIDENCE,
            "sender": {"type": "string", "description": "scope the consent to one sender"},
            "source": {"type": "string", "enum": ["api", "import"]},
        },
    },
    "OptOutImport": {
        "type": "object",
        "required": ["msisdns"],
        "properties": {
            "msisdns": {"type": "array", "items": MSISDN_SCHEMA, "maxItems": 10000},
            "evidence": _EVIDENCE,
            "sender": {"type": "string"},
        },
    },
    "InboundRequest": {
        "type": "object",
        "required": ["from", "to", "body"],
        "additionalProperties": False,
        "properties": {
            "from": {**MSISDN_SCHEMA, "description": "the handset's number"},
            "to": {"type": "string", "description": "one of the tenant's senders"},
            "body": {"type": "string"},
        },
    },
    "ChaosSettings": {
        "type": "object",
        "additionalProperties": False,
        "description": "every key optional; what chaos does not pick falls to the rules",
        "properties": {
            "submit_errors": _chances(
                ("throttled", "queue_full", "system_error", "no_response"),
                "probability of each submit error; together at most 1",
            ),
            "outcomes": _chances(
                ("delivered", "undeliverable", "expired", "rejected"),
                "probability of each delivery outcome; together at most 1",
            ),
            "extra_latency": {
                "type": "array",
                "items": {"type": "number", "minimum": 0, "maximum": 600},
                "minItems": 2,
                "maxItems": 2,
                "description": "[min, max] seconds added to each message's latency",
            },
            "session_drop": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "after_pdus": {
                        "type": ["integer", "null"],
                        "minimum": 1,
                        "description": "close a bound SMPP session when a PDU comes after"
                        " this many",
                    },
                    "probability": {**_CHANCE, "description": "per PDU: close the session"},
                },
            },
            "max_submit_rate": {
                "type": ["number", "null"],
                "exclusiveMinimum": 0,
                "maximum": 1000000,
                "description": "submits per second over all front ends; beyond: throttled",
            },
        },
    },
    "DraftSegments": {
        "type": "object",
        "required": ["text"],
        "additionalProperties": False,
        "properties": {"text": {"type": "string"}},
    },
    "ForcedOutcome": {
        "type": "object",
        "required": ["outcome"],
        "additionalProperties": False,
        "properties": {
            "outcome": {
                "type": "string",
                "enum": ["delivered", "undeliverable", "expired", "rejected", "failed"],
                "description": "failed: undeliverable (unknown_subscriber)",
            }
        },
    },
    "ResetRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "traffic": {"type": "boolean", "default": False, "description": "the traffic log"},
            "consent": {"type": "boolean", "default": False, "description": "consent records"},
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
            "request_id": {"type": "string", "description": "on a 500: quoted in the log"},
        },
    },
}


_TWILIO_ERROR = {"$ref": "#/components/responses/TwilioError"}
_ACCOUNT = _param(
    "AccountSid",
    "path",
    "the tenant's twilio.account_sid",
    {"type": "string", "pattern": "^AC[0-9a-f]{32}$"},
)
_SID = _param("Sid", "path", "a message sid", {"type": "string", "pattern": "^SM[0-9a-f]{32}$"})


def _twilio_op(
    summary: str,
    ok: str,
    *,
    params: tuple[dict[str, Any], ...] = (),
    form: dict[str, Any] | None = None,
    errors: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A Twilio-compatible operation: HTTP Basic, forms in, Twilio's error shape out."""
    responses: dict[str, Any] = {ok: {"description": summary}}
    for status in ("400", "401", "404", "429", *errors):
        responses[status] = _TWILIO_ERROR
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": ["twilio"],
        "security": [{"twilio": []}],
        "parameters": [_ACCOUNT, *params],
        "responses": responses,
    }
    if form is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": form}
                }
            },
        }
    return operation


_TEXT = {"type": "string"}
_TWILIO_PATHS: dict[str, dict[str, Any]] = {
    "/2010-04-01/Accounts/{AccountSid}/Messages.json": {
        "post": _twilio_op(
            "Twilio: send a message (To, From or MessagingServiceSid, Body, StatusCallback,"
            " SendAt with ScheduleType=fixed, ValidityPeriod; other parameters ignored)",
            "201",
            form={
                "To": _TEXT,
                "From": _TEXT,
                "MessagingServiceSid": _TEXT,
                "Body": {"type": "string", "maxLength": 1600},
                "StatusCallback": _TEXT,
                "SendAt": {"type": "string", "format": "date-time"},
                "ScheduleType": {"enum": ["fixed"]},
                "ValidityPeriod": {"type": "integer", "minimum": 1, "maximum": 36000},
            },
            errors=("500", "503", "504"),
        ),
        "get": _twilio_op(
            "Twilio: list messages, newest first, in pages (next_page_uri)",
            "200",
            params=(
                _param("To", "query", "recipient"),
                _param("From", "query", "sender"),
                _param("DateSent", "query", "YYYY-MM-DD: sent on that UTC day"),
                _param("DateSent<", "query", "sent on or before"),
                _param("DateSent>", "query", "sent on or after"),
                _param(
                    "PageSize",
                    "query",
                    "page size",
                    {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                ),
                _param("Page", "query", "page number (after 0, with its PageToken)"),
                _param("PageToken", "query", "from next_page_uri"),
            ),
        ),
    },
    "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json": {
        "get": _twilio_op("Twilio: one message", "200", params=(_SID,)),
        "post": _twilio_op(
            "Twilio: Status=canceled cancels a message not sent yet; Body='' redacts a final one",
            "200",
            params=(_SID,),
            form={"Status": {"enum": ["canceled"]}, "Body": {"type": "string", "maxLength": 0}},
        ),
        "delete": _twilio_op("Twilio: delete a final message", "204", params=(_SID,)),
    },
}


def _merged_paths(*groups: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Paths of every group; a path in two groups keeps the operations of both."""
    paths: dict[str, dict[str, Any]] = {}
    for group in groups:
        for path, operations in group.items():
            paths[path] = {**paths.get(path, {}), **operations}
    return paths


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "smsgw", "version": "1"},
        "paths": _merged_paths(_PATHS, _INBOX_PATHS, _ADMIN_PATHS, _TWILIO_PATHS),
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "operator": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "[admin] tokens; with X-Smsgw-Tenant also tenant API reads",
                },
                "twilio": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "twilio.account_sid and auth_token, or an API key and secret",
                },
            },
            "responses": {
                "Problem": {
                    "description": "application/problem+json with a stable code",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                },
                "TwilioError": {
                    "description": "Twilio's error shape and codes (docs/twilio.md)",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "code": {"type": "integer"},
                                    "message": {"type": "string"},
                                    "more_info": {"type": "string"},
                                    "status": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
            },
        },
    }
