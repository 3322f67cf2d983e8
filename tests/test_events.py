"""The event bus alone: ordered, resumable within its ring, bounded per subscriber."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.config import EventsConfig
from gateway.documents import utc_millis
from gateway.events import (
    CHAOS_CHANGED,
    CONSENT_CHANGED,
    GAP,
    HANDSET_RECEIVED,
    MESSAGE_ACCEPTED,
    MESSAGE_STATUS,
    MO_RECEIVED,
    Event,
    EventBus,
    Subscription,
)
from gateway.server.http_events import event_json


def bus(buffer: int = 100, queue: int = 10) -> EventBus:
    return EventBus(EventsConfig(buffer=buffer, subscriber_queue=queue), lambda: 1_700_000_000.0)


def status(events: EventBus, tenant: str, n: int) -> None:
    """A message.status event whose message_id is ``n``."""
    events.publish(tenant, MESSAGE_STATUS, n, "enroute", None)


async def drain(subscription: Subscription, count: int) -> list[object]:
    """What the next ``count`` events are: their message_id, or GAP."""
    kinds: list[object] = []
    while len(kinds) < count:
        batch = await asyncio.wait_for(subscription.next_batch(), 1)
        assert batch
        kinds += [event.document().get("message_id", event.kind) for event in batch]
    return kinds


async def test_a_subscriber_gets_its_tenants_events_in_order() -> None:
    events = bus()
    acme = events.subscribe("acme")
    for n in range(3):
        status(events, "acme", n)
        status(events, "other", -n)
    assert await drain(acme, 3) == [0, 1, 2]
    assert acme.pending() == 0


async def test_a_reconnect_with_the_last_id_receives_what_was_missed() -> None:
    events = bus()
    first = events.subscribe("acme")
    status(events, "acme", 0)
    [seen] = await asyncio.wait_for(first.next_batch(), 1)
    first.close()
    status(events, "acme", 1)
    status(events, "other", 99)
    status(events, "acme", 2)
    again = events.subscribe("acme", after=seen.id)
    assert await drain(again, 2) == [1, 2]


async def test_events_that_left_the_ring_are_announced_as_a_gap() -> None:
    events = bus(buffer=3)
    events.subscribe("acme").close()  # the ring fills from the first subscription on
    status(events, "acme", 0)
    for n in range(1, 6):
        status(events, "acme", n)
    late = events.subscribe("acme", after=1)
    assert await drain(late, 4) == [GAP, 3, 4, 5]
    fresh = events.subscribe("acme", after=events.last_id)
    assert fresh.pending() == 0


async def test_a_subscriber_that_does_not_read_is_dropped_not_buffered() -> None:
    events = bus(queue=10)
    slow = events.subscribe("acme")
    for n in range(50):
        status(events, "acme", n)
    assert slow.dropped and slow.pending() == 0
    assert await asyncio.wait_for(slow.next_batch(), 1) == []
    assert events.subscribers("acme") == 0


async def test_closing_wakes_a_waiting_reader() -> None:
    events = bus()
    subscription = events.subscribe("acme")
    reader = asyncio.ensure_future(subscription.next_batch())
    await asyncio.sleep(0)
    events.close()
    assert await asyncio.wait_for(reader, 1) == []


async def test_a_tenant_nobody_followed_keeps_nothing_and_a_resume_says_so() -> None:
    events = bus()
    status(events, "acme", 0)
    status(events, "acme", 1)
    assert events.last_id == 2
    resumed = events.subscribe("acme", after=1)
    assert await drain(resumed, 1) == [GAP]
    status(events, "acme", 2)
    assert await drain(resumed, 1) == [2]
    current = events.subscribe("acme", after=events.last_id)
    assert current.pending() == 0


def test_an_event_shows_its_fields_in_order() -> None:
    events = bus()
    subscription = events.subscribe("acme")
    events.publish("acme", MESSAGE_STATUS, "m1", "delivered", None)
    [event] = list(subscription._queue)
    assert list(event.document().items()) == [
        ("id", "1"),
        ("type", "message.status"),
        ("at", "2023-11-14T22:13:20.000Z"),
        ("message_id", "m1"),
        ("status", "delivered"),
        ("error", None),
    ]


@pytest.mark.parametrize(
    ("kind", "values"),
    [
        (MESSAGE_ACCEPTED, ("m1", "accepted", "+46701234567", "http", 2, "Acme")),
        (MESSAGE_STATUS, ("m1", "undeliverable", 'a "quoted"\nline ✓')),
        (MESSAGE_STATUS, ("m1", "delivered", None)),
        (HANDSET_RECEIVED, (["m1", "m2"], "+46701234567", "Åsa")),
        (MO_RECEIVED, ("m3", "+46700000001", None, "+46701234567")),
        (CONSENT_CHANGED, ("p1:00ff", "opted_out", None, "Acme")),
        (CHAOS_CHANGED, ({"outcomes": {"undeliverable": 1.0}, "max_submit_rate": None},)),
        (GAP, ("12",)),
    ],
)
def test_the_streamed_json_is_the_document(kind: str, values: tuple[object, ...]) -> None:
    event = Event(7, "acme", kind, 1_700_000_000.25, values)
    text = event_json(event)
    assert json.loads(text) == event.document()
    assert list(json.loads(text)) == list(event.document())  # the same order
    assert "\n" not in text


@pytest.mark.parametrize(
    "offsets",
    [
        # within a second, then across one and back (the kept date and time of day)
        (0.0, 0.25, 0.9994, 1.0, 0.5, 86_400.0),
        # the fraction rounds to microseconds half to even, as datetime does
        (0.0009995, 0.0009994999, 0.9999995, 0.9999994999, 0.1234565, 0.1234575),
    ],
)
def test_the_streamed_time_is_the_documents(offsets: tuple[float, ...]) -> None:
    for offset in offsets:
        event = Event(7, "acme", GAP, 1_700_000_000 + offset, ("1",))
        assert json.loads(event_json(event))["at"] == event.document()["at"]


@given(st.floats(min_value=0, max_value=4_102_444_800))  # 1970 to 2100
@example(1_700_000_000.0009995)  # the fraction rounds to microseconds half to even
@example(1_700_000_000.9999995)  # and into the next second
@example(1_700_000_000.1234565)
def test_the_time_format_is_datetimes(at: float) -> None:
    utc_millis(at + 1.5)  # another second kept first: what is kept must not leak
    expected = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    assert utc_millis(at) == expected.replace("+00:00", "Z")
