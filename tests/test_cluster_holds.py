"""What one instance holds in memory, changed through another: replace, forced outcomes,
erasure and tenant reset behave as on one gateway (`gateway.cluster.held`).

Two in-process instances on one fresh PostgreSQL database, over real sockets; messages
to ``SLOW`` take a minute, so whatever ends them sooner came through the other instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.config import config_from_dict
from gateway.server.appkeys import NETWORK, STORE
from smpp.bodies import SubmitSmResp
from smpp.pdu import CommandId, CommandStatus, Pdu
from tests.conftest import EVENT_TIMEOUT, RunningGateway, merged, running_gateway
from tests.postgres import postgres_dsn
from tests.smpp_clients import RawEsme
from tests.test_admin import admin_call
from tests.test_cluster_fanout import instance_config
from tests.test_consent import call
from tests.test_smpp_server import submit_fields

__all__ = ["postgres_dsn"]

pytestmark = pytest.mark.postgres

C = CommandId
S = CommandStatus
SLOW = "+4670777"


@pytest.fixture
async def pair(
    tmp_path: Path, postgres_dsn: str
) -> AsyncIterator[tuple[RunningGateway, RunningGateway]]:
    configs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        config = instance_config(tmp_path, postgres_dsn, name)
        config["simulator"]["rules"] = [
            {"prefix": SLOW, "outcome": "delivered", "latency": ["60s", "60s"]}
        ]
        configs.append(config_from_dict(merged(config, {"simulator": {"allow_reset": True}})))
    async with running_gateway(configs[0]) as a, running_gateway(configs[1]) as b:
        yield a, b


async def accepted(gateway: RunningGateway, to: str, **fields: str) -> str:
    response = await gateway.send(to=to, **fields)
    assert response.status == 202, await response.text()
    return str((await response.json())["id"])


async def replace_over_smpp(port: int, message_id: str, body: bytes) -> int:
    """The command_status of a replace_sm through a transmitter bound on ``port``."""
    esme = await RawEsme.connect(port)
    try:
        await esme.bind(command=C.bind_transmitter)
        await esme.send(Pdu.make(C.replace_sm, 2, message_id=message_id, short_message=body))
        return int((await esme.next()).command_status)
    finally:
        await esme.close()


async def force(gateway: RunningGateway, message_id: str, outcome: str) -> tuple[int, Any]:
    return await call(
        gateway, "POST", f"/v1/messages/{message_id}/outcome", json={"outcome": outcome}
    )


async def test_a_replace_through_b_changes_what_a_delivers_of_a_message_it_scheduled(
    pair: tuple[RunningGateway, RunningGateway], postgres_dsn: str
) -> None:
    a, b = pair
    number = "+46701110001"
    send_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    message_id = await accepted(a, number, body="original", send_at=send_at)
    assert a.app[NETWORK].pending("acme", message_id) is not None  # a holds it
    payloads: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(postgres_dsn)
    try:
        await listener.add_listener("smsgw_held", lambda *args: payloads.put_nowait(args[-1]))
        assert await replace_over_smpp(b.smpp_port, message_id, b"replaced") == S.ESME_ROK
        asked = await asyncio.wait_for(payloads.get(), EVENT_TIMEOUT)
    finally:
        await listener.close()
    assert message_id in asked and "replaced" not in asked  # the new body crossed sealed
    status, document = await force(b, message_id, "delivered")
    assert (status, document["status"]) == (200, "delivered"), document
    _, handset = await b.get_json(f"/v1/simulator/handsets/{number}/messages")
    assert [m["body"] for m in handset["messages"]] == ["replaced"]
    # Final now: through either instance, the answer one gateway gives.
    assert await replace_over_smpp(b.smpp_port, message_id, b"late") == S.ESME_RREPLACEFAIL
    assert await replace_over_smpp(a.smpp_port, message_id, b"late") == S.ESME_RREPLACEFAIL


async def test_a_replace_through_b_refused_by_a_gets_the_answer_of_one_gateway(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    message_id = await accepted(a, SLOW + "0001", body="short")
    # Two segments for a message accepted with one: a refuses, and b answers as a would.
    assert await replace_over_smpp(b.smpp_port, message_id, b"x" * 200) == S.ESME_RINVMSGLEN
    outgoing = a.app[NETWORK].outgoing("acme", message_id)
    assert outgoing is not None and outgoing.body == "short"


async def test_forcing_delivery_through_b_of_a_slow_message_on_a_delivers_it_at_once(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    finals = a.finals()
    message_id = await accepted(a, SLOW + "0002")
    status, document = await force(b, message_id, "delivered")
    assert (status, document["status"]) == (200, "delivered"), document
    final = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    assert (final.id, final.status.value) == (message_id, "delivered")
    assert a.app[NETWORK].pending("acme", message_id) is None
    # Another outcome for the same message is refused as for any final one.
    status, document = await force(b, message_id, "expired")
    assert (status, document["code"]) == (409, "not_pending"), document


async def test_an_erasure_through_b_stops_what_a_holds_for_the_subject(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    number = SLOW + "0003"
    finals = a.finals()
    esme = await RawEsme.connect(a.smpp_port)
    try:
        await esme.bind(command=C.bind_transmitter)
        fields = submit_fields(to=number.removeprefix("+"), registered_delivery=1)
        await esme.send(Pdu.make(C.submit_sm, 2, **fields))
        response = await esme.next()
        assert response.command_status == S.ESME_ROK
        message_id = response.body(SubmitSmResp)["message_id"]
    finally:
        await esme.close()
    assert a.app[NETWORK].pending_to("acme", number) == [message_id]
    status, counts = await call(b, "POST", f"/v1/subjects/{number}/erase")
    assert status == 200, counts
    # a cancelled it, committed, before b erased: it is never delivered.
    final = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    assert (final.id, final.status.value) == (message_id, "deleted")
    assert a.app[NETWORK].pending_to("acme", number) == []
    for gateway in (a, b):
        store = gateway.app[STORE]
        assert await store.notices.count_handset("acme", number) == 0  # its receipt too
        assert await store.inbox.count_handset("acme", number) == 0
        assert await store.traffic.get_message("acme", message_id) is None
        assert gateway.app[NETWORK].pending_to("acme", number) == []


async def test_a_tenant_reset_through_b_drops_the_messages_a_holds(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    on_its_way = await accepted(a, SLOW + "0004")
    send_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled = await accepted(a, "+46701110005", send_at=send_at)
    other = a.app[NETWORK]
    assert {other.pending("acme", m) is not None for m in (on_its_way, scheduled)} == {True}
    status, cleared = await call(b, "POST", "/v1/simulator/reset", json={})
    assert status == 200, cleared
    assert other.pending("acme", on_its_way) is None
    assert other.pending("acme", scheduled) is None
    for message_id in (on_its_way, scheduled):
        _, document = await b.get_json(f"/v1/messages/{message_id}")
        assert (document["status"], document["error"]) == ("deleted", "reset"), document


async def test_a_tenant_purge_through_b_drops_the_messages_a_holds(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    number = SLOW + "0006"
    message_id = await accepted(a, number)
    status, counts = await admin_call(b.http, "POST", f"{b.url}/admin/v1/tenants/acme/purge")
    assert status == 200, counts
    assert a.app[NETWORK].pending("acme", message_id) is None
    # Nothing a holds can write the purged tenant's rows back: a's forced delivery finds none.
    status, document = await force(a, message_id, "delivered")
    assert (status, document["code"]) == (409, "not_pending"), document
    assert await a.app[STORE].inbox.count_handset("acme", number) == 0


async def test_an_erasure_is_refused_while_a_live_instance_does_not_answer(
    pair: tuple[RunningGateway, RunningGateway], postgres_dsn: str
) -> None:
    a, b = pair
    number = "+46701110007"
    finals = a.finals()
    await accepted(a, number)
    assert (await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)).status.value == "delivered"
    connection = await asyncpg.connect(postgres_dsn)
    try:  # an instance the list shows alive, whose process never answers (it hangs)
        await connection.execute(
            "INSERT INTO instances (id, run, started_at, heartbeat_at, version)"
            " VALUES ('hung', 'x', extract(epoch from now()), extract(epoch from now()) + 3600,"
            " 'test')"
        )
        status, problem = await call(b, "POST", f"/v1/subjects/{number}/erase")
        assert (status, problem["code"]) == (503, "instance_unreachable"), problem
        _, handset = await b.get_json(f"/v1/simulator/handsets/{number}/messages")
        assert len(handset["messages"]) == 1  # nothing was erased
        await connection.execute("DELETE FROM instances WHERE id = 'hung'")
    finally:
        await connection.close()
    status, _ = await call(b, "POST", f"/v1/subjects/{number}/erase")
    assert status == 200
