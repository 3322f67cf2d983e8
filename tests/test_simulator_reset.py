"""The reset routes: each clears what it says, for its tenant only, audited, or refuses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.config import config_from_dict
from gateway.server.appkeys import NETWORK, SMPP_SERVER, STORE
from tests.conftest import (
    EVENT_TIMEOUT,
    OTHER_KEY,
    RunningGateway,
    merged,
    running_gateway,
)
from tests.test_consent import call, inbound

A, B = "+46701234501", "+46701234502"
SLOW = "+46701234599"  # stays on its way for the whole test
OTHER = {"Authorization": f"Bearer {OTHER_KEY}"}


@pytest.fixture
async def resettable(config_dict: dict[str, Any]) -> AsyncIterator[RunningGateway]:
    config = merged(config_dict, {"simulator": {"allow_reset": True}})
    config["simulator"]["rules"].append({"number": SLOW, "latency": ["1h", "1h"]})
    async with running_gateway(config_from_dict(config)) as gateway:
        yield gateway


async def deliver(gateway: RunningGateway, sends: list[tuple[dict[str, str], str]]) -> None:
    """Send ``(headers, to)`` pairs and wait until each is final (committed)."""
    finals = gateway.finals()
    for headers, to in sends:
        sender = "Acme" if headers is gateway.headers else "Other"
        response = await gateway.http.post(
            f"{gateway.url}/v1/messages",
            json={"to": to, "from": sender, "body": f"to {to}"},
            headers=headers,
        )
        assert response.status == 202, await response.text()
    for _ in sends:
        await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)


async def inbox(gateway: RunningGateway, msisdn: str, key: str | None = None) -> list[str]:
    status, page = await call(gateway, "GET", f"/v1/simulator/handsets/{msisdn}/messages", key)
    assert status == 200
    return [m["body"] for m in page["messages"]]


async def audited(gateway: RunningGateway, key: str | None = None) -> list[dict[str, Any]]:
    _, page = await call(gateway, "GET", "/v1/audit", key)
    return [e for e in page["entries"] if e["action"] == "simulator_reset"]


async def test_one_handset_is_emptied_and_nothing_else(resettable: RunningGateway) -> None:
    gateway = resettable
    await deliver(gateway, [(gateway.headers, A), (gateway.headers, B), (OTHER, A)])
    status, answer = await call(gateway, "DELETE", f"/v1/simulator/handsets/{A}/messages")
    assert (status, answer) == (200, {"cleared": {"inbox": 1}})
    assert await inbox(gateway, A) == []
    assert await inbox(gateway, B) == [f"to {B}"]
    assert await inbox(gateway, A, OTHER_KEY) == [f"to {A}"]
    [entry] = await audited(gateway)
    assert entry["subject"] is not None and A not in str(entry)
    assert await audited(gateway, OTHER_KEY) == []


async def test_every_handset_of_the_tenant_is_emptied(resettable: RunningGateway) -> None:
    gateway = resettable
    await deliver(gateway, [(gateway.headers, A), (gateway.headers, B), (OTHER, A)])
    status, answer = await call(gateway, "DELETE", "/v1/simulator/handsets")
    assert (status, answer) == (200, {"cleared": {"inbox": 2}})
    assert await inbox(gateway, A) == [] and await inbox(gateway, B) == []
    assert await inbox(gateway, A, OTHER_KEY) == [f"to {A}"]
    assert len(await audited(gateway)) == 1


async def test_a_reset_clears_the_simulator_state_of_its_tenant_only(
    resettable: RunningGateway,
) -> None:
    gateway = resettable
    store, notices = gateway.app[STORE], gateway.app[SMPP_SERVER].notices
    await deliver(gateway, [(gateway.headers, A), (OTHER, A)])
    await inbound(gateway, "a reply", A)  # acme has no bound receiver: the MO is kept
    other_mo = await gateway.http.post(
        f"{gateway.url}/v1/simulator/inbound",
        json={"from": A, "to": "Other", "body": "theirs"},
        headers=OTHER,
    )
    assert other_mo.status == 202
    slow = (await (await gateway.send(to=SLOW)).json())["id"]
    assert (await store.notices.tenant_rows("acme"))["notices"] == 1
    other_notices = notices.outstanding("other"), await store.notices.tenant_rows("other")

    status, answer = await call(gateway, "POST", "/v1/simulator/reset")
    assert status == 200
    assert answer["cleared"] == {"inbox": 1, "inbound": 1, "notices": 1}
    assert await inbox(gateway, A) == []
    _, mine = await call(gateway, "GET", "/v1/inbound")
    assert mine["messages"] == []
    assert (await store.notices.tenant_rows("acme"))["notices"] == 0
    _, pending = await call(gateway, "GET", f"/v1/messages/{slow}")
    assert (pending["status"], pending["error"]) == ("deleted", "reset")  # not resumed later
    assert gateway.app[NETWORK].pending("acme", slow) is None
    _, log = await call(gateway, "GET", "/v1/messages")
    assert len(log["messages"]) == 2  # the traffic log stays unless asked

    assert await inbox(gateway, A, OTHER_KEY) == [f"to {A}"]
    _, theirs = await call(gateway, "GET", "/v1/inbound", OTHER_KEY)
    assert [m["body"] for m in theirs["messages"]] == ["theirs"]
    assert (notices.outstanding("other"), await store.notices.tenant_rows("other")) == other_notices
    assert len(await audited(gateway)) == 1


async def test_a_reset_may_clear_the_traffic_log_and_consent(resettable: RunningGateway) -> None:
    gateway = resettable
    await deliver(gateway, [(gateway.headers, A), (OTHER, A)])
    for headers in (gateway.headers, OTHER):
        response = await gateway.http.post(
            f"{gateway.url}/v1/opt-outs", json={"msisdns": [B]}, headers=headers
        )
        assert response.status == 200
    status, answer = await call(
        gateway, "POST", "/v1/simulator/reset", json={"traffic": True, "consent": True}
    )
    assert status == 200
    assert answer["cleared"]["messages"] == 1 and answer["cleared"]["consent_events"] == 1
    _, log = await call(gateway, "GET", "/v1/messages")
    assert log["messages"] == []
    _, state = await call(gateway, "GET", f"/v1/opt-outs/{B}")
    assert state["opted_out"] is False
    assert (await gateway.send(to=B)).status == 202  # no longer blocked, in memory either

    _, theirs = await call(gateway, "GET", "/v1/messages", OTHER_KEY)
    assert len(theirs["messages"]) == 1
    _, their_state = await call(gateway, "GET", f"/v1/opt-outs/{B}", OTHER_KEY)
    assert their_state["opted_out"] is True


async def test_a_reset_with_bad_flags_is_refused(resettable: RunningGateway) -> None:
    for body in ({"traffic": "yes"}, {"everything": True}):
        status, problem = await call(resettable, "POST", "/v1/simulator/reset", json=body)
        assert (status, problem["code"]) == (400, "invalid_request")
    assert await audited(resettable) == []


async def test_every_reset_is_refused_unless_allowed(gateway: RunningGateway) -> None:
    await deliver(gateway, [(gateway.headers, A)])
    for method, path in (
        ("DELETE", f"/v1/simulator/handsets/{A}/messages"),
        ("DELETE", "/v1/simulator/handsets"),
        ("POST", "/v1/simulator/reset"),
        ("PUT", "/v1/simulator/chaos"),
        ("DELETE", "/v1/simulator/chaos"),
    ):
        status, problem = await call(gateway, method, path)
        assert (status, problem["code"]) == (403, "reset_disabled"), path
    assert await inbox(gateway, A) == [f"to {A}"]
    assert await audited(gateway) == []
