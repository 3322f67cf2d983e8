"""The live event stream: what happens to a tenant's messages, as it happens.

Every event gets an id from one increasing counter. Each tenant's last
``events.buffer`` events stay in a ring, so a subscriber that comes back with the
last id it saw is sent what it missed; if that has already left the ring, its
stream starts with a ``gap`` event saying so. Each subscriber has a queue of at
most ``events.subscriber_queue`` events: one that falls further behind is
dropped (its stream ends, and it may reconnect with its last id), never buffered
without limit. Publishing is an append to the ring plus one append per
subscriber of that tenant.

A tenant's ring starts with its first subscription of the run: before that no
client can hold an id of its events to resume from, so publishing for it only
counts the id, and builds nothing (it was about a fifth of an HTTP batch's time).
A resume with an older id then starts with a gap. An event holds its fields as
a tuple, named by `FIELDS`; the dict and the JSON are made only for a reader.

With several instances (`gateway.cluster.events`), a tenant's events made on another
instance are published here too, with ids of this bus: a stream's ids stay unique and
increasing, though an id means something only to the instance that gave it. Local events
are forwarded only for tenants some other instance has a subscriber for
(``followed_elsewhere``, empty with one instance): a set lookup per event otherwise.

Events carry ids, statuses and kinds; a number only where the API already shows
it to the same tenant (the handset of a message it sent, the sender of a reply).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from gateway.config import EventsConfig
from gateway.documents import iso_time

# Told of each event to send to the other instances: tenant, kind, values.
Forward = Callable[[str, str, tuple[Any, ...]], None]

# The kinds of event, as the stream's ``type`` field names them.
MESSAGE_ACCEPTED = "message.accepted"
MESSAGE_STATUS = "message.status"
# A submit a privacy gate refused (opt-out, missing consent, restriction): nothing stored.
MESSAGE_BLOCKED = "message.blocked"
HANDSET_RECEIVED = "handset.received"
MO_RECEIVED = "mo.received"
CONSENT_CHANGED = "consent.changed"
CHAOS_CHANGED = "chaos.changed"
GAP = "gap"  # events were missed: they left the ring before this subscriber came back


# Each kind's fields, in the order `EventBus.publish` takes their values and the
# stream shows them.
FIELDS: dict[str, tuple[str, ...]] = {
    MESSAGE_ACCEPTED: ("message_id", "status", "to", "interface", "segments", "from"),
    MESSAGE_STATUS: ("message_id", "status", "error"),
    MESSAGE_BLOCKED: ("to", "from", "interface", "code"),
    HANDSET_RECEIVED: ("message_ids", "handset", "from"),
    MO_RECEIVED: ("message_id", "to", "keyword", "from"),
    CONSENT_CHANGED: ("subject", "kind", "purpose", "sender"),
    CHAOS_CHANGED: ("settings",),
    GAP: ("after",),
}


class Event:
    __slots__ = ("at", "id", "kind", "tenant", "values")

    def __init__(self, id: int, tenant: str, kind: str, at: float, values: tuple[Any, ...]) -> None:
        self.id = id
        self.tenant = tenant
        self.kind = kind
        self.at = at
        self.values = values

    def document(self) -> dict[str, Any]:
        """As the stream sends it: ``id``, ``type`` and ``at`` first, then the fields."""
        document = {"id": str(self.id), "type": self.kind, "at": iso_time(self.at)}
        document.update(zip(FIELDS[self.kind], self.values, strict=True))
        return document

    def __repr__(self) -> str:  # the fields may hold a number: never in a log line
        return f"Event({self.id}, {self.tenant!r}, {self.kind!r})"


class Subscription:
    """One subscriber's view of one tenant's events, from where it asked to start."""

    __slots__ = ("_bus", "_closed", "_queue", "_ready", "dropped", "tenant")

    def __init__(self, bus: EventBus, tenant: str) -> None:
        self._bus = bus
        self.tenant = tenant
        self._queue: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()
        # True once it fell more than a queue's worth behind, or the bus closed.
        self.dropped = False

    def _put(self, event: Event) -> None:
        if len(self._queue) >= self._bus.queue_limit:
            self.close()
            return
        self._queue.append(event)
        self._ready.set()

    async def next_batch(self) -> list[Event]:
        """Every event queued, once there is one; empty once dropped or closed.

        All at once, so a reader that fell behind catches up in one write.
        """
        while not self._queue:
            if self.dropped:
                return []
            self._ready.clear()
            await self._ready.wait()
        events = list(self._queue)
        self._queue.clear()
        return events

    def pending(self) -> int:
        return len(self._queue)

    async def wait_closed(self) -> None:
        """Until the subscription is dropped or closed.

        A writer blocked on a client that does not read learns here that it may give up.
        """
        await self._closed.wait()

    def close(self) -> None:
        """Stop receiving; a waiting `next` returns None."""
        if not self.dropped:
            self.dropped = True
            self._queue.clear()
            self._bus._unsubscribe(self)
        self._ready.set()
        self._closed.set()


class EventBus:
    def __init__(self, config: EventsConfig, clock: Callable[[], float]) -> None:
        self._buffer = config.buffer
        self.queue_limit = config.subscriber_queue
        self._clock = clock
        self._last_id = 0
        self._rings: dict[str, deque[Event]] = {}
        # Per tenant, the id of the newest event that has left its ring (ids are shared by
        # all tenants, so a tenant's own ids have holes: a gap cannot be seen from them).
        self._evicted: dict[str, int] = {}
        self._subscribers: dict[str, set[Subscription]] = {}
        # Tenants another instance has a subscriber for, and where their events go.
        self.followed_elsewhere: frozenset[str] = frozenset()
        self._forward: Forward | None = None
        self._on_followed: Callable[[], None] | None = None

    def share(self, forward: Forward, on_followed: Callable[[], None]) -> None:
        """Send events of ``followed_elsewhere`` tenants to ``forward``; call ``on_followed``
        whenever the set of tenants with a subscriber here changes."""
        self._forward = forward
        self._on_followed = on_followed

    def followed(self) -> list[str]:
        """Tenants with a subscriber on this instance."""
        return sorted(self._subscribers)

    @property
    def last_id(self) -> int:
        return self._last_id

    def subscribers(self, tenant: str | None = None) -> int:
        if tenant is not None:
            return len(self._subscribers.get(tenant, ()))
        return sum(len(s) for s in self._subscribers.values())

    def publish(self, tenant: str, kind: str, /, *values: Any) -> None:
        """``values`` in the order `FIELDS` names them for ``kind``."""
        if tenant in self.followed_elsewhere and self._forward is not None:
            self._forward(tenant, kind, values)
        self.publish_here(tenant, kind, values)

    def publish_here(self, tenant: str, kind: str, values: tuple[Any, ...]) -> None:
        """Publish to this instance's subscribers only (an event another instance made)."""
        self._last_id += 1
        ring = self._rings.get(tenant)
        if ring is None:  # nobody has followed the tenant: nobody can resume
            return
        event = Event(self._last_id, tenant, kind, self._clock(), values)
        if len(ring) == self._buffer:
            self._evicted[tenant] = ring[0].id
        ring.append(event)
        for subscription in tuple(self._subscribers.get(tenant, ())):
            subscription._put(event)

    def subscribe(self, tenant: str, after: int | None = None) -> Subscription:
        """Events of ``tenant`` from now on; with ``after``, first those after that id.

        A ``gap`` event comes first when some after ``after`` have left the ring, or when
        ``after`` is beyond the last id: an id of an earlier run, whose events are gone.
        """
        subscription = Subscription(self, tenant)
        if tenant not in self._rings:
            self._rings[tenant] = deque(maxlen=self._buffer)
            self._evicted[tenant] = self._last_id  # none of the tenant's events so far kept
        if after is not None:
            asked, earlier_run = after, after > self._last_id
            if earlier_run:
                after = 0  # every event of this run is new to it
            missed = [event for event in self._rings.get(tenant, ()) if event.id > after]
            replayed = missed[-(self.queue_limit - 1) :]
            if earlier_run or after < self._evicted.get(tenant, 0) or len(replayed) < len(missed):
                gap = Event(0, tenant, GAP, self._clock(), (str(asked),))
                subscription._queue.append(gap)
            subscription._queue.extend(replayed)
        subscriptions = self._subscribers.setdefault(tenant, set())
        subscriptions.add(subscription)
        if len(subscriptions) == 1 and self._on_followed is not None:
            self._on_followed()
        return subscription

    def forget_tenant(self, tenant: str) -> None:
        """A purged tenant: its ring goes, and its subscribers are dropped."""
        self._rings.pop(tenant, None)
        self._evicted.pop(tenant, None)
        for subscription in tuple(self._subscribers.get(tenant, ())):
            subscription.close()

    def close(self) -> None:
        for subscriptions in list(self._subscribers.values()):
            for subscription in tuple(subscriptions):
                subscription.close()

    def _unsubscribe(self, subscription: Subscription) -> None:
        subscriptions = self._subscribers.get(subscription.tenant)
        if subscriptions is not None:
            subscriptions.discard(subscription)
            if not subscriptions:
                del self._subscribers[subscription.tenant]
                if self._on_followed is not None:
                    self._on_followed()
