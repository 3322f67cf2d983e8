"""The web inbox's API (gateway/server/http_inbox.py) against the running gateway."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.config import config_from_dict
from gateway.server.appkeys import RETENTION
from gateway.server.openapi import OPERATOR_READS
from tests.conftest import (
    ADMIN_TOKEN,
    EVENT_TIMEOUT,
    OTHER_KEY,
    CallbackReceiver,
    ManualClock,
    RunningGateway,
    running_gateway,
)
from tests.smpp_clients import smpplib_esme
from tests.test_simulator_reset import SLOW, resettable
from tests.test_smpp_server import submit_fields

__all__ = ["resettable"]  # a fixture: test controls on, SLOW stays on its way


async def deliver_one(gateway: RunningGateway, **message: str) -> str:
    """Send a message and wait until it is final; its id."""
    finals = gateway.finals()
    response = await gateway.send(**message)
    assert response.status == 202, await response.text()
    message_id: str = (await response.json())["id"]
    while (await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)).id != message_id:
        pass
    return message_id


async def test_handset_list_shows_each_handset_newest_first(gateway: RunningGateway) -> None:
    await deliver_one(gateway, to="+46701234567", body="first")
    await deliver_one(gateway, to="+46709990001", body="never arrives")
    reply = await gateway.http.post(
        f"{gateway.url}/v1/simulator/inbound",
        json={"from": "+46701234567", "to": "Acme", "body": "thanks"},
        headers=gateway.headers,
    )
    assert reply.status == 202

    status, page = await gateway.get_json("/v1/simulator/handsets")
    assert status == 200
    handsets = page["handsets"]
    assert [h["msisdn"] for h in handsets] == ["+46701234567", "+46709990001"]
    replied, undeliverable = handsets
    assert replied["counts"] == {"received": 1, "sent": 1, "messages": 1}
    assert replied["latest"]["direction"] == "mo"
    assert (replied["latest"]["body"], replied["latest"]["from"]) == ("thanks", "+46701234567")
    # A number that never received anything is listed by the traffic log alone.
    assert undeliverable["counts"] == {"received": 0, "sent": 0, "messages": 1}
    assert undeliverable["latest"] is None

    status, page = await gateway.get_json("/v1/simulator/handsets?limit=1")
    assert [h["msisdn"] for h in page["handsets"]] == ["+46701234567"]
    assert status == 200


async def test_handset_list_latest_is_the_joined_message(gateway: RunningGateway) -> None:
    long_text = "ü" * 40 + "€" * 150  # UCS-2: three segments, one inbox row over HTTP
    message_id = await deliver_one(gateway, body=long_text)
    _, page = await gateway.get_json("/v1/simulator/handsets")
    (handset,) = page["handsets"]
    assert handset["counts"]["received"] == 1
    latest = handset["latest"]
    assert (latest["direction"], latest["body"], latest["message_id"]) == (
        "mt",
        long_text,
        message_id,
    )


async def test_handset_list_is_the_tenants_own(gateway: RunningGateway) -> None:
    await deliver_one(gateway, body="for acme only")
    status, page = await gateway.get_json("/v1/simulator/handsets", key=OTHER_KEY)
    assert (status, page) == (200, {"handsets": []})
    status, problem = await gateway.get_json("/v1/simulator/handsets", key="wrong")
    assert (status, problem["code"]) == (401, "unauthorized")


async def post_json(
    gateway: RunningGateway,
    path: str,
    document: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with gateway.http.post(
        f"{gateway.url}{path}", json=document, headers=headers or gateway.headers
    ) as response:
        return response.status, await response.json(content_type=None)


async def test_detail_has_timeline_callback_attempts_and_consent(
    gateway: RunningGateway, callback_receiver: CallbackReceiver
) -> None:
    callback_receiver.fail_first[0] = 1  # the first POST answers 500, the retry 204
    message_id = await deliver_one(gateway, callback_url=callback_receiver.url)
    assert (await callback_receiver.next())["id"] == message_id
    status, detail = await gateway.get_json(f"/v1/messages/{message_id}/detail")
    assert status == 200
    assert detail["message"]["id"] == message_id
    assert [step["status"] for step in detail["timeline"]] == ["accepted", "enroute", "delivered"]
    assert all(step["at"] for step in detail["timeline"])
    callbacks = detail["callbacks"]
    assert callbacks["callback_url"] is True
    assert [(a["attempt"], a["http_status"]) for a in callbacks["attempts"]] == [(1, 500), (2, 204)]
    assert detail["receipt"] is None  # sent over HTTP: no SMPP receipt
    assert detail["pseudonym"] is None
    consent = detail["consent"]
    assert (consent["opted_out"], consent["restricted"], consent["consents"]) == (False, False, [])
    status, history = await gateway.get_json(consent["history_url"])
    assert (status, history["subject"]) == (200, consent["subject"])

    status, problem = await gateway.get_json("/v1/messages/0123456789abcdef0123/detail")
    assert (status, problem["code"]) == (404, "not_found")
    status, problem = await gateway.get_json(f"/v1/messages/{message_id}/detail", key=OTHER_KEY)
    assert (status, problem["code"]) == (404, "not_found")


async def test_detail_shows_an_opt_out(gateway: RunningGateway) -> None:
    message_id = await deliver_one(gateway)
    status, _ = await post_json(gateway, "/v1/opt-outs", {"msisdns": ["+46701234567"]})
    assert status == 200
    _, detail = await gateway.get_json(f"/v1/messages/{message_id}/detail")
    assert detail["consent"]["opted_out"] is True


async def test_detail_rebuilds_the_receipt_the_smpp_client_got(gateway: RunningGateway) -> None:
    finals = gateway.finals()
    async with smpplib_esme(gateway.smpp_port) as esme:
        await esme.send(**submit_fields(registered_delivery=1))
        message_id = (await esme.next("submit_sm_resp")).message_id.decode()
        receipt = await esme.next("deliver_sm")
    while (await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)).id != message_id:
        pass
    _, detail = await gateway.get_json(f"/v1/messages/{message_id}/detail")
    assert detail["receipt"] == {
        "receipted_message_id": message_id,
        "short_message": receipt.short_message.decode("ascii"),
    }


async def test_detail_of_a_pseudonymised_row_says_the_number_is_gone(
    config_dict: dict[str, Any],
) -> None:
    clock = ManualClock(1_767_000_000.0)
    async with running_gateway(config_from_dict(config_dict), clock) as gateway:
        message_id = await deliver_one(gateway)
        clock.advance(31 * 86400.0)  # past the identifiable window, before deletion
        assert (await gateway.app[RETENTION].run()).pseudonymised == 1
        _, detail = await gateway.get_json(f"/v1/messages/{message_id}/detail")
    assert detail["consent"] is None and detail["receipt"] is None
    pseudonym = detail["pseudonym"]
    assert pseudonym["number_gone"] is True
    assert pseudonym["pseudonym"] == detail["message"]["to"] != "+46701234567"


async def test_segments_of_a_long_ucs2_message_name_what_forced_it(
    gateway: RunningGateway,
) -> None:
    text = "a" * 199 + "ж"  # 200 characters, one Cyrillic: UCS-2, 3 parts of 67
    message_id = await deliver_one(gateway, body=text)
    status, segments = await gateway.get_json(f"/v1/messages/{message_id}/segments")
    assert status == 200
    assert (segments["encoding"], segments["count"], segments["unit"]) == ("ucs2", 3, "utf16_units")
    assert [s["characters"] for s in segments["segments"]] == [67, 67, 66]
    assert "".join(s["text"] for s in segments["segments"]) == text
    assert segments["forcing_ucs2"] == [{"char": "ж", "code_point": "U+0436"}]
    assert [s["forcing_ucs2"] for s in segments["segments"]][-1] == segments["forcing_ucs2"]
    assert segments["udh_octets"] == 6 and segments["client_part"] is None

    draft_status, draft = await post_json(gateway, "/v1/segments", {"text": text})
    assert draft_status == 200
    assert {k: draft[k] for k in ("encoding", "count", "forcing_ucs2", "segments")} == {
        k: segments[k] for k in ("encoding", "count", "forcing_ucs2", "segments")
    }


async def test_draft_segments_gsm_and_bad_input(gateway: RunningGateway) -> None:
    status, draft = await post_json(gateway, "/v1/segments", {"text": "{" * 100})
    assert status == 200
    # Each brace is an escape pair: 200 septets, two parts of at most 153.
    assert (draft["encoding"], draft["units"], draft["count"]) == ("gsm7", 200, 2)
    assert draft["forcing_ucs2"] == [] and draft["within_limit"] is True
    status, problem = await post_json(gateway, "/v1/segments", {"body": "x"})
    assert (status, problem["code"]) == (400, "invalid_request")
    status, problem = await post_json(
        gateway, "/v1/segments", {"text": "x"}, {"Authorization": "x"}
    )
    assert (status, problem["code"]) == (401, "unauthorized")


async def test_segments_of_a_message_whose_body_is_gone(gateway: RunningGateway) -> None:
    message_id = await deliver_one(gateway, to="+46709990001")  # undeliverable: no inbox row
    status, problem = await gateway.get_json(f"/v1/messages/{message_id}/segments")
    assert (status, problem["code"]) == (410, "body_gone")


async def test_forced_outcome_is_committed_and_called_back(
    resettable: RunningGateway, callback_receiver: CallbackReceiver
) -> None:
    gateway = resettable
    response = await gateway.send(to=SLOW, callback_url=callback_receiver.url)
    message_id = (await response.json())["id"]
    status, problem = await post_json(gateway, f"/v1/messages/{message_id}/callbacks")
    assert (status, problem["code"]) == (409, "not_final")

    status, message = await post_json(
        gateway, f"/v1/messages/{message_id}/outcome", {"outcome": "expired"}
    )
    assert status == 200
    assert (message["status"], message["error"]) == ("expired", "validity_period_expired")
    callback = await callback_receiver.next()
    assert (callback["id"], callback["status"]) == (message_id, "expired")
    _, listed = await gateway.get_json(f"/v1/messages/{message_id}")
    assert listed["status"] == "expired"

    status, problem = await post_json(
        gateway, f"/v1/messages/{message_id}/outcome", {"outcome": "delivered"}
    )
    assert (status, problem["code"]) == (409, "not_pending")
    status, problem = await post_json(
        gateway, f"/v1/messages/{message_id}/outcome", {"outcome": "x"}
    )
    assert (status, problem["code"]) == (400, "invalid_request")


async def test_forced_delivery_reaches_the_inbox(resettable: RunningGateway) -> None:
    gateway = resettable
    message_id = (await (await gateway.send(to=SLOW, body="now")).json())["id"]
    status, message = await post_json(
        gateway, f"/v1/messages/{message_id}/outcome", {"outcome": "delivered"}
    )
    assert (status, message["status"]) == (200, "delivered")
    _, inbox = await gateway.get_json(f"/v1/simulator/handsets/{SLOW}/messages")
    assert [m["body"] for m in inbox["messages"]] == ["now"]


async def test_forced_outcome_needs_allow_reset(gateway: RunningGateway) -> None:
    message_id = await deliver_one(gateway)
    status, problem = await post_json(
        gateway, f"/v1/messages/{message_id}/outcome", {"outcome": "failed"}
    )
    assert (status, problem["code"]) == (403, "reset_disabled")


async def test_resend_callback(
    gateway: RunningGateway, callback_receiver: CallbackReceiver
) -> None:
    message_id = await deliver_one(gateway, callback_url=callback_receiver.url)
    first = await callback_receiver.next()
    status, queued = await post_json(gateway, f"/v1/messages/{message_id}/callbacks")
    assert (status, queued) == (202, {"queued": True, "message_id": message_id})
    assert await callback_receiver.next() == first
    _, detail = await gateway.get_json(f"/v1/messages/{message_id}/detail")
    assert [a["http_status"] for a in detail["callbacks"]["attempts"]] == [204, 204]

    plain = await deliver_one(gateway)
    status, problem = await post_json(gateway, f"/v1/messages/{plain}/callbacks")
    assert (status, problem["code"]) == (409, "no_callback_url")


async def test_an_operator_reads_a_tenants_inbox_and_changes_nothing(
    gateway: RunningGateway,
) -> None:
    message_id = await deliver_one(gateway)
    operator = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Smsgw-Tenant": "acme"}
    for path in (
        "/v1/simulator/handsets",
        f"/v1/messages/{message_id}",
        f"/v1/messages/{message_id}/detail",
        "/v1/messages",
    ):
        async with gateway.http.get(f"{gateway.url}{path}", headers=operator) as response:
            assert response.status == 200, path
    async with gateway.http.get(
        f"{gateway.url}/v1/messages/{message_id}", headers={**operator, "X-Smsgw-Tenant": "other"}
    ) as response:
        assert response.status == 404  # the other tenant has no such message
    status, problem = await post_json(gateway, "/v1/messages", {"to": "+46701234567"}, operator)
    assert (status, problem["code"]) == (403, "operator_read_only")
    unknown = {**operator, "X-Smsgw-Tenant": "nobody"}
    async with gateway.http.get(f"{gateway.url}/v1/messages", headers=unknown) as response:
        assert (response.status, (await response.json())["code"]) == (404, "unknown_tenant")
    # A tenant's API key is no operator token.
    tenant_key = {**gateway.headers, "X-Smsgw-Tenant": "other"}
    async with gateway.http.get(f"{gateway.url}/v1/messages", headers=tenant_key) as response:
        assert (response.status, (await response.json())["code"]) == (401, "unauthorized")


async def test_operator_reads_are_exactly_the_listed_routes(gateway: RunningGateway) -> None:
    """Each route OpenAPI lists as an operator read answers one; every other /v1 route
    refuses the header before it looks at anything."""
    message_id = await deliver_one(gateway)
    operator = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Smsgw-Tenant": "acme"}
    routes = {
        (resource.canonical, route.method.lower())
        for resource in gateway.app.router.resources()
        for route in resource
        if route.method != "HEAD" and resource.canonical.startswith("/v1/")
    }
    assert set(OPERATOR_READS) <= routes
    for path, method in sorted(routes):
        url = gateway.url + path.format(id=message_id, msisdn="+46701234567")
        body = {"text": "hi"} if path == "/v1/segments" else None
        async with gateway.http.request(method, url, json=body, headers=operator) as response:
            if (path, method) in OPERATOR_READS:
                assert response.status == 200, (path, method)
            else:
                problem = await response.json()
                assert (response.status, problem["code"]) == (403, "operator_read_only"), path
