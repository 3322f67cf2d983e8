"""Receipts over real sockets: retried with backoff, given up for good, counted exactly."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from gateway.config import config_from_dict
from gateway.server.appkeys import SMPP_SERVER, STORE
from smpp.pdu import CommandId, CommandStatus, Pdu, Tag
from tests.conftest import EVENT_TIMEOUT, RunningGateway, running_gateway
from tests.smpp_clients import RawEsme
from tests.test_smpp_server import submit_fields

C = CommandId
S = CommandStatus


async def submit_with_receipts(
    gateway: RunningGateway, count: int, to: str = "46701234567"
) -> None:
    """``count`` submits asking for a receipt, from a transmitter; returns once all are final."""
    finals = gateway.finals()
    transmitter = await RawEsme.connect(gateway.smpp_port)
    await transmitter.bind(command=C.bind_transmitter)
    for sequence in range(2, 2 + count):
        await transmitter.send(
            Pdu.make(C.submit_sm, sequence, **submit_fields(to=to, registered_delivery=1))
        )
    for _ in range(count):
        assert (await transmitter.next()).command_status == S.ESME_ROK
    for _ in range(count):
        await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    await transmitter.close()


async def receiver(gateway: RunningGateway) -> RawEsme:
    esme = await RawEsme.connect(gateway.smpp_port)
    assert (await esme.bind(command=C.bind_receiver)).command_status == S.ESME_ROK
    return esme


def answer(deliver: Pdu, status: int = S.ESME_ROK) -> Pdu:
    return Pdu.make(C.deliver_sm_resp, deliver.sequence_number, status=status, message_id="")


async def settled(esme: RawEsme, sequence: int) -> list[Pdu]:
    """Wait until the gateway handled everything this ESME sent before (PDUs go in order).

    Returns what the gateway sent meanwhile, before the enquire_link_resp.
    """
    await esme.send(Pdu.make(C.enquire_link, sequence))
    before = []
    while (pdu := await esme.next()).command_id != C.enquire_link_resp:
        before.append(pdu)
    return before


async def scraped(gateway: RunningGateway, name: str, **labels: str) -> float:
    text = await (await gateway.http.get(f"{gateway.url}/metrics")).text()
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = "^" + re.escape(f"{name}{{{selector}}}" if labels else name) + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def stored_notices(gateway: RunningGateway) -> int:
    store = gateway.app[STORE]
    await store.flush()
    return sum((await store.notices.count_by_tenant()).values())


async def test_temporary_errors_back_off_and_deliver_in_the_end(
    config_dict: dict[str, Any],
) -> None:
    config_dict["smpp"].update({"notice_first_retry": "100ms", "notice_max_retry": "400ms"})
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        await submit_with_receipts(gateway, 10)
        esme = await receiver(gateway)
        # Answer every deliver_sm "try later" for one second. Without a backoff the ten
        # receipts came back at once, tens of thousands of times a second.
        sent = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while (left := deadline - loop.time()) > 0:
            try:
                deliver = await asyncio.wait_for(esme.next(), left)
            except TimeoutError:
                break
            assert deliver.command_id == C.deliver_sm
            sent += 1
            await esme.send(answer(deliver, S.ESME_RX_T_APPN))
        # Attempts at 0, 0.1, 0.3, 0.7 s (and 1.1 s): at most five per receipt in a second.
        assert 20 <= sent <= 50
        assert await scraped(gateway, "smsgw_smpp_notice_retries_total", tenant="acme") >= 20

        acknowledged: set[str] = set()
        while len(acknowledged) < 10:
            deliver = await esme.next()
            acknowledged.add(str(deliver.tlvs[Tag.receipted_message_id]))
            await esme.send(answer(deliver))
        assert await settled(esme, 9) == []
        assert gateway.app[SMPP_SERVER].notices.pending == 0
        assert await stored_notices(gateway) == 0
        await esme.close()


async def test_permanent_errors_and_nacks_give_up_counted(gateway: RunningGateway) -> None:
    await submit_with_receipts(gateway, 3)
    esme = await receiver(gateway)
    first, second, third = [await esme.next() for _ in range(3)]
    await esme.send(answer(first, S.ESME_RX_P_APPN))
    await esme.send(answer(second, S.ESME_RX_P_APPN))
    await esme.send(Pdu.make(C.generic_nack, third.sequence_number, status=S.ESME_RINVCMDID))
    assert await settled(esme, 5) == []  # none of them comes again
    assert gateway.app[SMPP_SERVER].notices.pending == 0
    assert await stored_notices(gateway) == 0
    given_up = "smsgw_smpp_notices_given_up_total"
    assert await scraped(gateway, given_up, reason="permanent_error", tenant="acme") == 2
    assert await scraped(gateway, given_up, reason="generic_nack", tenant="acme") == 1
    await esme.close()


async def test_pending_gauge_is_the_queue_count_through_acks_and_erasure(
    config_dict: dict[str, Any],
) -> None:
    # A window of one, and memory for two: notices move from the store to memory as
    # acknowledgements make room.
    config_dict["smpp"].update({"deliver_window": 1, "notice_memory": 2})
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        queue = gateway.app[SMPP_SERVER].notices
        gauge = "smsgw_smpp_notices_pending"
        await submit_with_receipts(gateway, 5)
        assert await scraped(gateway, gauge) == queue.pending == await stored_notices(gateway) == 5

        esme = await receiver(gateway)
        came: list[Pdu] = []
        for left in (5, 4, 3, 2, 1):
            # The next one may have come already, or be on its way from the store.
            deliver = came.pop() if came else await esme.next()
            assert deliver.command_id == C.deliver_sm
            assert await scraped(gateway, gauge) == queue.pending == left
            await esme.send(answer(deliver))
            came = await settled(esme, 10 + left)
            assert len(came) <= 1  # a window of one
            assert await scraped(gateway, gauge) == queue.pending == left - 1
        assert came == []
        assert await stored_notices(gateway) == 0
        await esme.close()

        await submit_with_receipts(gateway, 3)
        assert await scraped(gateway, gauge) == queue.pending == 3
        async with gateway.http.post(
            f"{gateway.url}/v1/subjects/+46701234567/erase", headers=gateway.headers
        ) as response:
            assert response.status == 200
            assert (await response.json())["erased"]["notices"] == 3
        assert await scraped(gateway, gauge) == queue.pending == 0
        assert await stored_notices(gateway) == 0


async def test_a_mobile_originated_message_is_kept_before_its_202(gateway: RunningGateway) -> None:
    async with gateway.http.post(
        f"{gateway.url}/v1/simulator/inbound",
        json={"from": "+46701112233", "to": "+46700000001", "body": "hello"},
        headers=gateway.headers,
    ) as response:
        assert response.status == 202
    # No flush: the reader sees only what was committed before the answer.
    kept = await gateway.app[STORE].notices.kept("acme", time.time(), 10)
    assert [notice.kind for notice in kept] == ["mo"]
    assert gateway.app[SMPP_SERVER].notices.pending == 1
