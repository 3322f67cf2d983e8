"""The instances' notification bus on a real PostgreSQL: batching, own echoes, reconnects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from gateway.cluster.bus import MAX_PAYLOAD, ClusterBus, payloads
from gateway.metrics import Metrics
from tests.postgres import postgres_dsn

__all__ = ["postgres_dsn"]


class Heard:
    """What one listener received, and how often it was told to resync."""

    def __init__(self) -> None:
        self.items: asyncio.Queue[Any] = asyncio.Queue()
        self.batches = 0
        self.resyncs: asyncio.Queue[None] = asyncio.Queue()

    def on_items(self, items: list[Any]) -> None:
        self.batches += 1
        for item in items:
            self.items.put_nowait(item)

    def on_resync(self) -> None:
        self.resyncs.put_nowait(None)

    async def take(self, count: int) -> list[Any]:
        async with asyncio.timeout(5):
            return [await self.items.get() for _ in range(count)]


@pytest.fixture
async def pair(postgres_dsn: str) -> AsyncIterator[tuple[ClusterBus, ClusterBus, Heard, Heard]]:
    heard_a, heard_b = Heard(), Heard()
    a = ClusterBus(postgres_dsn, "a", Metrics(), ping_interval=0.2)
    b = ClusterBus(postgres_dsn, "b", Metrics(), ping_interval=0.2)
    a.listen("test", heard_a.on_items, heard_a.on_resync)
    b.listen("test", heard_b.on_items, heard_b.on_resync)
    await a.start()
    await b.start()
    yield a, b, heard_a, heard_b
    await a.close()
    await b.close()


def test_payloads_stay_under_the_limit_and_keep_every_item_that_fits() -> None:
    items = [{"id": n, "pad": "x" * 50} for n in range(1000)]
    found, too_large = payloads("me", [*items, {"pad": "y" * MAX_PAYLOAD}])
    assert too_large == 1
    assert all(len(p.encode()) <= MAX_PAYLOAD for p in found)
    assert 1 < len(found) < 20
    assert [i for p in found for i in json.loads(p)["x"]] == items


@pytest.mark.postgres
async def test_items_reach_the_other_instance_in_few_notifications_and_not_their_sender(
    pair: tuple[ClusterBus, ClusterBus, Heard, Heard],
) -> None:
    a, b, heard_a, heard_b = pair
    for n in range(500):
        a.notify("test", {"n": n})
    assert [item["n"] for item in await heard_b.take(500)] == list(range(500))
    assert heard_b.batches < 20  # batched per loop tick, split only at the payload limit
    b.notify("test", "back")
    assert await heard_a.take(1) == ["back"]
    assert heard_a.items.empty() and heard_a.batches == 1  # a never hears its own 500


@pytest.mark.postgres
async def test_a_killed_listener_reconnects_and_its_parts_are_told_to_resync(
    pair: tuple[ClusterBus, ClusterBus, Heard, Heard], postgres_dsn: str
) -> None:
    a, b, _, heard_b = pair
    admin = await asyncpg.connect(postgres_dsn)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name LIKE 'smsgw-bus-listener %'"
        )
    finally:
        await admin.close()
    assert killed == 2
    async with asyncio.timeout(5):
        await heard_b.resyncs.get()
    assert b.connected
    a.notify("test", "after")
    assert await heard_b.take(1) == ["after"]
