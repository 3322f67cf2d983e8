"""HTTP API v1 against the running gateway, over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.config import config_from_dict
from gateway.server.appkeys import CONFIG
from gateway.server.http_privacy import MAX_EVIDENCE
from tests.conftest import (
    API_KEY,
    EVENT_TIMEOUT,
    OTHER_KEY,
    CallbackReceiver,
    RunningGateway,
    merged,
    running_gateway,
)


async def test_delivered_with_callback_and_inbox(
    gateway: RunningGateway, callback_receiver: CallbackReceiver
) -> None:
    response = await gateway.send(
        to="070-123 45 67",
        body="Your code is 1234",
        callback_url=callback_receiver.url,
        client_ref="order-7",
    )
    assert response.status == 202
    accepted = await response.json()
    assert accepted["status"] == "accepted"
    assert accepted["to"] == "+46701234567"
    assert (accepted["segments"], accepted["encoding"]) == (1, "gsm7")
    assert response.headers["Location"] == f"/v1/messages/{accepted['id']}"

    callback = await callback_receiver.next()
    assert (callback["id"], callback["status"]) == (accepted["id"], "delivered")
    assert callback["client_ref"] == "order-7"

    status, message = await gateway.get_json(f"/v1/messages/{accepted['id']}")
    assert status == 200
    assert message["status"] == "delivered"
    assert message["enroute_at"] is not None and message["final_at"] is not None

    status, inbox = await gateway.get_json("/v1/simulator/handsets/+46701234567/messages")
    assert status == 200
    assert [(m["message_id"], m["body"], m["from"]) for m in inbox["messages"]] == [
        (accepted["id"], "Your code is 1234", "Acme")
    ]


async def test_rule_makes_message_undeliverable(
    gateway: RunningGateway, callback_receiver: CallbackReceiver
) -> None:
    response = await gateway.send(to="+46709990123", callback_url=callback_receiver.url)
    assert response.status == 202
    callback = await callback_receiver.next()
    assert callback["status"] == "undeliverable"
    assert callback["error"] == "unknown_subscriber"
    status, inbox = await gateway.get_json("/v1/simulator/handsets/+46709990123/messages")
    assert (status, inbox["messages"]) == (200, [])


async def test_callback_is_retried_until_it_succeeds(
    gateway: RunningGateway, callback_receiver: CallbackReceiver
) -> None:
    callback_receiver.fail_first[0] = 2
    response = await gateway.send(callback_url=callback_receiver.url)
    accepted = await response.json()
    callback = await callback_receiver.next()
    assert callback["id"] == accepted["id"]
    assert callback_receiver.fail_first[0] == 0


async def test_ucs2_long_message_counts_segments(gateway: RunningGateway) -> None:
    response = await gateway.send(body="Привет! " * 20)
    accepted = await response.json()
    assert (accepted["encoding"], accepted["segments"]) == ("ucs2", 3)


def _bad_requests() -> list[tuple[str, Any, int, str]]:
    return [
        ("not json", b"{to: 1", 400, "invalid_json"),
        ("array body", b"[]", 400, "invalid_request"),
        ("missing body", {"to": "+46701234567", "from": "Acme"}, 400, "invalid_request"),
        ("wrong type", {"to": 46701234567, "from": "Acme", "body": "x"}, 400, "invalid_request"),
        (
            "unknown field",
            {"to": "+46701234567", "from": "Acme", "body": "x", "tO": "1"},
            400,
            "invalid_request",
        ),
        ("bad recipient", {"to": "hello", "from": "Acme", "body": "x"}, 400, "invalid_recipient"),
        ("short recipient", {"to": "+4612", "from": "Acme", "body": "x"}, 400, "invalid_recipient"),
        (
            "foreign sender",
            {"to": "+46701234567", "from": "Other", "body": "x"},
            400,
            "unknown_sender",
        ),
        (
            "too long",
            {"to": "+46701234567", "from": "Acme", "body": "x" * 1531},
            400,
            "body_too_long",
        ),
        (
            "lone surrogate",
            b'{"to": "+46701234567", "from": "Acme", "body": "\\ud800"}',
            400,
            "invalid_request",
        ),
        (
            "bad purpose",
            {"to": "+46701234567", "from": "Acme", "body": "x", "purpose": "A B"},
            400,
            "invalid_request",
        ),
        (
            "callback host",
            {
                "to": "+46701234567",
                "from": "Acme",
                "body": "x",
                "callback_url": "http://169.254.169.254/latest",
            },
            422,
            "callback_not_allowed",
        ),
        (
            "callback scheme",
            {
                "to": "+46701234567",
                "from": "Acme",
                "body": "x",
                "callback_url": "file:///etc/passwd",
            },
            422,
            "callback_not_allowed",
        ),
    ]


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [case[1:] for case in _bad_requests()],
    ids=[case[0] for case in _bad_requests()],
)
async def test_bad_submit_is_a_problem_document(
    gateway: RunningGateway, payload: Any, status: int, code: str
) -> None:
    kwargs: dict[str, Any] = {"data": payload} if isinstance(payload, bytes) else {"json": payload}
    async with gateway.http.post(
        f"{gateway.url}/v1/messages", headers=gateway.headers, **kwargs
    ) as response:
        assert response.status == status
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["detail"]
    metrics = await (await gateway.http.get(f"{gateway.url}/metrics")).text()
    assert f'smsgw_http_errors_total{{code="{code}"}} 1.0' in metrics


@pytest.mark.parametrize("header", [None, "Bearer wrong-key-123", "Basic abc", "Bearer "])
async def test_unauthorized(gateway: RunningGateway, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    async with gateway.http.post(
        f"{gateway.url}/v1/messages", json={}, headers=headers
    ) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await response.json(content_type=None))["code"] == "unauthorized"


async def test_not_found_and_other_tenants_message(gateway: RunningGateway) -> None:
    accepted = await (await gateway.send()).json()
    status, problem = await gateway.get_json(f"/v1/messages/{accepted['id']}", key=OTHER_KEY)
    assert (status, problem["code"]) == (404, "not_found")
    status, problem = await gateway.get_json("/v1/messages/00000000000000000000")
    assert (status, problem["code"]) == (404, "not_found")
    status, problem = await gateway.get_json("/v1/no-such-route")
    assert (status, problem["code"]) == (404, "not_found")
    status, listing = await gateway.get_json("/v1/messages", key=OTHER_KEY)
    assert (status, listing["messages"]) == (200, [])


async def test_request_body_too_large(tmp_path: Any, config_dict: dict[str, Any]) -> None:
    config = config_from_dict(merged(config_dict, {"http": {"max_request_bytes": 1024}}))
    async with running_gateway(config) as gateway:
        response = await gateway.send(body="x" * 2000)
        assert response.status == 413
        assert (await response.json(content_type=None))["code"] == "payload_too_large"


async def test_batch_items_are_judged_one_by_one(gateway: RunningGateway) -> None:
    messages = [
        {"to": "+46701234567", "from": "Acme", "body": "one"},
        {"to": "nope", "from": "Acme", "body": "two"},
        {"to": "+46701234568", "from": "Acme"},
        {"to": "0701234569", "from": "+46700000001", "body": "four"},
    ]
    async with gateway.http.post(
        f"{gateway.url}/v1/messages/batch", json={"messages": messages}, headers=gateway.headers
    ) as response:
        assert response.status == 200
        result = await response.json()
    assert (result["accepted"], result["rejected"]) == (2, 2)
    outcomes = [
        r["message"]["status"] if "message" in r else r["problem"]["code"]
        for r in result["results"]
    ]
    assert outcomes == ["accepted", "invalid_recipient", "invalid_request", "accepted"]
    assert [r["index"] for r in result["results"]] == [0, 1, 2, 3]


async def test_batch_over_the_limit(gateway: RunningGateway) -> None:
    limit = gateway.app[CONFIG].http.max_batch
    messages = [{"to": "+46701234567", "from": "Acme", "body": "x"}] * (limit + 1)
    async with gateway.http.post(
        f"{gateway.url}/v1/messages/batch", json={"messages": messages}, headers=gateway.headers
    ) as response:
        assert response.status == 413
        assert (await response.json(content_type=None))["code"] == "payload_too_large"


async def test_listing_is_paginated_and_filtered(gateway: RunningGateway) -> None:
    ids = []
    for i in range(5):
        to = "+46701112233" if i % 2 else "+46704445566"
        ids.append((await (await gateway.send(to=to, body=f"m{i}")).json())["id"])
    seen: list[str] = []
    cursor = ""
    for _ in range(5):
        status, page = await gateway.get_json(f"/v1/messages?limit=2{cursor}")
        assert status == 200
        seen += [m["id"] for m in page["messages"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == list(reversed(ids))
    status, page = await gateway.get_json("/v1/messages?to=070-111%2022%2033")
    assert {m["id"] for m in page["messages"]} == {ids[1], ids[3]}
    status, page = await gateway.get_json("/v1/messages?since=2999-01-01T00:00:00Z")
    assert (status, page["messages"]) == (200, [])
    status, problem = await gateway.get_json("/v1/messages?status=lost")
    assert (status, problem["code"]) == (400, "invalid_request")
    status, problem = await gateway.get_json("/v1/messages?limit=0")
    assert (status, problem["code"]) == (400, "invalid_request")


async def test_filter_by_final_status(
    gateway: RunningGateway, callback_receiver: CallbackReceiver
) -> None:
    await gateway.send(to="+46709990001", callback_url=callback_receiver.url)
    await gateway.send(to="+46701234567", callback_url=callback_receiver.url)
    statuses = {(await callback_receiver.next())["status"] for _ in range(2)}
    assert statuses == {"delivered", "undeliverable"}
    status, page = await gateway.get_json("/v1/messages?status=undeliverable")
    assert status == 200
    assert [m["to"] for m in page["messages"]] == ["+46709990001"]


async def test_health_readiness_and_openapi_cover_every_route(gateway: RunningGateway) -> None:
    assert (await gateway.get_json("/healthz"))[0] == 200
    assert (await gateway.get_json("/readyz"))[0] == 200
    status, spec = await gateway.get_json("/openapi.json")
    assert status == 200
    registered = {
        (resource.canonical, route.method.lower())
        for resource in gateway.app.router.resources()
        for route in resource
        if route.method != "HEAD"
    }
    described = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert registered == described


async def test_openapi_states_the_bounds_the_handlers_enforce(gateway: RunningGateway) -> None:
    _, spec = await gateway.get_json("/openapi.json")
    limits = [
        (path.replace("{msisdn}", "+46701234567"), param["schema"])
        for path, operations in spec["paths"].items()
        for operation in operations.values()
        for param in operation.get("parameters", [])
        if param["name"] == "limit"
    ]
    assert len(limits) == 8
    for path, schema in limits:
        low, high = schema["minimum"], schema["maximum"]
        for value, accepted in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
            status, _ = await gateway.get_json(f"{path}?limit={value}")
            assert (status == 200) is accepted, (path, value)
    evidence = spec["components"]["schemas"]["Consent"]["properties"]["evidence"]
    assert evidence["maxLength"] == MAX_EVIDENCE


async def test_metrics_count_outcomes_without_personal_data(gateway: RunningGateway) -> None:
    await gateway.send(to="+46701234567", body="secret body 42")
    await gateway.send(to="garbage", body="x")
    async with gateway.http.get(f"{gateway.url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    assert 'smsgw_messages_total{interface="http",outcome="accepted",tenant="acme"} 1.0' in text
    assert (
        'smsgw_rejections_total{code="invalid_recipient",interface="http",tenant="acme"} 1.0'
        in text
    )
    for secret in ("46701234567", "secret body", API_KEY):
        assert secret not in text


async def test_concurrent_submits_share_commits(gateway: RunningGateway) -> None:
    responses = await asyncio.wait_for(
        asyncio.gather(*(gateway.send(body=f"n{i}") for i in range(200))), EVENT_TIMEOUT
    )
    ids = {(await r.json())["id"] for r in responses}
    assert len(ids) == 200
    metrics = await (await gateway.http.get(f"{gateway.url}/metrics")).text()
    values = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("smsgw_store_batch_rows_")
    }
    rows, commits = values["smsgw_store_batch_rows_sum"], values["smsgw_store_batch_rows_count"]
    assert rows >= 200
    assert rows / commits > 1, "group commit should put several rows in one transaction"


async def test_concurrent_single_submits_are_answered_each_on_its_own(
    gateway: RunningGateway,
) -> None:
    """Submits that arrive together go through the pipeline together, per tenant
    (`gateway.server.coalescer`): each still gets its own answer, an accepted one
    only once its message is committed, and a bad one fails nobody else's."""

    async def send(key: str, sender: str, to: str, body: str) -> tuple[int, Any]:
        async with gateway.http.post(
            f"{gateway.url}/v1/messages",
            json={"to": to, "from": sender, "body": body},
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            return response.status, await response.json(content_type=None)

    sends = []
    for i in range(60):
        key, sender = (API_KEY, "Acme") if i % 2 else (OTHER_KEY, "Other")
        to = "not a number" if i % 3 == 0 else "+46701234567"
        sends.append(send(key, sender, to, f"n{i}"))
    answers = await asyncio.wait_for(asyncio.gather(*sends), EVENT_TIMEOUT)
    for i, (status, document) in enumerate(answers):
        if i % 3 == 0:
            assert (status, document["code"]) == (400, "invalid_recipient")
            continue
        assert status == 202
        key = API_KEY if i % 2 else OTHER_KEY
        found, message = await gateway.get_json(f"/v1/messages/{document['id']}", key)
        assert found == 200  # committed before it was answered, under its own tenant
        assert message["from"] == ("Acme" if i % 2 else "Other")
    assert len({document["id"] for status, document in answers if status == 202}) == 40
