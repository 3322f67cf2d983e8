"""Three `smsgw serve` processes on one PostgreSQL database behave as one gateway (issue 17).

Each test starts its own three instances (distinct ports and instance ids, the same
tenants and key-encryption key) on a fresh database, and drives them over real
sockets: SMPP sessions with our raw ESME, HTTP with aiohttp. What one instance
recorded, another must act on: a receipt for a message submitted on instance 1 (and
an MO through instance 3) goes to the receiver bound on instance 2; an opt-out recorded
on instance 3 refuses the next submit on instance 1; receipts a killed instance held
reach the receiver when it binds again elsewhere; retention runs on one instance at a
time, and its metrics name it; messages in flight on one instance are delivered once,
whichever instance restarts or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from smpp.bodies import DeliverSm
from smpp.pdu import CommandId, CommandStatus, Pdu, Tag, TlvValue
from tests.conftest import EVENT_TIMEOUT, CallbackReceiver, base_config, make_kek_file, merged
from tests.postgres import postgres_dsn
from tests.smpp_clients import RawEsme, raw_session
from tests.test_process import HEADERS, GatewayProcess, gateway_process, write_toml
from tests.test_smpp_server import submit_fields

__all__ = ["postgres_dsn"]

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

C = CommandId
OPTED_OUT = 0x401  # [smpp.error_codes] recipient_opted_out's default
SENDER = "+46700000001"
# Receipts for these come seconds after the submit: after a kill that follows it.
SLOW_PREFIX = "+4670555"


def cluster_config(tmp_path: Path, dsn: str) -> dict[str, Any]:
    """The tests' config on PostgreSQL: what every instance shares."""
    kek_file = make_kek_file(tmp_path / "kek")
    return merged(
        base_config(tmp_path),
        {
            "storage": {"backend": "postgres", "dsn": dsn},
            "privacy": {"kek_file": str(kek_file)},
            # Short, so a killed instance is found dead and what it held is delivered
            # elsewhere within a test.
            "cluster": {
                "notice_lease": "1s",
                "notice_poll": "200ms",
                "heartbeat_interval": "200ms",
                "dead_after": "1s",
            },
            "simulator": {
                "rules": [
                    {"prefix": SLOW_PREFIX, "outcome": "delivered", "latency": ["2s", "2s"]},
                    *base_config(tmp_path)["simulator"]["rules"],
                ]
            },
        },
    )


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path, config: dict[str, Any], count: int = 3
) -> AsyncIterator[list[GatewayProcess]]:
    """``count`` gateway processes on ``config``, instance ids gw1, gw2, ...; all started
    together (they migrate the fresh database side by side) and all killed after."""
    paths = []
    for n in range(1, count + 1):
        path = tmp_path / f"gw{n}.toml"
        instance = merged(config, {"instance": {"id": f"gw{n}"}})
        # What stays on each instance's own disk, as on machines of their own.
        instance["privacy"]["key_file"] = str(tmp_path / f"keys-gw{n}.json")
        instance["storage"]["path"] = str(tmp_path / f"gw{n}.sqlite3")  # its lock file's place
        write_toml(path, instance)
        paths.append(path)
    async with contextlib.AsyncExitStack() as stack:
        yield list(
            await asyncio.gather(*(stack.enter_async_context(gateway_process(p)) for p in paths))
        )


async def submit(transmitter: RawEsme, sequence: int, to: str) -> tuple[int, str]:
    """One submit_sm asking for a receipt: its command_status and message_id."""
    fields = submit_fields(to=to.removeprefix("+"), registered_delivery=1)
    response = await transmitter.request(Pdu.make(C.submit_sm, sequence, **fields))
    return response.command_status, str(response.params.get("message_id", ""))


async def receipts_until(receiver: RawEsme, wanted: set[str], answer: bool = True) -> set[str]:
    """Read deliver_sm until every message in ``wanted`` has had a receipt (duplicates are
    allowed: delivery is at least once); answer each unless ``answer`` is False."""
    seen: set[TlvValue] = set()
    while not wanted <= seen:
        deliver = await receiver.next()
        assert deliver.command_id == C.deliver_sm, deliver
        seen.add(deliver.tlvs[Tag.receipted_message_id])
        if answer:
            await receiver.send(Pdu.make(C.deliver_sm_resp, deliver.sequence_number, message_id=""))
    return {str(message_id) for message_id in seen}


async def test_receipts_reach_the_receiver_bound_on_another_instance(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with (
        cluster(tmp_path, cluster_config(tmp_path, postgres_dsn)) as (gw1, gw2, gw3),
        raw_session(gw2.smpp_port, C.bind_receiver) as receiver,
        raw_session(gw1.smpp_port, C.bind_transmitter) as transmitter,
        aiohttp.ClientSession() as http,
    ):
        submitted = [await submit(transmitter, 2 + i, f"+4670123{i:04d}") for i in range(20)]
        assert {status for status, _ in submitted} == {CommandStatus.ESME_ROK}
        ids = {message_id for _, message_id in submitted}
        assert await receipts_until(receiver, ids) == ids

        # A handset's reply through instance 3's simulator reaches the same receiver.
        reply = {"from": "+46701230001", "to": SENDER, "body": "Thanks"}
        async with http.post(
            f"{gw3.url}/v1/simulator/inbound", json=reply, headers=HEADERS
        ) as response:
            assert response.status == 202
        mo = await receiver.next()
        assert (mo.command_id, mo.body(DeliverSm)["short_message"]) == (C.deliver_sm, b"Thanks")
        await receiver.send(Pdu.make(C.deliver_sm_resp, mo.sequence_number, message_id=""))


async def test_a_stop_through_one_instance_blocks_the_next_submit_on_another(
    tmp_path: Path, postgres_dsn: str
) -> None:
    by_keyword, by_api = "+46701110001", "+46701110002"
    async with (
        cluster(tmp_path, cluster_config(tmp_path, postgres_dsn)) as (gw1, gw2, gw3),
        raw_session(gw1.smpp_port, C.bind_transmitter) as transmitter,
        aiohttp.ClientSession() as http,
    ):
        # Instance 1 has seen both numbers allowed: a stale cache would let them through.
        for sequence, handset in enumerate((by_keyword, by_api), start=2):
            assert (await submit(transmitter, sequence, handset))[0] == CommandStatus.ESME_ROK

        stop = {"from": by_keyword, "to": SENDER, "body": "STOP"}
        async with http.post(
            f"{gw3.url}/v1/simulator/inbound", json=stop, headers=HEADERS
        ) as response:
            assert response.status == 202
        assert (await submit(transmitter, 10, by_keyword))[0] == OPTED_OUT

        async with http.post(
            f"{gw3.url}/v1/opt-outs", json={"msisdns": [by_api]}, headers=HEADERS
        ) as response:
            assert response.status == 200, await response.text()
        assert (await submit(transmitter, 11, by_api))[0] == OPTED_OUT
        # And on HTTP, through the instance that was not involved.
        document = {"to": by_api, "from": "Acme", "body": "hello"}
        async with http.post(f"{gw2.url}/v1/messages", json=document, headers=HEADERS) as response:
            assert response.status == 403
            assert (await response.json())["code"] == "recipient_opted_out"


async def test_receipts_a_killed_instance_held_reach_the_receiver_bound_again_elsewhere(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with (
        cluster(tmp_path, cluster_config(tmp_path, postgres_dsn)) as (gw1, gw2, gw3),
        raw_session(gw1.smpp_port, C.bind_transmitter) as transmitter,
    ):
        async with raw_session(gw2.smpp_port, C.bind_receiver) as silent:  # answers no deliver_sm
            fast = [await submit(transmitter, 2 + i, f"+4670123{i:04d}") for i in range(10)]
            slow = [await submit(transmitter, 20 + i, f"{SLOW_PREFIX}{i:04d}") for i in range(10)]
            assert {status for status, _ in fast + slow} == {CommandStatus.ESME_ROK}
            # Instance 2 has sent the fast receipts and holds them unanswered; the slow
            # ones are produced while it is dead.
            await receipts_until(silent, {message_id for _, message_id in fast}, answer=False)
            gw2.process.send_signal(signal.SIGKILL)
            assert await gw2.process.wait() == -signal.SIGKILL

        everything = {message_id for _, message_id in fast + slow}
        async with raw_session(gw3.smpp_port, C.bind_receiver) as receiver:
            assert (
                await asyncio.wait_for(receipts_until(receiver, everything), 3 * EVENT_TIMEOUT)
                == everything
            )


RUNS = re.compile(r'^smsgw_retention_runs_total\{instance="([^"]+)",outcome="(\w+)"\} (\S+)$', re.M)
INSTANCE_INFO = re.compile(r'^smsgw_instance_info\{instance="([^"]+)"', re.M)


async def scrape(http: aiohttp.ClientSession, gateway: GatewayProcess) -> str:
    async with http.get(f"{gateway.url}/metrics") as response:
        return await response.text()


async def test_retention_runs_on_one_instance_at_a_time_and_its_metrics_say_which(
    tmp_path: Path, postgres_dsn: str
) -> None:
    every_instant = {"log": {"format": "json"}, "privacy": {"retention": {"interval": "50ms"}}}
    config = merged(cluster_config(tmp_path, postgres_dsn), every_instant)
    async with cluster(tmp_path, config) as gateways, aiohttp.ClientSession() as http:
        ids = [f"gw{n}" for n in (1, 2, 3)]

        async def runs_of(instance: str, gateway: GatewayProcess) -> dict[str, float]:
            """The instance's retention runs by outcome; its metrics name no other."""
            found = RUNS.findall(await scrape(http, gateway))
            assert {i for i, _, _ in found} <= {instance}, found
            return {outcome: float(value) for _, outcome, value in found}

        async def each_ran_and_one_was_skipped() -> None:
            """All three try every 50 ms: each gets its turn, and soon one finds another's
            run holding the lock. Another process has no event to await: its metrics are
            what it tells."""
            while True:
                counts = [await runs_of(i, gw) for i, gw in zip(ids, gateways, strict=True)]
                if all(c.get("ran") for c in counts) and any(c.get("skipped") for c in counts):
                    return
                await asyncio.sleep(0.05)

        await asyncio.wait_for(each_ran_and_one_was_skipped(), 2 * EVENT_TIMEOUT)

        async def all_listed() -> None:
            for gateway in gateways:
                while sorted(INSTANCE_INFO.findall(await scrape(http, gateway))) != ids:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

        await asyncio.wait_for(all_listed(), EVENT_TIMEOUT)
        for gateway in gateways:
            await gateway.line_with("banner.docs")  # SIGTERM is handled from here on
            assert await gateway.stop() == 0  # and its log is complete

    # No two runs, on any instances, overlapped: each held the lock from start to end.
    spans = []
    for gateway in gateways:
        for line in gateway.log:
            entry = json.loads(line) if line.startswith("{") else {}
            if entry.get("event") == "retention.run":
                end = datetime.fromisoformat(entry["time"]).timestamp()
                spans.append((end - entry["seconds"], end))
    assert len(spans) >= 2
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.002, spans  # the log's times are to the millisecond


async def submit_slow(
    http: aiohttp.ClientSession, gateway: GatewayProcess, count: int, callback_url: str
) -> set[str]:
    """``count`` HTTP submits on ``gateway`` delivered seconds later, each with a callback."""
    ids = set()
    for i in range(count):
        document = {
            "to": f"{SLOW_PREFIX}{i:04d}",
            "from": "Acme",
            "body": "slow",
            "callback_url": callback_url,
        }
        async with http.post(
            f"{gateway.url}/v1/messages", json=document, headers=HEADERS
        ) as response:
            assert response.status == 202
            ids.add(str((await response.json())["id"]))
    return ids


async def delivered_callbacks(callback_receiver: CallbackReceiver, ids: set[str]) -> int:
    """Callbacks until each of ``ids`` was reported delivered; how many came in all."""
    seen: set[str] = set()
    received = 0
    while not ids <= seen:
        callback = await callback_receiver.next()
        received += 1
        assert callback["status"] == "delivered", callback
        seen.add(callback["id"])
    return received


async def test_a_restarted_instance_leaves_the_messages_of_live_ones_to_them(
    tmp_path: Path, postgres_dsn: str, callback_receiver: CallbackReceiver
) -> None:
    async with (
        cluster(tmp_path, cluster_config(tmp_path, postgres_dsn)) as (gw1, _, gw3),
        aiohttp.ClientSession() as http,
    ):
        ids = await submit_slow(http, gw1, 5, callback_receiver.url)
        await gw3.line_with("banner.docs")
        assert await gw3.stop() == 0
        async with gateway_process(tmp_path / "gw3.toml") as restarted:
            resumed = await restarted.line_with("network.resumed")
            assert await delivered_callbacks(callback_receiver, ids) == len(ids)
            # Instance 1 is delivering them: the restarted one must not deliver them again.
            assert "count=0" in resumed, resumed


async def test_messages_a_killed_instance_accepted_are_delivered_by_the_others(
    tmp_path: Path, postgres_dsn: str, callback_receiver: CallbackReceiver
) -> None:
    async with (
        cluster(tmp_path, cluster_config(tmp_path, postgres_dsn)) as (_, gw2, _),
        aiohttp.ClientSession() as http,
    ):
        ids = await submit_slow(http, gw2, 5, callback_receiver.url)
        gw2.process.send_signal(signal.SIGKILL)
        assert await gw2.process.wait() == -signal.SIGKILL
        # Acknowledged, so delivered: by the instances still running, as one gateway
        # would after its restart.
        await asyncio.wait_for(delivered_callbacks(callback_receiver, ids), 3 * EVENT_TIMEOUT)


async def test_a_message_scheduled_on_one_instance_and_cancelled_on_another_is_not_sent(
    tmp_path: Path, postgres_dsn: str, callback_receiver: CallbackReceiver
) -> None:
    async with (
        cluster(tmp_path, cluster_config(tmp_path, postgres_dsn)) as (gw1, gw2, _),
        aiohttp.ClientSession() as http,
    ):
        # From once the instances are up: three starting on a loaded machine took long
        # enough that a schedule counted from before them was already due at the cancel.
        now = datetime.now(UTC)
        soon = (now + timedelta(seconds=5)).isoformat()
        later = (now + timedelta(seconds=6)).isoformat()

        async def scheduled(to: str, send_at: str) -> str:
            document = {
                "to": to,
                "from": "Acme",
                "body": "scheduled",
                "callback_url": callback_receiver.url,
                "send_at": send_at,
            }
            async with http.post(
                f"{gw1.url}/v1/messages", json=document, headers=HEADERS
            ) as response:
                assert response.status == 202
                return str((await response.json())["id"])

        cancelled = await scheduled("+46701230001", soon)
        barrier = await scheduled("+46701230002", later)  # its delivery comes after
        async with http.post(
            f"{gw2.url}/v1/messages/{cancelled}/cancel", headers=HEADERS
        ) as response:
            assert response.status == 200, await response.text()
        statuses: dict[str, list[str]] = {}
        while "delivered" not in statuses.get(barrier, []):
            callback = await asyncio.wait_for(callback_receiver.next(), 2 * EVENT_TIMEOUT)
            statuses.setdefault(callback["id"], []).append(callback["status"])
        # Instance 1 held it for its time: the cancel through instance 2 must reach it.
        assert statuses[cancelled] == ["deleted"], statuses
