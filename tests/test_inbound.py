"""``GET /v1/inbound``: what handsets sent to a tenant's numbers, and how long it stays."""

from __future__ import annotations

from typing import Any

from gateway.config import config_from_dict
from gateway.server.appkeys import RETENTION
from tests.conftest import OTHER_KEY, ManualClock, RunningGateway, running_gateway
from tests.test_consent import call, inbound
from tests.test_retention import JANUARY

HANDSET = "+46701234567"


async def test_an_mo_appears_newest_first_with_its_keyword(gateway: RunningGateway) -> None:
    first = await inbound(gateway, "hello there", HANDSET)
    stop = await inbound(gateway, "STOP", "+46701234568")
    status, page = await gateway.get_json("/v1/inbound")
    assert status == 200
    assert [m["id"] for m in page["messages"]] == [stop["id"], first["id"]]
    newest, oldest = page["messages"]
    assert newest["keyword"] == "stop" and newest["from"] == "+46701234568"
    assert oldest == {
        "id": first["id"],
        "from": HANDSET,
        "to": "+46700000001",
        "body": "hello there",
        "keyword": None,
        "received_at": first["received_at"],
    }
    assert page["next_cursor"] is None
    status, one = await gateway.get_json("/v1/inbound?limit=1")
    assert [m["id"] for m in one["messages"]] == [stop["id"]]
    status, rest = await gateway.get_json(f"/v1/inbound?limit=1&cursor={one['next_cursor']}")
    assert [m["id"] for m in rest["messages"]] == [first["id"]]
    status, _ = await gateway.get_json("/v1/inbound?cursor=nope")
    assert status == 400


async def test_another_tenants_mo_is_invisible(gateway: RunningGateway) -> None:
    await inbound(gateway, "for acme only")
    status, page = await gateway.get_json("/v1/inbound", key=OTHER_KEY)
    assert status == 200 and page == {"messages": [], "next_cursor": None}


async def test_export_holds_the_subjects_mo_and_erasure_removes_it(
    gateway: RunningGateway,
) -> None:
    mine = await inbound(gateway, "my reply", HANDSET)
    theirs = await inbound(gateway, "their reply", "+46701234568")
    status, export = await call(gateway, "GET", f"/v1/subjects/{HANDSET}/export")
    assert status == 200
    assert [(m["message_id"], m["body"]) for m in export["sent_to_tenant"]] == [
        (mine["id"], "my reply")
    ]
    status, erased = await call(gateway, "POST", f"/v1/subjects/{HANDSET}/erase")
    assert status == 200 and erased["erased"]["inbound"] == 1
    _, page = await gateway.get_json("/v1/inbound")
    assert [m["id"] for m in page["messages"]] == [theirs["id"]]


async def test_retention_erases_an_mo_after_body_ttl(config_dict: dict[str, Any]) -> None:
    clock = ManualClock(JANUARY)
    config = config_from_dict(
        {**config_dict, "privacy": {**config_dict["privacy"], "body_ttl": "1h"}}
    )
    async with running_gateway(config, clock) as gateway:
        old = await inbound(gateway, "old reply")
        clock.advance(1800)
        await gateway.app[RETENTION].run()
        _, page = await gateway.get_json("/v1/inbound")
        assert [m["id"] for m in page["messages"]] == [old["id"]]  # within body_ttl: kept
        clock.advance(1801)
        fresh = await inbound(gateway, "new reply")
        report = await gateway.app[RETENTION].run()
        assert report.bodies_erased == 1
        _, page = await gateway.get_json("/v1/inbound")
        assert [m["id"] for m in page["messages"]] == [fresh["id"]]
