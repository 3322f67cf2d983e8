"""The web inbox's API and page serving, over real sockets with a real aiohttp client.

The browser tests (test_web_inbox.py) drive the page; these pin the routes it reads
that test_http_inbox.py does not: threads, search, the operator's reads of them, the
``message.blocked`` event, data_coding in the detail, and the security headers on
every page response.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import smpplib.gsm
from hypothesis import given
from hypothesis import strategies as st

from gateway.encoding import Encoding
from gateway.server.http_ui import CONTENT_SECURITY_POLICY
from smpp.text import Alphabet, coding_of, data_coding_of
from tests.conftest import ADMIN_TOKEN, EVENT_TIMEOUT, OTHER_KEY, RunningGateway
from tests.smpp_clients import smpplib_esme
from tests.sse import open_stream
from tests.test_simulator_reset import resettable
from tests.test_smpp_server import submit_fields

HANDSET = "+46701234567"
__all__ = ["resettable"]  # a fixture: test controls on
LONG_UCS2 = "Price: 5 ✓ " + "a" * 189  # 200 characters: three UCS-2 parts


async def delivered(gateway: RunningGateway, *bodies: str, to: str = HANDSET) -> list[str]:
    """Send each body to ``to`` and wait until it is final; their ids."""
    finals = gateway.finals()
    ids = []
    for body in bodies:
        response = await gateway.send(to=to, body=body)
        assert response.status == 202, await response.text()
        ids.append((await response.json())["id"])
    for _ in bodies:
        await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    return ids


async def test_thread_joins_messages_bodies_and_replies_oldest_first(
    gateway: RunningGateway,
) -> None:
    [sent] = await delivered(gateway, "hello there")
    mo = {"from": HANDSET, "to": "Acme", "body": "hi back"}
    async with gateway.http.post(
        f"{gateway.url}/v1/simulator/inbound", json=mo, headers=gateway.headers
    ) as response:
        assert response.status == 202
    status, thread = await gateway.get_json("/v1/simulator/handsets/0701234567/thread")
    assert status == 200
    assert thread["msisdn"] == HANDSET
    mt, reply = thread["items"]
    assert (mt["direction"], mt["id"], mt["body"], mt["status"]) == (
        "mt",
        sent,
        "hello there",
        "delivered",
    )
    assert (reply["direction"], reply["body"], reply["from"]) == ("mo", "hi back", HANDSET)
    _, other = await gateway.get_json(f"/v1/simulator/handsets/{HANDSET}/thread", OTHER_KEY)
    assert other["items"] == []


async def test_thread_shows_smpp_parts_delivered_together_as_one_item(
    gateway: RunningGateway,
) -> None:

    text = "Привет, это длинное сообщение! " * 6
    parts, data_coding, esm_class = smpplib.gsm.make_parts(text)
    finals = gateway.finals()
    async with smpplib_esme(gateway.smpp_port) as esme:
        for part in parts:
            await esme.send(
                **submit_fields(text=part, data_coding=data_coding, esm_class=esm_class)
            )
        for _ in parts:
            assert (await esme.next("submit_sm_resp")).status == 0
    for _ in parts:
        await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    _, thread = await gateway.get_json(f"/v1/simulator/handsets/{HANDSET}/thread")
    [item] = thread["items"]
    assert item["body"] == text
    assert len(item["message_ids"]) == 3
    _, segments = await gateway.get_json(f"/v1/messages/{item['message_ids'][1]}/segments")
    assert (segments["client_part"]["seq"], segments["client_part"]["total"]) == (2, 3)
    _, detail = await gateway.get_json(f"/v1/messages/{item['message_ids'][1]}/detail")
    assert (detail["data_coding"], detail["message"]["encoding"]) == (8, "ucs2")


async def test_search_narrows_by_text_and_fields(gateway: RunningGateway) -> None:
    [parcel] = await delivered(gateway, "Your PARCEL is here")
    [long] = await delivered(gateway, LONG_UCS2, to="+46701112233")
    await delivered(gateway, "lost", to="+46709990001")  # undeliverable (conftest's rule)

    async def found(query: str, key: str | None = None) -> list[str]:
        status, page = await gateway.get_json(
            f"/v1/simulator/messages?{query}", *([key] if key else [])
        )
        assert status == 200, page
        return [m["id"] for m in page["messages"]]

    assert await found("q=parcel") == [parcel]
    _, page = await gateway.get_json("/v1/simulator/messages?q=parcel")
    assert page["messages"][0]["body"] == "Your PARCEL is here"
    assert await found("encoding=ucs2") == [long]
    assert await found("multipart=true") == [long]
    assert len(await found("interface=http")) == 3
    assert await found("interface=smpp") == []
    assert len(await found("status=undeliverable")) == 1
    assert await found("to=0701234567") == [parcel]
    assert await found("until=1") == []
    assert await found("blocked=true") == []
    assert await found("q=parcel", OTHER_KEY) == []
    first = await found("limit=1")
    _, page = await gateway.get_json("/v1/simulator/messages?limit=1")
    assert (await found(f"limit=1&cursor={page['next_cursor']}")) != first
    for bad in ("status=lost", "interface=pigeon", "multipart=yes", "until=soon", "q=" + "x" * 201):
        status, problem = await gateway.get_json(f"/v1/simulator/messages?{bad}")
        assert (status, problem["code"]) == (400, "invalid_request"), bad


async def test_a_refused_submit_is_a_blocked_event_and_no_row(gateway: RunningGateway) -> None:
    async with open_stream(gateway) as stream:
        async with gateway.http.post(
            f"{gateway.url}/v1/opt-outs", json={"msisdns": [HANDSET]}, headers=gateway.headers
        ) as response:
            assert response.status == 200
        refused = await gateway.send(body="offer")
        assert refused.status == 403
        events = await stream.until("message.blocked")
    blocked = events[-1].data
    assert {k: blocked[k] for k in ("to", "from", "interface", "code")} == {
        "to": HANDSET,
        "from": "Acme",
        "interface": "http",
        "code": "recipient_opted_out",
    }
    assert "body" not in blocked
    _, page = await gateway.get_json("/v1/simulator/messages")
    assert page["messages"] == []


def operator(tenant: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Smsgw-Tenant": tenant}


async def test_an_operator_token_reads_thread_and_search_as_the_tenant_it_names(
    gateway: RunningGateway,
) -> None:
    await delivered(gateway, "seen by the operator")
    for path in (f"/v1/simulator/handsets/{HANDSET}/thread", "/v1/simulator/messages"):
        async with gateway.http.get(f"{gateway.url}{path}", headers=operator()) as response:
            document = await response.json()
        found = document.get("items") or document.get("messages")
        assert [m["body"] for m in found] == ["seen by the operator"], path
        async with gateway.http.get(f"{gateway.url}{path}", headers=operator("other")) as other:
            document = await other.json()
        assert not (document.get("items") or document.get("messages")), path


@pytest.mark.parametrize(
    "path", ["/ui/", "/ui/app.js", "/ui/api.js", "/ui/app.css", "/ui/nothing.js", "/"]
)
async def test_every_page_response_carries_the_security_headers(
    gateway: RunningGateway, path: str
) -> None:
    async with gateway.http.get(f"{gateway.url}{path}", allow_redirects=False) as response:
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        if path == "/":
            assert (response.status, response.headers["Location"]) == (302, "/ui/")
        elif path == "/ui/nothing.js":
            assert response.status == 404
        else:
            assert response.status == 200
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


async def test_the_page_is_shipped_in_the_package_and_inlines_no_code(
    gateway: RunningGateway,
) -> None:
    async with gateway.http.get(f"{gateway.url}/ui/") as response:
        page = await response.text()
    assert response.content_type == "text/html"
    assert '<script type="module" src="app.js"></script>' in page
    assert "<style" not in page and " style=" not in page and " on" + "click=" not in page
    assert "http://" not in page and "https://" not in page


@given(st.sampled_from(list(Encoding)), st.sampled_from([None, 0, 1, 2, 3]))
def test_data_coding_of_names_what_coding_of_reads(
    encoding: Encoding, message_class: int | None
) -> None:
    coding = coding_of(data_coding_of(encoding, message_class))
    alphabet = {Encoding.GSM7: Alphabet.GSM, Encoding.UCS2: Alphabet.UCS2}.get(
        encoding, Alphabet.BINARY
    )
    assert (coding.alphabet, coding.message_class) == (alphabet, message_class)


async def refused(gateway: RunningGateway, number: str) -> None:
    """Opt ``number`` out, then send to it: refused, nothing stored."""
    async with gateway.http.post(
        f"{gateway.url}/v1/opt-outs", json={"msisdns": [number]}, headers=gateway.headers
    ) as response:
        assert response.status == 200
    response = await gateway.send(to=number, body="offer")
    assert response.status == 403


async def thread_items(gateway: RunningGateway, number: str, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else gateway.headers
    async with gateway.http.get(
        f"{gateway.url}/v1/simulator/handsets/{number}/thread", headers=headers
    ) as response:
        assert response.status == 200
        return (await response.json())["items"]


async def test_a_refused_submit_stays_in_the_thread_until_the_subject_is_erased(
    gateway: RunningGateway,
) -> None:
    number = "+46701234568"
    await refused(gateway, number)
    [blocked] = await thread_items(gateway, number)
    assert {k: v for k, v in blocked.items() if k != "at"} == {
        "direction": "blocked",
        "to": number,
        "from": "Acme",
        "interface": "http",
        "code": "recipient_opted_out",
    }
    _, page = await gateway.get_json("/v1/simulator/handsets")
    assert [h["msisdn"] for h in page["handsets"]] == [number]
    assert await thread_items(gateway, number, OTHER_KEY) == []  # the tenant's own

    async with gateway.http.post(
        f"{gateway.url}/v1/subjects/{number}/erase", headers=gateway.headers
    ) as response:
        assert response.status == 200
    assert await thread_items(gateway, number) == []
    _, page = await gateway.get_json("/v1/simulator/handsets")
    assert page["handsets"] == []


async def test_a_simulator_reset_forgets_the_refused_submits(resettable: RunningGateway) -> None:
    gateway = resettable
    await refused(gateway, HANDSET)
    assert [item["direction"] for item in await thread_items(gateway, HANDSET)] == ["blocked"]
    async with gateway.http.post(
        f"{gateway.url}/v1/simulator/reset", json={}, headers=gateway.headers
    ) as response:
        assert response.status == 200
    assert await thread_items(gateway, HANDSET) == []
