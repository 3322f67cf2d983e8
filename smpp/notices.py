"""The durable notice queue: receipts and mobile-originated messages for SMPP receivers.

Every notice has a row in the store from the moment it exists (a receipt's row is
committed with the final state it reports, an MO's before its 202) until a receiver
acknowledges it, so a crash loses none: the next start counts them and sends them
again. `NoticeQueue` holds the part in memory and owns every container of it:

* ``waiting`` (per tenant): notices in memory, ready to send;
* ``retrying`` (per tenant): notices answered with a temporary error, each on a timer
  whose delay doubles per attempt from ``notice_first_retry`` up to ``notice_max_retry``;
* ``outstanding`` (per receiving session): deliver_sm sent and not yet answered, at
  most ``deliver_window``, in a `smpp.session.Window` by sequence number;
* ``stored`` (per tenant): how many notices are in the store only. Beyond
  ``notice_memory`` notices in ``waiting`` and ``retrying``, new ones stay there; they
  are loaded, oldest first, while a receiver is bound and memory is at most half full.

The pending count is computed from these containers, never adjusted by hand. A closed
session's unacknowledged notices go to the front of ``waiting`` again: delivery is at
least once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from gateway.config import SmppConfig
from gateway.domain import Interface, Message, Notice, NoticeKind
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.store import Store, StoreError
from smpp.pdu import CommandStatus
from smpp.session import Window

log = logging.getLogger(__name__)

# Enough doublings to pass any cap; the exponent stops here so it never overflows.
_MAX_DOUBLINGS = 30


class Receiver(Protocol):
    """A bound receiver or transceiver session, as the queue sees it."""

    def can_deliver(self) -> bool:
        """Whether the session may send a deliver_sm now."""
        ...

    def deliver(self, notice: Notice) -> int:
        """Send the notice as a deliver_sm; returns its sequence number."""
        ...


class _TenantQueue:
    """One tenant's containers."""

    __slots__ = (
        "changed",
        "forgotten",
        "loading",
        "name",
        "receivers",
        "retrying",
        "stored",
        "waiting",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.waiting: deque[Notice] = deque()
        self.retrying: dict[int, tuple[Notice, asyncio.TimerHandle]] = {}
        self.receivers: dict[Receiver, Window[Notice]] = {}
        self.stored = 0
        self.loading = False
        # Bumped whenever a notice goes to the store only: a load that found the store
        # empty may conclude ``stored == 0`` only if nothing went there meanwhile.
        self.changed = 0
        # Ids forgotten while a load reads: its rows may still show them.
        self.forgotten: set[int] | None = None

    def in_memory(self) -> int:
        """Notices held for sending (outstanding ones are bounded by the window instead)."""
        return len(self.waiting) + len(self.retrying)

    def outstanding(self) -> int:
        return sum(len(window) for window in self.receivers.values())

    def pending(self) -> int:
        return self.in_memory() + self.outstanding() + self.stored

    def ids(self) -> set[int | None]:
        ids: set[int | None] = {n.queue_id for n in self.waiting}
        ids.update(self.retrying)
        for window in self.receivers.values():
            ids.update(n.queue_id for n in window.outstanding.values())
        return ids


class NoticeQueue:
    def __init__(
        self, store: Store, config: SmppConfig, metrics: Metrics, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._ttl = config.notice_ttl
        self._memory = config.notice_memory
        self._window = config.deliver_window
        self._first_retry = config.notice_first_retry
        self._max_retry = config.notice_max_retry
        self._metrics = metrics
        self._clock = clock
        self._tenants: dict[str, _TenantQueue] = {}
        self._sessions: dict[Receiver, _TenantQueue] = {}
        # Temporary errors so far, per notice id, for the backoff.
        self._attempts: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def open(self) -> None:
        """Count what the store kept (from before a restart or crash)."""
        for tenant, count in (await self._store.notices.count_by_tenant()).items():
            self._tenant(tenant).stored = count

    async def close(self) -> None:
        """Stop timers and loads; every notice stays in the store for the next start."""
        self._closed = True  # sessions that end after this start no new loads
        for queue in self._tenants.values():
            for _, timer in queue.retrying.values():
                timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def pending(self) -> int:
        """Notices not yet acknowledged, in memory or in the store."""
        return sum(queue.pending() for queue in self._tenants.values())

    def outstanding(self, tenant: str) -> int:
        """deliver_sm sent to the tenant's sessions and not yet answered."""
        queue = self._tenants.get(tenant)
        return queue.outstanding() if queue else 0

    def window_of(self, receiver: Receiver) -> int | None:
        """deliver_sm sent to this session and not yet answered; None if it receives none."""
        queue = self._sessions.get(receiver)
        return len(queue.receivers[receiver]) if queue else None

    @property
    def window_size(self) -> int:
        return self._window

    def _tenant(self, tenant: str) -> _TenantQueue:
        queue = self._tenants.get(tenant)
        if queue is None:
            queue = self._tenants[tenant] = _TenantQueue(tenant)
        return queue

    # --- sessions ---------------------------------------------------------------------

    def attach(self, receiver: Receiver, tenant: str) -> None:
        """A receiver or transceiver of the tenant bound: send it what waits."""
        queue = self._tenant(tenant)
        queue.receivers[receiver] = Window(self._window)
        self._sessions[receiver] = queue
        self._dispatch(queue)

    def detach(self, receiver: Receiver) -> None:
        """The session ended: what it left unacknowledged goes first next time."""
        queue = self._sessions.pop(receiver, None)
        if queue is None:
            return
        unanswered = queue.receivers.pop(receiver).drain()
        queue.waiting.extendleft(reversed(unanswered))
        while queue.in_memory() > self._memory and queue.waiting:
            self._to_store(queue, queue.waiting.pop())
        self._dispatch(queue)

    # --- notices in -------------------------------------------------------------------

    def keep_receipt(self, message: Message) -> None:
        """Network final hook: the receipt an SMPP sender asked for, committed with the state."""
        if message.interface is not Interface.SMPP or not message.receipt.wants(message.status):
            return
        now = self._clock()
        notice = Notice(
            tenant=message.tenant,
            kind=NoticeKind.RECEIPT,
            # A submit_multi's destinations answer to the id its response carried.
            message_id=message.submission or message.id,
            handset=message.recipient,
            address=message.sender,
            created_at=now,
            expires_at=now + self._ttl,
            status=message.status,
            error=message.error,
            submitted_at=message.submitted_at,
        )
        self._store.notices.keep(notice, after_commit=functools.partial(self.offer, notice))

    def offer(self, notice: Notice) -> None:
        """A new notice, already durable: send it, hold it, or leave it in the store."""
        assert notice.queue_id is not None, "a notice is queued only once it has its row"
        queue = self._tenant(notice.tenant)
        if queue.in_memory() < self._memory:
            queue.waiting.append(notice)
            self._dispatch(queue)
        else:
            self._to_store(queue, notice)

    def _to_store(self, queue: _TenantQueue, notice: Notice) -> None:
        """Let go of a notice in memory; its row stays and a later load brings it back."""
        assert notice.queue_id is not None
        self._attempts.pop(notice.queue_id, None)
        queue.stored += 1
        queue.changed += 1

    # --- answers ----------------------------------------------------------------------

    def answered(self, receiver: Receiver, sequence: int, status: int) -> None:
        """deliver_sm_resp (or data_sm_resp): acknowledged, refused for good, or try later."""
        queue = self._sessions.get(receiver)
        notice = queue.receivers[receiver].release(sequence) if queue else None
        if queue is None or notice is None:
            return
        if status == CommandStatus.ESME_ROK:
            self._forget(queue, notice)
        elif status == CommandStatus.ESME_RX_P_APPN:
            self._give_up(queue, notice, "permanent_error")
        else:
            self._retry_later(queue, notice)
        self._dispatch(queue)

    def nacked(self, receiver: Receiver, sequence: int) -> None:
        """generic_nack: the ESME cannot even read our deliver_sm; sending it again would loop."""
        queue = self._sessions.get(receiver)
        notice = queue.receivers[receiver].release(sequence) if queue else None
        if queue is None or notice is None:
            return
        self._give_up(queue, notice, "generic_nack")
        self._dispatch(queue)

    def _forget(self, queue: _TenantQueue, notice: Notice) -> None:
        assert notice.queue_id is not None
        self._attempts.pop(notice.queue_id, None)
        self._store.notices.forget(notice.queue_id)
        if queue.forgotten is not None:
            queue.forgotten.add(notice.queue_id)

    def _give_up(self, queue: _TenantQueue, notice: Notice, reason: str) -> None:
        self._forget(queue, notice)
        self._metrics.notices_given_up.labels(queue.name, reason).inc()
        log_event(
            log,
            "smpp.notice_given_up",
            logging.WARNING,
            tenant=queue.name,
            kind=notice.kind.value,
            message_id=notice.message_id,
            reason=reason,
        )

    def retry_delay(self, attempts: int) -> float:
        """The wait before sending again after ``attempts`` temporary errors."""
        doublings = min(attempts - 1, _MAX_DOUBLINGS)
        return min(self._first_retry * 2.0**doublings, self._max_retry)

    def _retry_later(self, queue: _TenantQueue, notice: Notice) -> None:
        assert notice.queue_id is not None
        attempts = self._attempts[notice.queue_id] = self._attempts.get(notice.queue_id, 0) + 1
        timer = asyncio.get_running_loop().call_later(
            self.retry_delay(attempts), self._retry_due, queue, notice.queue_id
        )
        queue.retrying[notice.queue_id] = (notice, timer)
        self._metrics.notice_retries.labels(queue.name).inc()

    def _retry_due(self, queue: _TenantQueue, queue_id: int) -> None:
        notice, _ = queue.retrying.pop(queue_id)
        queue.waiting.appendleft(notice)
        self._dispatch(queue)

    # --- erasure and expiry -------------------------------------------------------------

    def forget_handset(self, tenant: str, handset: str, stored: int) -> None:
        """A subject was erased along with its ``stored`` notice rows: drop them from memory."""
        queue = self._tenants.get(tenant)
        if queue is None:
            return
        dropped = self._drop(queue, lambda notice: notice.handset == handset)
        # Every notice in memory has its row, so the rest of the rows were in the store only.
        queue.stored = max(0, queue.stored - max(0, stored - dropped))
        self._dispatch(queue)

    def forget_tenant(self, tenant: str) -> None:
        """A purged tenant's rows are all gone: drop every notice of it from memory too."""
        queue = self._tenants.get(tenant)
        if queue is None:
            return
        self._drop(queue, lambda notice: True)
        queue.stored = 0

    def _drop(self, queue: _TenantQueue, matches: Callable[[Notice], bool]) -> int:
        """Drop the matching notices from every container of ``queue``; how many there were.

        An outstanding one's late answer finds nothing and is ignored.
        """
        dropped = [n for n in queue.waiting if matches(n)]
        queue.waiting = deque(n for n in queue.waiting if not matches(n))
        for queue_id, (notice, timer) in list(queue.retrying.items()):
            if matches(notice):
                timer.cancel()
                del queue.retrying[queue_id]
                dropped.append(notice)
        for window in queue.receivers.values():
            for sequence, notice in list(window.outstanding.items()):
                if matches(notice):
                    window.release(sequence)
                    dropped.append(notice)
        for notice in dropped:
            self._attempts.pop(notice.queue_id or 0, None)
        return len(dropped)

    async def forget_expired(self) -> None:
        """Delete notices past ``notice_ttl`` that are not being delivered right now."""
        expired: dict[int, str] = dict(await self._store.notices.expired(self._clock()))
        for queue in self._tenants.values():
            outstanding = {
                n.queue_id
                for window in queue.receivers.values()
                for n in window.outstanding.values()
            }
            for queue_id in expired.keys() & outstanding:
                del expired[queue_id]  # its answer, or the next dispatch, settles it
            held = [n for n in queue.waiting if n.queue_id in expired]
            queue.waiting = deque(n for n in queue.waiting if n.queue_id not in expired)
            for queue_id in expired.keys() & queue.retrying.keys():
                notice, timer = queue.retrying.pop(queue_id)
                timer.cancel()
                held.append(notice)
            for notice in held:
                assert notice.queue_id is not None
                del expired[notice.queue_id]
                self._give_up(queue, notice, "expired")
        for queue_id, tenant in expired.items():  # in the store only
            queue = self._tenant(tenant)
            queue.stored = max(0, queue.stored - 1)
            self._store.notices.forget(queue_id)
            self._metrics.notices_given_up.labels(tenant, "expired").inc()

    # --- sending and loading ------------------------------------------------------------

    def _dispatch(self, queue: _TenantQueue) -> None:
        """Fill the windows of the tenant's receivers; load from the store if memory runs low."""
        now = self._clock()
        for receiver, window in queue.receivers.items():
            while queue.waiting and window.room > 0 and receiver.can_deliver():
                notice = queue.waiting.popleft()
                if notice.expires_at <= now:
                    self._give_up(queue, notice, "expired")
                    continue
                window.sent(receiver.deliver(notice), notice)
        if (
            queue.stored
            and not self._closed
            and queue.receivers
            and not queue.loading
            and queue.in_memory() <= self._memory // 2
        ):
            queue.loading = True
            task = asyncio.create_task(self._load(queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _load(self, queue: _TenantQueue) -> None:
        """Bring notices kept in the store only into memory, oldest first, while there is room."""
        try:
            while queue.stored and queue.receivers and self._memory > queue.in_memory():
                changed = queue.changed
                forgotten: set[int] = set()
                queue.forgotten = forgotten
                await self._store.flush()  # acknowledgements so far are deleted before we read
                # The oldest rows may be ours in memory, or forgotten but not deleted yet:
                # read past them, so at least the room's worth of the others comes back.
                limit = self._memory - queue.in_memory() + len(queue.ids() | forgotten)
                rows = await self._store.notices.kept(queue.name, self._clock(), limit)
                known = queue.ids() | forgotten
                fresh = [n for n in rows if n.queue_id not in known]
                room = max(0, self._memory - queue.in_memory())
                taken = fresh[:room]
                queue.waiting.extend(taken)
                queue.stored = max(0, queue.stored - len(taken))
                if len(rows) < limit and len(fresh) <= room and queue.changed == changed:
                    queue.stored = 0  # the store has no more (others were deleted meanwhile)
                queue.forgotten = None
                self._dispatch(queue)
                if not taken:
                    break
        except StoreError:
            log_event(log, "smpp.notice_load_failed", logging.WARNING, tenant=queue.name)
        finally:
            queue.loading = False
            queue.forgotten = None
