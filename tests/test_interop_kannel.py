"""Kannel, a real third-party ESME, bound to the gateway over SMPP.

sendsms in through smsbox, submit_sm from bearerbox, the DLR URL called back from
our receipt, long messages split by Kannel and joined again in the handset's inbox,
and an MO from a handset reaching the smsbox service URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import EVENT_TIMEOUT, RunningGateway, base_config, merged
from tests.interop.kannel import Kannel, KannelAccount, running_kannel

pytestmark = [pytest.mark.interop, pytest.mark.slow]

SENDER = "+46700000001"  # one of the tenant's numbers
HANDSET = "+46701234567"
# Kannel's dlr-url types: 1 delivered, 2 failed, 4 buffered, 8 SMSC accepted, 16 rejected.
DLR_DELIVERED, DLR_INTERMEDIATE = "1", {"4", "8"}


class KannelCalls:
    """A local web server that records what smsbox calls: DLR URLs and the service URL."""

    def __init__(self) -> None:
        self.base = ""  # the server's URL, once it listens
        self.calls: dict[str, asyncio.Queue[dict[str, str]]] = {
            "/dlr": asyncio.Queue(),
            "/mo": asyncio.Queue(),
        }

    async def record(self, request: web.Request) -> web.Response:
        await self.calls[request.path].put(dict(request.query))
        return web.Response(text="")

    async def next(self, path: str) -> dict[str, str]:
        return await asyncio.wait_for(self.calls[path].get(), EVENT_TIMEOUT)


@pytest.fixture
def config_dict(tmp_path: Path) -> dict[str, Any]:
    # A network slower than the loopback: a receipt that follows its submit_sm_resp
    # within a millisecond is no test of a client's DLR matching, just of a race.
    return merged(base_config(tmp_path), {"simulator": {"latency": ["50ms", "100ms"]}})


@pytest.fixture
async def kannel_calls() -> AsyncIterator[KannelCalls]:
    calls = KannelCalls()
    app = web.Application()
    for path in calls.calls:
        app.router.add_get(path, calls.record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    calls.base = f"http://{host}:{port}"
    try:
        yield calls
    finally:
        await runner.cleanup()


@pytest.fixture
async def kannel(
    gateway: RunningGateway, kannel_calls: KannelCalls, tmp_path: Path
) -> AsyncIterator[Kannel]:
    account = KannelAccount("acme", "acme-pw")
    async with running_kannel(
        tmp_path / "kannel", gateway.smpp_port, account, f"{kannel_calls.base}/mo"
    ) as running:
        yield running


async def test_sendsms_with_dlr_mask_31_gets_the_delivered_callback(
    gateway: RunningGateway, kannel: Kannel, kannel_calls: KannelCalls
) -> None:
    status, text = await kannel.sendsms(
        gateway.http,
        **{
            "from": SENDER,
            "to": HANDSET.removeprefix("+"),
            "text": "Your code is 1234",
            "dlr-mask": "31",
            "dlr-url": f"{kannel_calls.base}/dlr?type=%d&smsc_id=%F",
        },
    )
    assert (status, text) == (202, "0: Accepted for delivery"), kannel.logs()

    reports = [await kannel_calls.next("/dlr")]
    while reports[-1]["type"] in DLR_INTERMEDIATE:
        reports.append(await kannel_calls.next("/dlr"))
    assert reports[-1]["type"] == DLR_DELIVERED, (reports, kannel.logs())

    # Kannel matched our receipt to its submit by our id, which it passes on as %F.
    status, message = await gateway.get_json(f"/v1/messages/{reports[-1]['smsc_id']}")
    assert status == 200
    assert (message["status"], message["to"], message["from"]) == ("delivered", HANDSET, SENDER)


async def test_long_message_arrives_joined_in_the_handset_inbox(
    gateway: RunningGateway, kannel: Kannel
) -> None:
    finals = gateway.finals()
    body = " ".join(f"part of a long message {i}." for i in range(12))  # > 2 segments
    status, _ = await kannel.sendsms(
        gateway.http, **{"from": SENDER, "to": HANDSET.removeprefix("+"), "text": body}
    )
    assert status == 202, kannel.logs()

    inbox: list[dict[str, Any]] = []
    while not inbox or inbox[0]["parts_missing"]:
        final = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
        assert final.status.value == "delivered"
        status, document = await gateway.get_json(f"/v1/simulator/handsets/{HANDSET}/messages")
        assert status == 200
        inbox = document["messages"]
    assert len(inbox) == 1
    assert inbox[0]["body"] == body
    assert inbox[0]["from"] == SENDER
    assert len(inbox[0]["message_ids"]) >= 3  # Kannel split it; the inbox joined it


async def test_mo_from_a_handset_reaches_the_smsbox_service(
    gateway: RunningGateway, kannel: Kannel, kannel_calls: KannelCalls
) -> None:
    async with gateway.http.post(
        f"{gateway.url}/v1/simulator/inbound",
        json={"from": HANDSET, "to": SENDER, "body": "hello from the handset"},
        headers=gateway.headers,
    ) as response:
        assert response.status == 202

    call = await kannel_calls.next("/mo")
    assert call == {"from": HANDSET, "to": SENDER, "text": "hello from the handset"}, kannel.logs()
