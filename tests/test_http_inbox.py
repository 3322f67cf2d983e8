"""The web inbox's API (gateway/server/http_inbox.py) against the running gateway."""

from __future__ import annotations

import asyncio

from tests.conftest import EVENT_TIMEOUT, OTHER_KEY, RunningGateway


async def _delivered(gateway: RunningGateway, **message: str) -> str:
    """Send a message and wait until it is final; its id."""
    finals = gateway.finals()
    response = await gateway.send(**message)
    assert response.status == 202, await response.text()
    message_id: str = (await response.json())["id"]
    while (await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)).id != message_id:
        pass
    return message_id


async def test_handset_list_shows_each_handset_newest_first(gateway: RunningGateway) -> None:
    await _delivered(gateway, to="+46701234567", body="first")
    await _delivered(gateway, to="+46709990001", body="never arrives")
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
    message_id = await _delivered(gateway, body=long_text)
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
    await _delivered(gateway, body="for acme only")
    status, page = await gateway.get_json("/v1/simulator/handsets", key=OTHER_KEY)
    assert (status, page) == (200, {"handsets": []})
    status, problem = await gateway.get_json("/v1/simulator/handsets", key="wrong")
    assert (status, problem["code"]) == (401, "unauthorized")
