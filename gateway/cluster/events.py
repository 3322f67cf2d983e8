"""The event stream across instances: a tenant's events reach its subscribers on any instance.

Each instance announces, on the bus's ``followers`` channel, the tenants it has
subscribers for: whenever that set changes, every ``announce_interval`` (so an instance
that died is forgotten after ``3 * announce_interval``), and when it starts or its
listener came back (asking the others to announce too). An instance forwards a local
event only for a tenant some other instance follows, so a gateway nobody watches pays a
set lookup per event and sends nothing.

A forwarded event carries no number: the fields that hold one (the recipient of an
accepted or received message, the handset of an MO) travel as null, and the receiving
instance reads the recipient back from the traffic log by message id before publishing.
A refused submit stored nothing to read back, and chaos is each instance's own: those
events stay on the instance that made them. Forwarding is lossy, as a stream whose
subscriber falls behind is: a lost notification is an event missed, never a wrong one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from gateway.cluster.bus import ClusterBus
from gateway.events import (
    CONSENT_CHANGED,
    FIELDS,
    HANDSET_RECEIVED,
    MESSAGE_ACCEPTED,
    MESSAGE_STATUS,
    MO_RECEIVED,
    EventBus,
)
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.store import Store

log = logging.getLogger(__name__)

_EVENTS: Final = "events"
_FOLLOWERS: Final = "followers"
# Per kind forwarded, the fields that may hold a number: sent as null.
_WITHHELD: Final = {
    MESSAGE_ACCEPTED: frozenset({"to"}),
    MESSAGE_STATUS: frozenset[str](),
    HANDSET_RECEIVED: frozenset({"handset"}),
    MO_RECEIVED: frozenset({"from"}),
    CONSENT_CHANGED: frozenset[str](),
}
# Which field a withheld recipient is read back into (by the message id in the first field).
_READ_BACK: Final = {MESSAGE_ACCEPTED: "to", HANDSET_RECEIVED: "handset"}
# Remote events waiting to be published here; beyond this they are dropped.
MAX_WAITING: Final = 10_000
# Recipients read back at the same time, at most.
_READS_AT_ONCE: Final = 64


def _masks() -> dict[str, tuple[bool, ...]]:
    """Per kind forwarded, which of its values are withheld."""
    return {kind: tuple(n in hidden for n in FIELDS[kind]) for kind, hidden in _WITHHELD.items()}


class SharedEvents:
    """Forwards this instance's events to the instances that follow their tenant, and back."""

    def __init__(
        self,
        bus: ClusterBus,
        events: EventBus,
        store: Store,
        metrics: Metrics,
        tenants: frozenset[str],
        announce_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bus = bus
        self._events = events
        self._store = store
        self._metrics = metrics
        self._tenants = tenants
        self._interval = announce_interval
        self._clock = clock
        self._masks = _masks()
        # Per other instance (its bus origin): the tenants it follows, and when it said so.
        self._followers: dict[str, tuple[frozenset[str], float]] = {}
        self._waiting: deque[list[Any]] = deque()
        self._followers_changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        bus.listen(_EVENTS, self._heard_events, self._announce_and_ask)
        bus.listen(_FOLLOWERS, self._heard_followers, self._announce_and_ask)
        events.share(self._forward, self._announce)

    async def start(self) -> None:
        """Once the bus runs: learn who follows what, then keep announcing."""
        self._announce_and_ask()
        self._tasks = [
            asyncio.create_task(self._keep_announcing(), name="events-announce"),
            asyncio.create_task(self._publish_loop(), name="events-remote"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- followers ------------------------------------------------------------------------

    def _announce(self, ask: bool = False) -> None:
        """Tell the others which tenants we follow; with ``ask``, ask them to say too."""
        item: dict[str, Any] = {"o": self._bus.origin, "t": self._events.followed()}
        if ask:
            item["ask"] = 1
        self._bus.notify(_FOLLOWERS, item)

    def _announce_and_ask(self) -> None:
        self._announce(ask=True)

    def _heard_followers(self, items: list[Any]) -> None:
        now = self._clock()
        asked = False
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("o"), str):
                continue
            tenants = item.get("t")
            if isinstance(tenants, list):
                self._followers[item["o"]] = (self._tenants.intersection(tenants), now)
            asked = asked or bool(item.get("ask"))
        self._refresh(now)
        if asked:
            self._announce()

    def _refresh(self, now: float) -> None:
        """Forget instances silent for three intervals; recompute what others follow."""
        stale = now - 3 * self._interval
        for origin in [o for o, (_, at) in self._followers.items() if at < stale]:
            del self._followers[origin]
        self._events.followed_elsewhere = frozenset().union(
            *(tenants for tenants, _ in self._followers.values())
        )
        self._followers_changed.set()
        self._followers_changed.clear()

    async def followed_elsewhere(self, tenant: str, followed: bool = True) -> None:
        """Until some other instance follows ``tenant`` (or, not ``followed``, none does)."""
        while (tenant in self._events.followed_elsewhere) is not followed:
            await self._followers_changed.wait()

    async def _keep_announcing(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self._announce()
            self._refresh(self._clock())

    # --- events ---------------------------------------------------------------------------

    def _forward(self, tenant: str, kind: str, values: tuple[Any, ...]) -> None:
        mask = self._masks.get(kind)
        if mask is None:  # stays here
            return
        shared = [None if withheld else value for withheld, value in zip(mask, values, strict=True)]
        self._bus.notify(_EVENTS, [tenant, kind, shared])

    def _heard_events(self, items: list[Any]) -> None:
        for item in items:
            if (
                isinstance(item, list)
                and len(item) == 3
                and item[0] in self._tenants
                and item[1] in self._masks
                and isinstance(item[2], list)
                and len(item[2]) == len(FIELDS[item[1]])
            ):
                if len(self._waiting) >= MAX_WAITING:
                    self._metrics.bus_dropped.labels("events_behind").inc()
                    continue
                self._waiting.append(item)
        self._wake.set()

    async def _publish_loop(self) -> None:
        """Publish remote events here in the order heard, a recipient read back where needed.

        The reads of up to ``_READS_AT_ONCE`` events run together (the store's reader is a
        pool), and the events are published in order once all of them are back.
        """
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                batch = [
                    self._waiting.popleft() for _ in range(min(len(self._waiting), _READS_AT_ONCE))
                ]
                reads = [
                    self._recipient(tenant, values[0])
                    for tenant, kind, values in batch
                    if kind in _READ_BACK
                ]
                recipients = iter(await asyncio.gather(*reads))
                for tenant, kind, values in batch:
                    field = _READ_BACK.get(kind)
                    if field is not None:
                        values[FIELDS[kind].index(field)] = next(recipients)
                    self._events.publish_here(tenant, kind, tuple(values))

    async def _recipient(self, tenant: str, message_id: object) -> str | None:
        """The recipient of the message ``message_id`` (or the first of a list of ids)."""
        if isinstance(message_id, list):
            message_id = message_id[0] if message_id else None
        if not isinstance(message_id, str):
            return None
        try:
            message = await self._store.traffic.get_message(tenant, message_id)
        except Exception:  # the event goes out without it rather than not at all
            log_event(log, "events.read_back_failed", logging.WARNING, tenant=tenant)
            return None
        return message.recipient if message is not None else None
