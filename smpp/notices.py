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

With several instances on one PostgreSQL store (`share`), a tenant's receiver may be
bound to any of them, so a notice is held in memory only by an instance with a receiver
of its tenant, which claims its row (``claimed_by``, until ``claimed_until``: a lease of
``[cluster] notice_lease``, renewed every third of it); one made there is sent at once,
its claim on the way.
Any other notice stays in the store only, and a notification on the bus wakes the
instances: one with a receiver of the tenant claims kept rows (``FOR UPDATE SKIP
LOCKED``, so two never take the same) and delivers them. A receiver that closes gives
back what its instance held for the tenant once no other receiver of it is bound here;
an instance that dies gives back nothing, and its claims lapse with their lease. Every
``[cluster] notice_poll`` an instance with receivers looks for unclaimed rows anyway,
since a notification can be lost. ``stored`` then counts the tenant's rows that no
instance holds, recounted at each poll: each instance's pending count is what it holds
plus what nobody does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from gateway.cluster.bus import ClusterBus
from gateway.cluster.instance import runs_of_instance
from gateway.config import ClusterConfig, SmppConfig
from gateway.domain import Interface, Message, Notice, NoticeKind
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.network import FinalWrites
from gateway.store import Store, StoreError
from smpp.pdu import CommandStatus
from smpp.session import Window

log = logging.getLogger(__name__)

# Enough doublings to pass any cap; the exponent stops here so it never overflows.
_MAX_DOUBLINGS = 30
# The bus channel that wakes instances: items are the tenant ids with notices nobody holds.
_CHANNEL = "notices"


class Receiver(Protocol):
    """A bound receiver or transceiver session, as the queue sees it."""

    def can_deliver(self) -> bool:
        """Whether the session may send a deliver_sm now."""
        ...

    def deliver_many(self, notices: Sequence[Notice]) -> list[int]:
        """Send the notices as deliver_sm; returns their sequence numbers, in order."""
        ...


class _TenantQueue:
    """One tenant's containers."""

    __slots__ = (
        "changed",
        "dispatch_due",
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
        # A dispatch is scheduled for the end of this loop turn (see `NoticeQueue.offer`).
        self.dispatch_due = False

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
        # Shared with other instances: the bus, our claims' owner name, the lease and poll.
        self._bus: ClusterBus | None = None
        self._owner = ""
        self._lease = 0.0
        self._poll = 0.0
        # Notices just kept for a tenant with a receiver here, to claim in one statement.
        self._unclaimed: dict[str, list[Notice]] = {}

    def share(self, bus: ClusterBus, owner: str, config: ClusterConfig) -> None:
        """Hold only notices claimed by ``owner``; hear of the others' (before `open`)."""
        self._bus = bus
        self._owner = owner
        self._lease = config.notice_lease
        self._poll = config.notice_poll
        bus.listen(_CHANNEL, self._kept_elsewhere, self._look_everywhere)

    async def open(self) -> None:
        """Count what the store kept (from before a restart or crash)."""
        if self._bus is not None:  # an earlier run of this instance is dead: its claims too
            await self._store.notices.release_earlier_runs(
                runs_of_instance(self._owner), self._owner
            )
            await self._count_unclaimed()
            for work in (self._keep_claims(), self._keep_polling()):
                self._spawn(work)
            return
        for tenant, count in (await self._store.notices.count_by_tenant()).items():
            self._tenant(tenant).stored = count

    async def close(self) -> None:
        """Stop timers and loads; every notice stays in the store for the next start.

        Shared, our claims are given back, so other instances need not wait for the lease.
        """
        self._closed = True  # sessions that end after this start no new loads
        for queue in self._tenants.values():
            for _, timer in queue.retrying.values():
                timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._bus is not None:
            try:
                await self._store.notices.release_all(self._owner)
            except Exception:  # the driver's errors too: the lease runs out instead
                log_event(log, "smpp.notice_release_failed", logging.WARNING)
            else:
                self._bus.notify(_CHANNEL, sorted(self._tenants))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        if self._bus is not None:
            queue.stored = max(queue.stored, 1)  # what other instances kept for it
        self._dispatch(queue)

    def detach(self, receiver: Receiver) -> None:
        """The session ended: what it left unacknowledged goes first next time."""
        queue = self._sessions.pop(receiver, None)
        if queue is None:
            return
        unanswered = queue.receivers.pop(receiver).drain()
        queue.waiting.extendleft(reversed(unanswered))
        if self._bus is not None and not queue.receivers:
            self._give_back(queue)
            return
        while queue.in_memory() > self._memory and queue.waiting:
            self._to_store(queue, queue.waiting.pop())
        self._dispatch(queue)

    def _give_back(self, queue: _TenantQueue) -> None:
        """No receiver of the tenant is left here: release what we hold, wake the others."""
        held = list(queue.waiting)
        for _, (notice, timer) in queue.retrying.items():
            timer.cancel()
            held.append(notice)
        queue.waiting.clear()
        queue.retrying.clear()
        for notice in held:
            assert notice.queue_id is not None
            self._attempts.pop(notice.queue_id, None)
        queue.stored += len(held)
        queue.changed += 1
        if held:
            self._store.notices.release(self._owner, [n.queue_id or 0 for n in held])
        assert self._bus is not None
        self._bus.notify(_CHANNEL, [queue.name])

    # --- notices in -------------------------------------------------------------------

    def keep_receipt(self, message: Message) -> FinalWrites | None:
        """Network final hook: the receipt an SMPP sender asked for, committed with the state
        and offered once it is."""
        if message.interface is not Interface.SMPP or not message.receipt.wants(message.status):
            return None
        now = self._clock()
        notice = Notice(  # positional: 2.1 -> 0.9 us against keywords (timeit, loaded machine)
            message.tenant,
            NoticeKind.RECEIPT,
            # A submit_multi's destinations answer to the id its response carried.
            message.submission or message.id,
            message.recipient,  # handset
            message.sender,  # address
            now,  # created_at
            now + self._ttl,  # expires_at
            message.status,
            message.error,
            message.submitted_at,
        )
        return self._store.notices.keep_steps(notice), functools.partial(self.offer, notice)

    def offer(self, notice: Notice) -> None:
        """A new notice, already durable: send it, hold it, or leave it in the store."""
        assert notice.queue_id is not None, "a notice is queued only once it has its row"
        queue = self._tenant(notice.tenant)
        if self._bus is not None:
            self._offer_shared(queue, notice)
        elif queue.in_memory() < self._memory:
            queue.waiting.append(notice)
            self._dispatch_soon(queue)
        else:
            self._to_store(queue, notice)

    def _to_store(self, queue: _TenantQueue, notice: Notice) -> None:
        """Let go of a notice in memory; its row stays and a later load brings it back."""
        assert notice.queue_id is not None
        self._attempts.pop(notice.queue_id, None)
        queue.stored += 1
        queue.changed += 1
        if self._bus is not None:  # claimed by us: now anyone's
            self._store.notices.release(self._owner, [notice.queue_id])
            self._bus.notify(_CHANNEL, [queue.name])

    # --- shared with other instances ----------------------------------------------------

    def _offer_shared(self, queue: _TenantQueue, notice: Notice) -> None:
        """With a receiver of its tenant here, send the notice now and claim its row (for
        the notices of one loop tick in one statement); else wake the other instances.

        Sent before the claim returns, so a receipt is no later than with one instance;
        the row is nobody's until then, and another instance that takes it in that
        moment sends it too (at least once, as ever).
        """
        if queue.receivers and queue.in_memory() < self._memory:
            if not self._unclaimed:
                asyncio.get_running_loop().call_soon(self._claim_kept)
            self._unclaimed.setdefault(queue.name, []).append(notice)
            queue.waiting.append(notice)
            self._dispatch(queue)
            return
        queue.stored += 1
        queue.changed += 1
        assert self._bus is not None
        self._bus.notify(_CHANNEL, [queue.name])

    def _claim_kept(self) -> None:
        """Claim, per tenant in one statement, the notices kept in this loop tick."""
        unclaimed, self._unclaimed = self._unclaimed, {}
        if not self._closed:
            for tenant, notices in unclaimed.items():
                self._spawn(self._claim_held(self._tenant(tenant), notices))

    async def _claim_held(self, queue: _TenantQueue, notices: list[Notice]) -> None:
        """Claim the rows of notices already held; drop those another instance took."""
        now = self._clock()
        ids = [n.queue_id or 0 for n in notices]
        try:
            claimed = await self._store.notices.claim_ids(self._owner, ids, now, now + self._lease)
        except Exception:  # the driver's errors, or StoreError: held unclaimed, still sent
            log_event(log, "smpp.notice_claim_failed", logging.WARNING, tenant=queue.name)
            return
        taken = {n.queue_id for n in notices} - claimed
        if taken:  # another instance's to deliver; what is already sent stays outstanding
            queue.waiting = deque(n for n in queue.waiting if n.queue_id not in taken)
            self._dispatch(queue)

    def _kept_elsewhere(self, items: list[Any]) -> None:
        """Another instance kept or gave back notices of these tenants: look, if we receive."""
        for tenant in items:
            queue = self._tenants.get(tenant) if isinstance(tenant, str) else None
            if queue is not None and queue.receivers:
                queue.stored = max(queue.stored, 1)
                self._dispatch(queue)

    def _look_everywhere(self) -> None:
        """Notifications may have been lost: look for every tenant we receive for."""
        self._kept_elsewhere(list(self._tenants))

    async def _count_unclaimed(self) -> None:
        """Shared: ``stored`` is each tenant's rows that nobody holds, as the store says now."""
        counts = await self._store.notices.unclaimed_by_tenant(self._clock())
        for tenant in counts.keys() | self._tenants.keys():
            queue = self._tenant(tenant)
            if not queue.loading:  # a claim in progress settles it
                queue.stored = counts.get(tenant, 0)
                queue.changed += 1

    async def _keep_polling(self) -> None:
        """Recount what nobody holds; where a receiver is bound here, claim it."""
        while True:
            await asyncio.sleep(self._poll)
            try:
                await self._count_unclaimed()
            except Exception:  # the driver's errors, or StoreError
                log_event(log, "smpp.notice_count_failed", logging.WARNING)
            self._look_everywhere()

    async def _keep_claims(self) -> None:
        """Renew our claims every third of the lease, so they lapse only if we die."""
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                await self._store.notices.renew(self._owner, self._clock() + self._lease)
            except Exception:  # the driver's errors, or StoreError
                log_event(log, "smpp.notice_renew_failed", logging.WARNING)

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
        self._dispatch_soon(queue)  # the answers of one read refill the window together

    def nacked(self, receiver: Receiver, sequence: int) -> None:
        """generic_nack: the ESME cannot even read our deliver_sm; sending it again would loop."""
        queue = self._sessions.get(receiver)
        notice = queue.receivers[receiver].release(sequence) if queue else None
        if queue is None or notice is None:
            return
        self._give_up(queue, notice, "generic_nack")
        self._dispatch_soon(queue)

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

    def handsets(self, tenant: str) -> set[str]:
        """The handsets the tenant's notices held in memory name (an erasure's candidates)."""
        queue = self._tenants.get(tenant)
        if queue is None:
            return set()
        held = [*queue.waiting, *(notice for notice, _ in queue.retrying.values())]
        held += [n for window in queue.receivers.values() for n in window.outstanding.values()]
        return {notice.handset for notice in held}

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

    def _dispatch_soon(self, queue: _TenantQueue) -> None:
        """Dispatch once, at the end of this loop turn, whatever is offered until then.

        A group commit's hooks offer its receipts one by one, in one turn: they then
        fill the window in one dispatch and leave in one write, not one each.
        """
        if not queue.dispatch_due:
            queue.dispatch_due = True
            asyncio.get_running_loop().call_soon(self._dispatch_due, queue)

    def _dispatch_due(self, queue: _TenantQueue) -> None:
        queue.dispatch_due = False
        self._dispatch(queue)

    def _dispatch(self, queue: _TenantQueue) -> None:
        """Fill the windows of the tenant's receivers; load from the store if memory runs low."""
        now = self._clock()
        waiting = queue.waiting
        for receiver, window in queue.receivers.items():
            room = window.room
            if not waiting or room <= 0 or not receiver.can_deliver():
                continue
            batch: list[Notice] = []
            while waiting and len(batch) < room:
                notice = waiting.popleft()
                if notice.expires_at <= now:
                    self._give_up(queue, notice, "expired")
                else:
                    batch.append(notice)
            if batch:
                for sequence, notice in zip(receiver.deliver_many(batch), batch, strict=True):
                    window.sent(sequence, notice)
        if (
            queue.stored
            and not self._closed
            and queue.receivers
            and not queue.loading
            and queue.in_memory() <= self._memory // 2
        ):
            queue.loading = True
            self._spawn(self._claim(queue) if self._bus is not None else self._load(queue))

    async def _claim(self, queue: _TenantQueue) -> None:
        """Shared: claim notices nobody holds, oldest first, while there is room."""
        try:
            while queue.stored and queue.receivers and self._memory > queue.in_memory():
                changed = queue.changed
                room = self._memory - queue.in_memory()
                now = self._clock()
                rows = await self._store.notices.claim(
                    queue.name, self._owner, now, now + self._lease, room
                )
                known = queue.ids()
                taken = [n for n in rows if n.queue_id not in known]
                queue.waiting.extend(taken)
                queue.stored = max(0, queue.stored - len(taken))
                if not queue.receivers:  # the receiver went while we read
                    self._give_back(queue)
                    return
                if len(rows) < room and queue.changed == changed:
                    queue.stored = 0
                self._dispatch(queue)
                if len(rows) < room:
                    break
        except Exception:  # the driver's errors, or StoreError
            log_event(log, "smpp.notice_load_failed", logging.WARNING, tenant=queue.name)
        finally:
            queue.loading = False

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
