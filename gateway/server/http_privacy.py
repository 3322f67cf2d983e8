"""HTTP API for consent and opt-out, data-subject rights and the audit log, tenant-scoped.

Numbers arrive in any accepted form and leave only as the tenant's pseudonym
(``subject``): the registry never holds them in clear, so it cannot show them.
Withdrawing is as easy as giving: one DELETE. Consent ``evidence`` is the
tenant's free text, stored as written: so that no number reaches the registry
through it in clear, evidence that holds a phone number is refused.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from phonenumbers import PhoneNumberMatcher

from gateway.config import TenantConfig
from gateway.documents import iso_time
from gateway.numbers import InvalidNumber, normalise_msisdn
from gateway.server.appkeys import AUDIT, PIPELINE, REGISTRY, SUBJECTS
from gateway.server.http_api import (
    Problem,
    api_actor,
    authenticate,
    check_fields,
    checked_cursor,
    json_response,
    msisdn_param,
    page_limit,
    read_json,
)
from privacy.pseudonyms import PREFIX, PSEUDONYM_BYTES
from privacy.registry import ConsentEvent, EventKind, Source, SubjectState

MAX_OPT_OUT_IMPORT = 10_000
MAX_EVIDENCE = 500
SUBJECT_CURSOR_RE = re.compile(re.escape(PREFIX) + f"[0-9a-f]{{{2 * PSEUDONYM_BYTES}}}")
# Below 2**63 (SQLite's integer range) by construction.
AUDIT_CURSOR_RE = re.compile(r"[0-9]{1,18}")


def state_document(subject: str, state: SubjectState) -> dict[str, Any]:
    return {
        "subject": subject,
        "opted_out": bool(state.opted_out),
        "restricted": state.restricted is not None,
        "opt_outs": [e.document() for e in state.opted_out.values()],
        "consents": [e.document() for e in state.consents.values()],
    }


def _sender(request: web.Request, tenant: TenantConfig, raw: str | None) -> str | None:
    """A sender scope: one of the tenant's senders (numbers compared as E.164)."""
    if raw is None:
        return None
    sender = request.app[PIPELINE].sender_of(tenant, raw)
    if sender is None:
        raise Problem(400, "unknown_sender", "'sender' is not one of this tenant's senders")
    return sender


def _subject(request: web.Request, tenant: TenantConfig) -> str:
    e164 = msisdn_param(request.match_info["msisdn"], tenant)
    return request.app[REGISTRY].subject(tenant.id, e164)


async def _record(request: web.Request, tenant: TenantConfig, events: list[ConsentEvent]) -> None:
    await request.app[REGISTRY].record(events, actor=api_actor(tenant))


async def _record_one(
    request: web.Request,
    tenant: TenantConfig,
    subject: str,
    kind: EventKind,
    source: Source = Source.API,
    **details: Any,
) -> None:
    """Record one change to the subject named in the path, dated now."""
    event = ConsentEvent(
        tenant=tenant.id,
        subject=subject,
        kind=kind,
        source=source,
        at=request.app[REGISTRY].now(),
        **details,
    )
    await _record(request, tenant, [event])


async def _state_response(request: web.Request, tenant: TenantConfig, subject: str) -> web.Response:
    [state] = await request.app[REGISTRY].states(tenant.id, [subject])
    return json_response(state_document(subject, state))


def _evidence(tenant: TenantConfig, raw: str | None) -> str:
    """Evidence as given, if it holds no phone number (it is stored verbatim, never masked).

    Refused rather than masked: evidence is the tenant's record of how consent was
    obtained, and a gateway that silently rewrote it would weaken it as proof; a
    refusal makes the tenant fix what it sends, and the number is never kept.
    """
    if raw is None:
        return ""
    if len(raw) > MAX_EVIDENCE:
        raise Problem(400, "invalid_request", f"'evidence' exceeds {MAX_EVIDENCE} characters")
    if any(True for _ in PhoneNumberMatcher(raw, tenant.default_country)):
        raise Problem(
            400,
            "invalid_request",
            "'evidence' holds a phone number; refer to the subject by the path only",
        )
    return raw


def _source(raw: str | None) -> Source:
    if raw is None:
        return Source.API
    if raw not in (Source.API, Source.IMPORT):
        raise Problem(400, "invalid_request", "'source' must be api or import")
    return Source(raw)


async def put_consent(request: web.Request) -> web.Response:
    tenant = await authenticate(request)
    subject = _subject(request, tenant)
    document = check_fields(
        await read_json(request), ("purpose",), ("evidence", "sender", "source")
    )
    purpose = document["purpose"]
    if not request.app[REGISTRY].knows_purpose(purpose):
        raise Problem(400, "invalid_request", "'purpose' is not a configured purpose")
    await _record_one(
        request,
        tenant,
        subject,
        EventKind.CONSENT_GIVEN,
        source=_source(document.get("source")),
        evidence=_evidence(tenant, document.get("evidence")),
        purpose=purpose,
        sender=_sender(request, tenant, document.get("sender")),
    )
    return await _state_response(request, tenant, subject)


async def delete_consent(request: web.Request) -> web.Response:
    tenant = await authenticate(request)
    subject = _subject(request, tenant)
    purpose = request.query.get("purpose")
    if purpose is None or not request.app[REGISTRY].knows_purpose(purpose):
        raise Problem(400, "invalid_request", "give ?purpose= with a configured purpose")
    await _record_one(
        request,
        tenant,
        subject,
        EventKind.CONSENT_WITHDRAWN,
        purpose=purpose,
        sender=_sender(request, tenant, request.query.get("sender")),
    )
    return await _state_response(request, tenant, subject)


async def get_consent(request: web.Request) -> web.Response:
    tenant = await authenticate(request, operator_may_read=True)
    subject = _subject(request, tenant)
    registry = request.app[REGISTRY]
    [state] = await registry.states(tenant.id, [subject])
    history = await registry.history(tenant.id, subject)
    return json_response(
        {**state_document(subject, state), "history": [e.document() for e in history]}
    )


async def list_consents(request: web.Request) -> web.Response:
    tenant = await authenticate(request)
    limit = page_limit(request.query.get("limit"))
    cursor = checked_cursor(request.query.get("cursor"), SUBJECT_CURSOR_RE)
    subjects = await request.app[REGISTRY].subjects(tenant.id, cursor, limit)
    return json_response(
        {
            "subjects": [state_document(s, state) for s, state in subjects],
            "next_cursor": subjects[-1][0] if len(subjects) == limit else None,
        }
    )


async def post_opt_outs(request: web.Request) -> web.Response:
    """Bulk import of opt-outs kept elsewhere (source: import)."""
    tenant = await authenticate(request)
    document = await read_json(request)
    numbers = document.get("msisdns")
    if not isinstance(numbers, list) or not numbers:
        raise Problem(400, "invalid_request", 'send {"msisdns": [...]} with at least one')
    if len(numbers) > MAX_OPT_OUT_IMPORT:
        raise Problem(413, "payload_too_large", f"at most {MAX_OPT_OUT_IMPORT} per request")
    check_fields({k: v for k, v in document.items() if k != "msisdns"}, (), ("evidence", "sender"))
    sender = _sender(request, tenant, document.get("sender"))
    evidence = _evidence(tenant, document.get("evidence"))
    registry = request.app[REGISTRY]
    now = registry.now()
    events: list[ConsentEvent] = []
    invalid: list[int] = []
    for index, raw in enumerate(numbers):
        try:
            if not isinstance(raw, str):
                raise InvalidNumber("not a string")
            e164 = normalise_msisdn(raw, tenant.default_country)
        except InvalidNumber:
            invalid.append(index)
            continue
        events.append(
            ConsentEvent(
                tenant=tenant.id,
                subject=registry.subject(tenant.id, e164),
                kind=EventKind.OPTED_OUT,
                source=Source.IMPORT,
                at=now,
                evidence=evidence,
                sender=sender,
            )
        )
    await _record(request, tenant, events)
    return json_response({"recorded": len(events), "invalid": invalid})


async def get_opt_out(request: web.Request) -> web.Response:
    tenant = await authenticate(request)
    subject = _subject(request, tenant)
    [state] = await request.app[REGISTRY].states(tenant.id, [subject])
    document = state_document(subject, state)
    return json_response({k: document[k] for k in ("subject", "opted_out", "opt_outs")})


async def delete_opt_out(request: web.Request) -> web.Response:
    tenant = await authenticate(request)
    subject = _subject(request, tenant)
    await _record_one(
        request,
        tenant,
        subject,
        EventKind.OPT_OUT_LIFTED,
        sender=_sender(request, tenant, request.query.get("sender")),
    )
    return await get_opt_out(request)


async def get_audit(request: web.Request) -> web.Response:
    tenant = await authenticate(request)
    limit = page_limit(request.query.get("limit"))
    cursor = checked_cursor(request.query.get("cursor"), AUDIT_CURSOR_RE)
    entries = await request.app[AUDIT].entries(tenant.id, int(cursor) if cursor else None, limit)
    return json_response(
        {
            "entries": [
                {
                    "seq": e.seq,
                    "at": iso_time(e.at),
                    "actor": e.actor,
                    "action": e.action,
                    "subject": e.subject,
                    "detail": e.detail,
                    "hash": e.hash,
                }
                for e in entries
            ],
            "next_cursor": str(entries[-1].seq) if len(entries) == limit else None,
        }
    )


async def export_subject(request: web.Request) -> web.Response:
    tenant = await authenticate(request)
    e164 = msisdn_param(request.match_info["msisdn"], tenant)
    return json_response(await request.app[SUBJECTS].export(tenant, e164, api_actor(tenant)))


async def erase_subject(request: web.Request) -> web.Response:
    tenant = await authenticate(request)
    e164 = msisdn_param(request.match_info["msisdn"], tenant)
    counts = await request.app[SUBJECTS].erase(tenant, e164, api_actor(tenant))
    return json_response({"erased": counts})


async def put_restriction(request: web.Request) -> web.Response:
    return await _restriction(request, on=True)


async def delete_restriction(request: web.Request) -> web.Response:
    return await _restriction(request, on=False)


async def _restriction(request: web.Request, *, on: bool) -> web.Response:
    tenant = await authenticate(request)
    e164 = msisdn_param(request.match_info["msisdn"], tenant)
    await request.app[SUBJECTS].restrict(tenant, e164, api_actor(tenant), on=on)
    return await _state_response(request, tenant, request.app[REGISTRY].subject(tenant.id, e164))


async def post_objection(request: web.Request) -> web.Response:
    tenant = await authenticate(request)
    e164 = msisdn_param(request.match_info["msisdn"], tenant)
    await request.app[SUBJECTS].record_objection(tenant, e164, api_actor(tenant))
    return await _state_response(request, tenant, request.app[REGISTRY].subject(tenant.id, e164))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/consents", list_consents)
    app.router.add_put("/v1/consents/{msisdn}", put_consent)
    app.router.add_get("/v1/consents/{msisdn}", get_consent)
    app.router.add_delete("/v1/consents/{msisdn}", delete_consent)
    app.router.add_post("/v1/opt-outs", post_opt_outs)
    app.router.add_get("/v1/opt-outs/{msisdn}", get_opt_out)
    app.router.add_delete("/v1/opt-outs/{msisdn}", delete_opt_out)
    app.router.add_get("/v1/audit", get_audit)
    app.router.add_get("/v1/subjects/{msisdn}/export", export_subject)
    app.router.add_post("/v1/subjects/{msisdn}/erase", erase_subject)
    app.router.add_put("/v1/subjects/{msisdn}/restriction", put_restriction)
    app.router.add_delete("/v1/subjects/{msisdn}/restriction", delete_restriction)
    app.router.add_post("/v1/subjects/{msisdn}/objection", post_objection)
