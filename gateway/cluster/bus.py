"""The instances' notification bus: PostgreSQL LISTEN/NOTIFY, batched, and resynced after a loss.

Each instance holds one connection that LISTENs on every channel a part of it asked for
(`ClusterBus.listen`) and one that sends. What a part sends (`ClusterBus.notify`) is a
small JSON item; the items of one channel queued while the sender was busy go out
together, as few payloads of at most ``MAX_PAYLOAD`` bytes as they fit in (PostgreSQL
refuses a payload of 8000 bytes or more), so a thousand receipts made in one group commit
cost a handful of notifications, not a thousand.

Notifications are a wake-up, never the record: every part that listens keeps its truth in
the database (a notice row, a consent event) and reads it there. They are sent after the
commit they announce, so one can be lost (the sender dies between the two, or the listener's
connection drops): after the listener reconnects, every channel's ``on_resync`` runs, and
each part then re-reads what it would have been told. A payload carries ids, tenant ids,
pseudonyms and statuses only, never a number or a body: it is readable by anyone who may
LISTEN on the database.

Every instance hears its own notifications too; they carry the sender's ``origin`` and are
dropped on arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Final

import asyncpg

from gateway.logs import log_event
from gateway.metrics import Metrics

log = logging.getLogger(__name__)

# PostgreSQL's limit is 8000 bytes; the envelope and a margin fit in the rest.
MAX_PAYLOAD: Final = 7900
# Items a channel may hold while the sender is down; beyond it the oldest are dropped
# (the listeners' polling and resync cover them, as for any lost notification).
MAX_QUEUED: Final = 10_000
_CHANNEL_PREFIX: Final = "smsgw_"

ItemsHandler = Callable[[list[Any]], None]
ResyncHandler = Callable[[], None]

_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def payloads(origin: str, items: list[Any], limit: int = MAX_PAYLOAD) -> tuple[list[str], int]:
    """``items`` as few ``{"o": origin, "x": [...]}`` payloads of at most ``limit`` bytes.

    Returns the payloads and how many items were too large for any payload (dropped).
    """
    head = '{"o":' + _to_json(origin) + ',"x":['
    tail = "]}"
    room = limit - len(head.encode()) - len(tail)
    found: list[str] = []
    chunk: list[str] = []
    size = 0
    too_large = 0
    for item in items:
        encoded = _to_json(item)
        length = len(encoded.encode())
        if length > room:
            too_large += 1
            continue
        if chunk and size + 1 + length > room:
            found.append(head + ",".join(chunk) + tail)
            chunk, size = [], 0
        size += length + (1 if chunk else 0)
        chunk.append(encoded)
    if chunk:
        found.append(head + ",".join(chunk) + tail)
    return found, too_large


class _Channel:
    __slots__ = ("name", "on_items", "on_resync", "queued")

    def __init__(self, name: str) -> None:
        self.name = name
        self.on_items: list[ItemsHandler] = []
        self.on_resync: list[ResyncHandler] = []
        self.queued: list[Any] = []


class ClusterBus:
    """One listening and one sending connection to the shared database, for every part."""

    def __init__(
        self,
        dsn: str,
        origin: str,
        metrics: Metrics,
        *,
        ping_interval: float = 5.0,
        reconnect_delay: float = 0.2,
        max_reconnect_delay: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self.origin = origin
        self._metrics = metrics
        self._ping_interval = ping_interval
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._channels: dict[str, _Channel] = {}
        self._listener: asyncpg.Connection | None = None
        self._sender: asyncpg.Connection | None = None
        self._wake = asyncio.Event()
        # Held while items are being sent, so a flush waits for those already taken too.
        self._sending = asyncio.Lock()
        self._lost = asyncio.Event()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def connected(self) -> bool:
        """Whether the listening connection is up (notifications can arrive)."""
        return self._listener is not None and not self._listener.is_closed()

    def _channel(self, name: str) -> _Channel:
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel(name)
        return channel

    def listen(self, name: str, on_items: ItemsHandler, on_resync: ResyncHandler) -> None:
        """Call ``on_items`` with the items other instances send on ``name``; ``on_resync``
        whenever some may have been missed. Called before `start`."""
        assert self._listener is None, "listen before the bus starts"
        channel = self._channel(name)
        channel.on_items.append(on_items)
        channel.on_resync.append(on_resync)

    def notify(self, name: str, item: Any) -> None:
        """Send ``item`` (JSON-able, no personal data) to the other instances; fire and forget."""
        channel = self._channel(name)
        if len(channel.queued) >= MAX_QUEUED:
            del channel.queued[0]
            self._metrics.bus_dropped.labels("queue_full").inc()
        channel.queued.append(item)
        self._wake.set()

    async def flush(self) -> None:
        """Send what is queued now (a barrier: whatever was notified before has gone out)."""
        await self._send_queued()

    async def start(self) -> None:
        """Connect both sides (an error here stops the start), then keep them up."""
        self._sender = await self._connect("sender")
        await self._connect_listener()
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="bus-sender"),
            asyncio.create_task(self._keep_listening(), name="bus-listener"),
        ]

    async def close(self) -> None:
        """Send what is queued (if the sender is up), then close both connections."""
        self._closing = True
        self._wake.set()
        self._lost.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._send_queued()
        for connection in (self._listener, self._sender):
            if connection is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 2.0)
        self._listener = self._sender = None

    async def _connect(self, role: str) -> asyncpg.Connection:
        """A connection named for ``pg_stat_activity``: which instance, which side."""
        name = f"smsgw-bus-{role} {self.origin}"[:63]
        return await asyncpg.connect(self._dsn, server_settings={"application_name": name})

    # --- receiving ------------------------------------------------------------------------

    async def _connect_listener(self) -> None:
        listener = await self._connect("listener")
        try:
            for name in self._channels:
                await listener.add_listener(_CHANNEL_PREFIX + name, self._received)
        except BaseException:
            listener.terminate()
            raise
        listener.add_termination_listener(self._terminated)
        self._listener = listener
        self._lost.clear()

    def _terminated(self, connection: asyncpg.Connection) -> None:
        if connection is self._listener:
            self._lost.set()

    def _received(self, connection: object, pid: int, channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            origin, items = message["o"], message["x"]
        except (ValueError, KeyError, TypeError):
            self._metrics.bus_dropped.labels("unreadable").inc()
            return
        if origin == self.origin or not isinstance(items, list):
            return
        handlers = self._channels.get(channel.removeprefix(_CHANNEL_PREFIX))
        if handlers is None:
            return
        self._metrics.bus_notifications.labels("in").inc()
        for handler in handlers.on_items:
            try:
                handler(items)
            except Exception:
                log_event(log, "bus.handler_failed", logging.ERROR, channel=handlers.name)

    async def _keep_listening(self) -> None:
        """Watch the listener (a ping each ``ping_interval``); reconnect, then resync, if lost."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ping_interval):
                    await self._lost.wait()
            if self._lost.is_set() or not await self._alive():
                await self._reconnect()

    async def _alive(self) -> bool:
        listener = self._listener
        if listener is None or listener.is_closed():
            return False
        try:
            await asyncio.wait_for(listener.execute("SELECT 1"), self._ping_interval)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return False
        return True

    async def _reconnect(self) -> None:
        log_event(log, "bus.listener_lost", logging.WARNING)
        old, self._listener = self._listener, None
        if old is not None:
            old.terminate()
        delay = self._reconnect_delay
        while not self._closing:
            try:
                await self._connect_listener()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_reconnect_delay)
                continue
            self._metrics.bus_reconnects.inc()
            log_event(log, "bus.listener_back")
            # Whatever was sent while we were away is lost: every part re-reads its truth.
            for channel in self._channels.values():
                for resync in channel.on_resync:
                    try:
                        resync()
                    except Exception:
                        log_event(log, "bus.resync_failed", logging.ERROR, channel=channel.name)
            return

    # --- sending --------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            await self._send_queued()

    async def _send_queued(self) -> None:
        async with self._sending:
            for channel in self._channels.values():
                if not channel.queued:
                    continue
                items, channel.queued = channel.queued, []
                found, too_large = payloads(self.origin, items)
                if too_large:
                    self._metrics.bus_dropped.labels("too_large").inc(too_large)
                if found and not await self._send(channel.name, found):
                    self._metrics.bus_dropped.labels("send_failed").inc(len(items))

    async def _send(self, name: str, found: list[str]) -> bool:
        """Send the payloads in one round trip; reconnect the sender once if it was lost."""
        rows = [(_CHANNEL_PREFIX + name, payload) for payload in found]
        for attempt in range(2):
            try:
                if self._sender is None or self._sender.is_closed():
                    self._sender = await self._connect("sender")
                await self._sender.executemany("SELECT pg_notify($1, $2)", rows)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                if self._sender is not None:
                    self._sender.terminate()
                self._sender = None
                if attempt or self._closing:
                    log_event(log, "bus.send_failed", logging.WARNING, channel=name)
                    return False
                continue
            self._metrics.bus_notifications.labels("out").inc(len(found))
            return True
        return False
