"""The event bus alone: ordered, resumable within its ring, bounded per subscriber."""

from __future__ import annotations

import asyncio

from gateway.config import EventsConfig
from gateway.events import GAP, MESSAGE_STATUS, EventBus, Subscription


def bus(buffer: int = 100, queue: int = 10) -> EventBus:
    return EventBus(EventsConfig(buffer=buffer, subscriber_queue=queue), lambda: 1_700_000_000.0)


async def drain(subscription: Subscription, count: int) -> list[object]:
    kinds: list[object] = []
    for _ in range(count):
        event = await asyncio.wait_for(subscription.next(), 1)
        assert event is not None
        kinds.append(event.data.get("n", event.kind))
    return kinds


async def test_a_subscriber_gets_its_tenants_events_in_order() -> None:
    events = bus()
    acme = events.subscribe("acme")
    for n in range(3):
        events.publish("acme", MESSAGE_STATUS, n=n)
        events.publish("other", MESSAGE_STATUS, n=-n)
    assert await drain(acme, 3) == [0, 1, 2]
    assert acme.pending() == 0


async def test_a_reconnect_with_the_last_id_receives_what_was_missed() -> None:
    events = bus()
    first = events.subscribe("acme")
    events.publish("acme", MESSAGE_STATUS, n=0)
    seen = await asyncio.wait_for(first.next(), 1)
    assert seen is not None
    first.close()
    events.publish("acme", MESSAGE_STATUS, n=1)
    events.publish("other", MESSAGE_STATUS, n=99)
    events.publish("acme", MESSAGE_STATUS, n=2)
    again = events.subscribe("acme", after=seen.id)
    assert await drain(again, 2) == [1, 2]


async def test_events_that_left_the_ring_are_announced_as_a_gap() -> None:
    events = bus(buffer=3)
    events.publish("acme", MESSAGE_STATUS, n=0)
    for n in range(1, 6):
        events.publish("acme", MESSAGE_STATUS, n=n)
    late = events.subscribe("acme", after=1)
    assert await drain(late, 4) == [GAP, 3, 4, 5]
    fresh = events.subscribe("acme", after=events.last_id)
    assert fresh.pending() == 0


async def test_a_subscriber_that_does_not_read_is_dropped_not_buffered() -> None:
    events = bus(queue=10)
    slow = events.subscribe("acme")
    for n in range(50):
        events.publish("acme", MESSAGE_STATUS, n=n)
    assert slow.dropped and slow.pending() == 0
    assert await asyncio.wait_for(slow.next(), 1) is None
    assert events.subscribers("acme") == 0


async def test_closing_wakes_a_waiting_reader() -> None:
    events = bus()
    subscription = events.subscribe("acme")
    reader = asyncio.ensure_future(subscription.next())
    await asyncio.sleep(0)
    events.close()
    assert await asyncio.wait_for(reader, 1) is None
