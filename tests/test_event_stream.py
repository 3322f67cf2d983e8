"""``GET /v1/events`` over real sockets: order, resumption, isolation, slow consumers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import pytest

from gateway.config import config_from_dict
from gateway.events import MESSAGE_STATUS, Subscription
from gateway.server.appkeys import EVENTS
from tests.conftest import (
    API_KEY,
    EVENT_TIMEOUT,
    OTHER_KEY,
    RunningGateway,
    base_config,
    merged,
    running_gateway,
)
from tests.smpp_clients import smpplib_esme
from tests.sse import StreamEvent, open_stream
from tests.test_smpp_server import submit_fields


def statuses(events: list[StreamEvent], message_id: str) -> list[str]:
    return [
        e.data["status"]
        for e in events
        if e.data.get("message_id") == message_id and e.type.startswith("message.")
    ]


async def test_every_state_of_an_http_submit_arrives_in_order(gateway: RunningGateway) -> None:
    async with open_stream(gateway) as stream:
        response = await gateway.send(to="+46701234567")
        assert response.status == 202
        message_id = (await response.json())["id"]
        events = await stream.until(MESSAGE_STATUS, message_id=message_id, status="delivered")
    assert statuses(events, message_id) == ["accepted", "enroute", "delivered"]
    accepted = events[0].data
    assert accepted["type"] == "message.accepted"
    assert accepted["to"] == "+46701234567" and accepted["from"] == "Acme"
    assert accepted["interface"] == "http" and accepted["segments"] == 1
    assert events[-1].data["error"] is None
    [received] = [e for e in events if e.type == "handset.received"]
    assert received.data["message_ids"] == [message_id]
    assert received.data["handset"] == "+46701234567"
    ids = [int(e.id or 0) for e in events]
    assert ids == sorted(ids)


async def test_every_state_of_an_smpp_submit_arrives_in_order(gateway: RunningGateway) -> None:
    async with open_stream(gateway) as stream, smpplib_esme(gateway.smpp_port) as esme:
        await esme.send(**submit_fields(to="46709990001"))  # a rule: undeliverable
        message_id = (await esme.next("submit_sm_resp")).message_id.decode()
        events = await stream.until(MESSAGE_STATUS, message_id=message_id, status="undeliverable")
    assert statuses(events, message_id) == ["accepted", "enroute", "undeliverable"]
    assert events[0].data["interface"] == "smpp"
    assert events[-1].data["error"] == "unknown_subscriber"
    assert not [e for e in events if e.type == "handset.received"]


@pytest.mark.parametrize("how", ["header", "query"])
async def test_a_reconnect_with_the_last_id_receives_what_was_missed(
    gateway: RunningGateway, how: str
) -> None:
    finals = gateway.finals()
    async with open_stream(gateway) as stream:
        response = await gateway.send()
        message_id = (await response.json())["id"]
        accepted = await stream.next()
    assert accepted.type == "message.accepted" and accepted.id is not None
    while (await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)).id != message_id:
        pass  # disconnected meanwhile: enroute and delivered were published to nobody
    resume: dict[str, Any] = (
        {"headers": {"Last-Event-ID": accepted.id}} if how == "header" else {"after": accepted.id}
    )
    async with open_stream(gateway, **resume) as stream:
        missed = await stream.until(MESSAGE_STATUS, message_id=message_id, status="delivered")
    assert statuses(missed, message_id) == ["enroute", "delivered"]
    assert missed[0].type == "message.status"


async def test_an_id_from_an_earlier_run_is_announced_as_a_gap(gateway: RunningGateway) -> None:
    async with open_stream(gateway, after="999999") as stream:
        first = await stream.next()
    assert first.type == "gap" and first.id is None
    assert first.data["after"] == "999999"


async def test_another_tenant_sees_nothing(gateway: RunningGateway) -> None:
    async with open_stream(gateway, key=OTHER_KEY) as other, open_stream(gateway) as acme:
        message_id = (await (await gateway.send()).json())["id"]
        inbound = await gateway.http.post(
            f"{gateway.url}/v1/simulator/inbound",
            json={"from": "+46701234568", "to": "Acme", "body": "STOP"},
            headers=gateway.headers,
        )
        assert inbound.status == 202
        # The delivery and the opt-out race each other: wait for the later of the two.
        seen = await acme.until("consent.changed")
        if not any(e.data.get("status") == "delivered" for e in seen):
            await acme.until(MESSAGE_STATUS, message_id=message_id, status="delivered")
        # Ids are one sequence for all tenants: other's first event comes after all of acme's.
        others = await gateway.http.post(
            f"{gateway.url}/v1/messages",
            json={"to": "+46701234567", "from": "Other", "body": "hi"},
            headers={"Authorization": f"Bearer {OTHER_KEY}"},
        )
        other_id = (await others.json())["id"]
        first = await other.next()
    assert first.type == "message.accepted" and first.data["message_id"] == other_id


async def test_mo_and_opt_out_arrive_with_the_keyword(gateway: RunningGateway) -> None:
    async with open_stream(gateway) as stream:
        response = await gateway.http.post(
            f"{gateway.url}/v1/simulator/inbound",
            json={"from": "0701234567", "to": "+46700000001", "body": "stop"},
            headers=gateway.headers,
        )
        assert response.status == 202
        mo_id = (await response.json())["id"]
        events = await stream.until("mo.received")
    # The opt-out is committed before the tenant hears of the MO that asked for it.
    assert [e.type for e in events] == ["consent.changed", "mo.received"]
    mo = events[-1]
    assert mo.data["message_id"] == mo_id and mo.data["keyword"] == "stop"
    assert mo.data["from"] == "+46701234567" and mo.data["to"] == "+46700000001"
    consent = events[0].data
    assert consent["kind"] == "opted_out" and len(consent["subject"]) > 10
    assert "+46701234567" not in str(consent)


async def test_an_idle_stream_is_pinged(tmp_path: Any) -> None:
    config = config_from_dict(merged(base_config(tmp_path), {"events": {"ping_interval": "20ms"}}))
    async with running_gateway(config) as gateway, open_stream(gateway) as stream:
        assert await stream.block() == [": ping", ""]
        assert (await gateway.send()).status == 202
        assert (await stream.next()).type == "message.accepted"


async def test_a_bad_cursor_or_key_is_refused(gateway: RunningGateway) -> None:
    for params, key, status in (({"after": "x1"}, API_KEY, 400), ({}, "wrong", 401)):
        async with gateway.http.get(
            f"{gateway.url}/v1/events", params=params, headers={"Authorization": f"Bearer {key}"}
        ) as response:
            assert response.status == status
            assert response.content_type == "application/problem+json"


async def test_a_client_that_does_not_read_is_disconnected_and_memory_stays_bounded(
    tmp_path: Any,
) -> None:
    limit = 20
    config = config_from_dict(
        merged(base_config(tmp_path), {"events": {"subscriber_queue": limit}})
    )
    async with running_gateway(config) as gateway:
        bus = gateway.app[EVENTS]
        subscribed: asyncio.Queue[Subscription] = asyncio.Queue()
        subscribe = bus.subscribe

        def spy(tenant: str, after: int | None = None) -> Subscription:
            subscription = subscribe(tenant, after)
            subscribed.put_nowait(subscription)
            return subscription

        bus.subscribe = spy  # type: ignore[method-assign]
        host, port = gateway.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (host, int(port)))
        request = f"GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\r\n"
        await loop.sock_sendall(sock, request.encode())
        subscription = await asyncio.wait_for(subscribed.get(), EVENT_TIMEOUT)
        peak, pushed = 0, 0
        padding = "x" * 1000
        while not subscription.dropped and pushed < 100_000:
            bus.publish("acme", MESSAGE_STATUS, str(pushed), padding, None)
            pushed += 1
            peak = max(peak, subscription.pending())
            if pushed % 10 == 0:
                await asyncio.sleep(0)  # let the handler write (or find itself blocked)
        assert subscription.dropped, "never dropped: the stream buffered without bound"
        assert peak <= limit
        assert bus.subscribers("acme") == 0
        # The connection is cut (end of stream or reset; a timeout fails), though the
        # client never read a byte of what was sent.
        try:
            with contextlib.suppress(ConnectionResetError):
                async with asyncio.timeout(EVENT_TIMEOUT):
                    while await loop.sock_recv(sock, 65536):
                        pass
        finally:
            sock.close()
        assert pushed * len(padding) > 10 * 65536, "too little was pushed to fill the buffers"
