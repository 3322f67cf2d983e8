"""Two gateway instances on one PostgreSQL database, over real sockets: what one instance
made reaches a receiver, a registry check or a stream on the other.

Both instances are given the same key-encryption key, so they share the registry keys the
database keeps (`privacy.shared_keys`) and a number has one pseudonym on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.config import config_from_dict
from gateway.events import MESSAGE_ACCEPTED
from gateway.server.appkeys import BUS, EVENTS, METRICS, SHARED_EVENTS, STORE
from smpp.bodies import DeliverSm, SubmitSmResp
from smpp.pdu import CommandId, CommandStatus, Pdu
from tests.conftest import (
    EVENT_TIMEOUT,
    RunningGateway,
    base_config,
    make_kek_file,
    merged,
    running_gateway,
)
from tests.postgres import postgres_dsn
from tests.smpp_clients import RawEsme
from tests.sse import open_stream
from tests.test_consent import call, submit_code
from tests.test_process import gateway_process, write_toml
from tests.test_smpp_notices import answer, receiver
from tests.test_smpp_server import submit_fields

__all__ = ["postgres_dsn"]

pytestmark = pytest.mark.postgres

C = CommandId
S = CommandStatus
HANDSET = "+46701112233"
# Delivered after a second: long enough to record an opt-out on the other instance first.
SLOW = "+4670555"


def instance_config(tmp_path: Path, dsn: str, name: str) -> dict[str, Any]:
    kek = tmp_path / "kek"
    if not kek.exists():
        make_kek_file(kek)
    return merged(
        base_config(tmp_path / name),
        {
            "instance": {"id": name},
            "storage": {"backend": "postgres", "dsn": dsn},
            "privacy": {"kek_file": str(kek)},
            # Announcements only when a stream opens or closes, so a test can count them.
            "cluster": {"notice_poll": "200ms", "notice_lease": "3s", "announce_interval": "60s"},
            # A stream's instance finds a client that went away at its next ping.
            "events": {"ping_interval": "100ms"},
            "simulator": {
                "rules": [
                    {"prefix": "+4670999", "outcome": "undeliverable"},
                    {"prefix": SLOW, "outcome": "delivered", "latency": ["1s", "1s"]},
                ]
            },
        },
    )


@pytest.fixture
async def pair(
    tmp_path: Path, postgres_dsn: str
) -> AsyncIterator[tuple[RunningGateway, RunningGateway]]:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    config_a = instance_config(tmp_path, postgres_dsn, "a")
    config_b = instance_config(tmp_path, postgres_dsn, "b")
    async with (
        running_gateway(config_from_dict(config_a)) as a,
        running_gateway(config_from_dict(config_b)) as b,
    ):
        yield a, b


async def submit_over_smpp(port: int, count: int, to: str = "46701234567") -> set[str]:
    """``count`` submits asking for receipts, through a transmitter; their message ids."""
    transmitter = await RawEsme.connect(port)
    try:
        await transmitter.bind(command=C.bind_transmitter)
        for sequence in range(2, 2 + count):
            await transmitter.send(
                Pdu.make(C.submit_sm, sequence, **submit_fields(to=to, registered_delivery=1))
            )
        ids = set()
        for _ in range(count):
            response = await transmitter.next()
            assert response.command_status == S.ESME_ROK
            ids.add(response.body(SubmitSmResp)["message_id"])
        return ids
    finally:
        await transmitter.close()


async def delivered(esme: RawEsme, count: int) -> list[Pdu]:
    """The next ``count`` deliver_sm, each acknowledged."""
    found: list[Pdu] = []
    while len(found) < count:
        pdu = await esme.next()
        if pdu.command_id == C.deliver_sm:
            await esme.send(answer(pdu))
            found.append(pdu)
    return found


def receipt_id(pdu: Pdu) -> str:
    text = pdu.body(DeliverSm)["short_message"].decode()
    return text.split("id:", 1)[1].split(" ", 1)[0]


async def test_receipts_for_submits_on_a_reach_the_receiver_bound_on_b(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    esme = await receiver(b)
    try:
        ids = await submit_over_smpp(a.smpp_port, 20)
        receipts = await delivered(esme, 20)
    finally:
        await esme.close()
    assert {receipt_id(pdu) for pdu in receipts} == ids


async def test_notices_kept_while_nobody_was_bound_reach_a_receiver_that_binds_on_b(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    finals = a.finals()
    ids = await submit_over_smpp(a.smpp_port, 5)
    for _ in ids:
        await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    esme = await receiver(b)
    try:
        receipts = await delivered(esme, 5)
    finally:
        await esme.close()
    assert {receipt_id(pdu) for pdu in receipts} == ids


async def test_an_mo_made_on_a_reaches_the_receiver_on_b(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    esme = await receiver(b)
    try:
        status, _ = await call(
            a,
            "POST",
            "/v1/simulator/inbound",
            json={"from": HANDSET, "to": "+46700000001", "body": "hello from a"},
        )
        assert status == 202
        [mo] = await delivered(esme, 1)
    finally:
        await esme.close()
    assert mo.body(DeliverSm)["short_message"] == b"hello from a"


async def test_a_stop_recorded_on_b_refuses_the_next_submit_on_a(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    assert await submit_code(a, to=HANDSET) == "accepted"  # the state is cached on a now
    status, _ = await call(b, "POST", "/v1/opt-outs", json={"msisdns": [HANDSET]})
    assert status in (200, 201)
    assert await submit_code(a, to=HANDSET) == "recipient_opted_out"


async def test_a_message_accepted_on_a_before_an_opt_out_on_b_is_not_delivered(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    finals = a.finals()
    number = SLOW + "0001"
    response = await a.send(to=number)
    assert response.status == 202
    message_id = (await response.json())["id"]
    status, _ = await call(b, "POST", "/v1/opt-outs", json={"msisdns": [number]})
    assert status in (200, 201)
    final = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    assert (final.id, final.status.value, final.error) == (message_id, "rejected", "opted_out")
    _, handset = await b.get_json(f"/v1/simulator/handsets/{number}/messages")
    assert handset["messages"] == []
    rechecks = a.app[METRICS].registry.get_sample_value(
        "smsgw_consent_rechecks_total", {"where": "delivery"}
    )
    assert rechecks  # the delivery tick read the registry, whether a's notification came or not


async def test_an_event_made_on_a_appears_on_bs_stream(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    async with open_stream(b) as stream:
        await until_followed(a, "acme")
        response = await a.send(to=HANDSET)
        message_id = (await response.json())["id"]
        [*_, accepted] = await stream.until(MESSAGE_ACCEPTED, message_id=message_id)
    assert accepted.data["to"] == HANDSET  # read back from the traffic log, not sent
    assert int(accepted.id or 0) > 0


async def until_followed(gateway: RunningGateway, tenant: str, followed: bool = True) -> None:
    """Until ``gateway`` heard that another instance follows ``tenant``'s events (or not)."""
    async with asyncio.timeout(EVENT_TIMEOUT):
        await gateway.app[SHARED_EVENTS].followed_elsewhere(tenant, followed)


def notifications_sent(gateway: RunningGateway) -> float:
    registry = gateway.app[METRICS].registry
    return registry.get_sample_value("smsgw_bus_notifications_total", {"direction": "out"}) or 0.0


async def test_events_go_to_other_instances_only_while_one_follows_the_tenant(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair

    async def sent_while_submitting() -> float:
        """Notifications a sent while it took a submit and committed its first events."""
        before = notifications_sent(a)
        assert (await a.send(to=HANDSET)).status == 202
        await a.app[STORE].flush()
        await a.app[BUS].flush()
        return notifications_sent(a) - before

    assert a.app[EVENTS].followed_elsewhere == frozenset()
    async with open_stream(b):
        await until_followed(a, "acme")
        assert a.app[EVENTS].followed_elsewhere == {"acme"}  # not "other": nobody follows it
        assert await sent_while_submitting() > 0
    await until_followed(a, "acme", followed=False)
    assert await sent_while_submitting() == 0


async def test_after_the_listeners_are_killed_receipts_still_reach_b(
    pair: tuple[RunningGateway, RunningGateway], postgres_dsn: str
) -> None:
    a, b = pair
    esme = await receiver(b)
    try:
        admin = await asyncpg.connect(postgres_dsn)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database()"
                " AND application_name LIKE 'smsgw-bus-listener %'"
            )
        finally:
            await admin.close()
        assert killed == 2
        ids = await submit_over_smpp(a.smpp_port, 10)
        receipts = await delivered(esme, 10)
    finally:
        with contextlib.suppress(Exception):
            await esme.close()
    assert {receipt_id(pdu) for pdu in receipts} == ids


@pytest.mark.slow
async def test_receipts_a_killed_instance_held_reach_a_receiver_that_binds_on_another(
    tmp_path: Path, postgres_dsn: str
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    config_a = merged(
        instance_config(tmp_path, postgres_dsn, "a"), {"cluster": {"notice_lease": "1s"}}
    )
    config_path = tmp_path / "a" / "config.toml"
    write_toml(config_path, config_a)
    async with gateway_process(config_path) as killed:
        silent = await RawEsme.connect(killed.smpp_port)
        await silent.bind(command=C.bind_receiver)
        ids = await submit_over_smpp(killed.smpp_port, 10)
        held: set[str] = set()
        while len(held) < len(ids):  # delivered to a receiver that never answers
            held.add(receipt_id(await silent.next()))
        killed.process.send_signal(signal.SIGKILL)
        assert await killed.process.wait() == -signal.SIGKILL
        await silent.close()
    assert held == ids
    async with running_gateway(config_from_dict(instance_config(tmp_path, postgres_dsn, "b"))) as b:
        esme = await receiver(b)
        try:
            receipts = await delivered(esme, len(ids))  # once the dead instance's lease ran out
        finally:
            await esme.close()
    assert {receipt_id(pdu) for pdu in receipts} == ids


async def test_an_instance_that_starts_leaves_another_ones_messages_on_their_way_to_it(
    tmp_path: Path, postgres_dsn: str
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    number = SLOW + "0002"
    async with running_gateway(config_from_dict(instance_config(tmp_path, postgres_dsn, "a"))) as a:
        finals_a = a.finals()
        response = await a.send(to=number)
        assert response.status == 202
        message_id = (await response.json())["id"]
        config_b = instance_config(tmp_path, postgres_dsn, "b")
        async with running_gateway(config_from_dict(config_b)) as b:
            finals_b = b.finals()
            final = await asyncio.wait_for(finals_a.get(), EVENT_TIMEOUT)
            assert (final.id, final.status.value) == (message_id, "delivered")
            _, handset = await b.get_json(f"/v1/simulator/handsets/{number}/messages")
            assert [m["message_id"] for m in handset["messages"]] == [message_id]
            assert finals_b.empty()  # b did not play a's message out a second time


@pytest.mark.slow
async def test_a_killed_instances_messages_on_their_way_are_delivered_by_another(
    tmp_path: Path, postgres_dsn: str
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    number = SLOW + "0003"
    config_a = merged(
        instance_config(tmp_path, postgres_dsn, "a"), {"cluster": {"notice_lease": "1s"}}
    )
    config_path = tmp_path / "a" / "config.toml"
    write_toml(config_path, config_a)
    async with running_gateway(config_from_dict(instance_config(tmp_path, postgres_dsn, "b"))) as b:
        finals = b.finals()
        async with (
            gateway_process(config_path) as killed,
            b.http.post(
                f"{killed.url}/v1/messages",
                json={"to": number, "from": "Acme", "body": "on its way"},
                headers=b.headers,
            ) as response,
        ):
            assert response.status == 202
            message_id = (await response.json())["id"]
            killed.process.send_signal(signal.SIGKILL)  # within the message's 1 s latency
            assert await killed.process.wait() == -signal.SIGKILL
        final = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)  # once a's lease lapsed
    assert (final.id, final.status.value) == (message_id, "delivered")
