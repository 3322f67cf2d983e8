"""The simulated mobile network: decides each message's fate and plays it out.

Rules (first match wins, in config order) pick an outcome by recipient prefix or
exact number, optionally with a probability (a miss falls through to the next
rule) and a latency range of their own. Without a matching rule a message is
delivered after a random latency from ``[simulator] latency``. Rules with a
``submit_error`` act earlier: they make the submit itself fail. The tenant's
run-time chaos (`gateway.chaos`) is asked first, at both points; what it does not
pick falls through to the rules, and its extra latency adds to theirs.

Listeners hear of a final state only after it is committed, so a callback or a
receipt never announces something a crash could take back; so does the event
stream, which also hears of ``enroute`` and of a handset's delivery once committed.
A final state is one queued unit with everything it brings: the status (which clears
the body), the handset's inbox entry if delivered, and what the final hooks add (a
receipt's row); so a crash keeps all of them or none, and one callback announces
them once committed. (It was three units with a closure each: one instead cut the
loop's instructions for a message's whole store path from 153,000 to 137,000, callgrind.)

With a registry shared by several instances, a delivery recheck (`add_delivery_recheck`)
reads the database for each tick's messages before they are finished: an opt-out another
instance committed stops them even before this one is told of it. A tick waits for that
read; if it fails, its messages try again a second later, never delivered unchecked.

A scheduled message waits in memory (the pipeline holds each tenant to
``messages.max_scheduled`` of them) in one heap of due times, behind one timer armed
for the earliest: no task or timer per message. When their time comes they go to the
due handler (the pipeline asks its privacy gates again), which answers with
`release` or `stop_scheduled`. A message whose validity ends before its latency does
ends ``expired`` when its validity ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from gateway.chaos import Chaos
from gateway.config import Outcome, SimulatorConfig, SubmitError
from gateway.domain import Message, Outgoing, RejectCode, Status, StatusChange
from gateway.events import HANDSET_RECEIVED, MESSAGE_STATUS, EventBus
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.storage.base import Steps
from gateway.store import Store

log = logging.getLogger(__name__)

StatusListener = Callable[[Message], None]
# What a final hook adds to a final state's unit: its steps, and what runs once committed.
FinalWrites = tuple[Steps, Callable[[], None]]
FinalHook = Callable[[Message], FinalWrites | None]
# Asked just before delivery; a reason (e.g. "opted_out") stops the message there.
DeliveryCheck = Callable[[Message], str | None]
# Asked, with a tick's messages together, just before the delivery checks: a reason per message.
DeliveryRecheck = Callable[[Sequence[Message]], Awaitable[list[str | None]]]
# How long a tick whose recheck failed waits before it tries again.
RECHECK_RETRY = 1.0
# Told of the scheduled messages whose time has come (see `SimulatedNetwork.on_due`).
DueHandler = Callable[[list[Outgoing]], None]

# The reason a final state carries, as the traffic log and the API show it.
OUTCOME_ERRORS: dict[Outcome, str | None] = {
    Outcome.DELIVERED: None,
    Outcome.UNDELIVERABLE: "unknown_subscriber",
    Outcome.EXPIRED: "validity_period_expired",
    Outcome.REJECTED: "network_rejected",
}

SUBMIT_ERRORS: dict[SubmitError, RejectCode] = {
    SubmitError.THROTTLED: RejectCode.THROTTLED,
    SubmitError.QUEUE_FULL: RejectCode.QUEUE_FULL,
    SubmitError.SYSTEM_ERROR: RejectCode.SYSTEM_ERROR,
    SubmitError.NO_RESPONSE: RejectCode.NO_RESPONSE,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    latency: float


@dataclasses.dataclass(slots=True)
class _InFlight:
    item: Outgoing
    outcome: Outcome


# Deliveries are due on millisecond ticks: the messages of one tick share one timer.
# A batch of a thousand submits with the same latency then costs one call_later, not
# a thousand, and the loop's timer heap stays small.
TICK = 0.001


class SimulatedNetwork:
    def __init__(
        self,
        config: SimulatorConfig,
        store: Store,
        metrics: Metrics,
        clock: Callable[[], float],
        events: EventBus,
        rng: random.Random | None = None,
        chaos: Chaos | None = None,
    ) -> None:
        self._config = config
        self._chaos = chaos
        self._events = events
        self._outcome_rules = tuple(r for r in config.rules if not r.submit_error)
        self._submit_rules = tuple(r for r in config.rules if r.submit_error)
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self._listeners: list[StatusListener] = []
        self._enroute_listeners: list[StatusListener] = []
        self._final_hooks: list[FinalHook] = []
        self._delivery_checks: list[DeliveryCheck] = []
        self._rechecks: list[DeliveryRecheck] = []
        self._rechecking: set[asyncio.Task[None]] = set()
        self._in_flight: dict[str, _InFlight] = {}
        # tick -> its timer and the ids of the messages due then
        self._ticks: dict[int, tuple[asyncio.TimerHandle, list[str]]] = {}
        # Scheduled messages: by id, counted per tenant, and a heap of due times.
        self._scheduled: dict[str, Outgoing] = {}
        self._scheduled_per_tenant: Counter[str] = Counter()
        # Heap entries are (due, number, id); a message's live entry is the one whose
        # number ``_entries`` holds, any other one of it is stale (cancelled or moved).
        self._due: list[tuple[float, int, str]] = []
        self._entries: dict[str, tuple[int, float]] = {}
        self._entry_numbers = itertools.count()
        self._on_due: DueHandler = self.release
        self._wake: asyncio.TimerHandle | None = None
        metrics.in_flight.set_function(lambda: len(self._in_flight))
        metrics.scheduled.set_function(lambda: len(self._scheduled))

    def subscribe(self, listener: StatusListener) -> None:
        """Call ``listener`` with the updated message whenever one reaches a final state."""
        self._listeners.append(listener)

    def subscribe_enroute(self, listener: StatusListener) -> None:
        """Call ``listener`` with each message once its hand-over (``enroute``) is committed."""
        self._enroute_listeners.append(listener)

    def add_final_hook(self, hook: FinalHook) -> None:
        """Call ``hook`` with each final message before its state is queued for commit.

        The writes it returns join the state's unit (a crash keeps both or neither), and
        its callback runs once they are committed, before the listeners hear of the state.
        """
        self._final_hooks.append(hook)

    def add_delivery_check(self, check: DeliveryCheck) -> None:
        self._delivery_checks.append(check)

    def add_delivery_recheck(self, recheck: DeliveryRecheck) -> None:
        """Await ``recheck`` for each tick's messages before they are finished."""
        self._rechecks.append(recheck)

    def submit_fault(self, tenant: str, recipient: str) -> RejectCode | None:
        """The failure chaos or a rule imposes on this tenant's submit to this recipient."""
        if self._chaos is not None and (kind := self._chaos.submit_error(tenant)) is not None:
            return SUBMIT_ERRORS[kind]
        for rule in self._submit_rules:
            if rule.matches(recipient) and self._applies(rule.probability):
                return SUBMIT_ERRORS[rule.submit_error]
        return None

    def decide(self, tenant: str, recipient: str) -> Decision:
        decision = self._decide_by_rules(recipient)
        if self._chaos is None:
            return decision
        outcome, extra = self._chaos.outcome(tenant), self._chaos.extra_latency(tenant)
        if outcome is None and not extra:
            return decision
        return Decision(outcome or decision.outcome, decision.latency + extra)

    def _decide_by_rules(self, recipient: str) -> Decision:
        for rule in self._outcome_rules:
            if rule.matches(recipient) and self._applies(rule.probability):
                low, high = rule.latency or self._config.latency
                return Decision(rule.outcome, self._rng.uniform(low, high))
        low, high = self._config.latency
        return Decision(Outcome.DELIVERED, self._rng.uniform(low, high))

    def _applies(self, probability: float) -> bool:
        return probability >= 1.0 or self._rng.random() < probability

    def hand_over(self, item: Outgoing) -> None:
        """Take an accepted, committed message onto the network (a scheduled one at its time)."""
        message = item.message
        if message.status is Status.SCHEDULED and message.send_at is not None:
            self._schedule(item)
        else:
            self._start(item)

    def _start(self, item: Outgoing) -> None:
        """The pipeline commits new messages already ``enroute``, which needs no write here;
        a scheduled one whose time came, or one committed ``accepted`` (by an earlier
        version, resumed), is moved on first.
        """
        message = item.message
        decision = self.decide(message.tenant, message.recipient)
        now = self._clock()
        outcome, latency = decision.outcome, decision.latency
        if message.expires_at is not None and now + latency >= message.expires_at:
            outcome, latency = Outcome.EXPIRED, max(0.0, message.expires_at - now)
        self._go_enroute(item, outcome)
        self._finish_after(message.id, latency)

    def _go_enroute(self, item: Outgoing, outcome: Outcome) -> None:
        """Hand the message over (``enroute``; queued, unless it was stored so); it is in
        flight towards ``outcome``."""
        message = item.message
        if message.status is Status.ENROUTE:
            enroute = item
            self._announce_enroute(message)
        else:
            now = self._clock()
            enroute = Outgoing(message.moved_to(Status.ENROUTE, now), item.body, item.part)
            self._store.traffic.record_status(
                StatusChange(message.id, Status.ENROUTE, now),
                after_commit=lambda: self._announce_enroute(enroute.message),
            )
        self._in_flight[message.id] = _InFlight(enroute, outcome)

    # --- scheduled messages -------------------------------------------------------------

    def scheduled_count(self, tenant: str) -> int:
        """How many of the tenant's messages wait for their time."""
        return self._scheduled_per_tenant[tenant]

    def on_due(self, handler: DueHandler) -> None:
        """Give the scheduled messages whose time has come to ``handler`` instead of letting
        them go at once; it answers each with `release` or `stop_scheduled`."""
        self._on_due = handler

    def _schedule(self, item: Outgoing) -> None:
        message = item.message
        assert message.send_at is not None
        if message.id not in self._scheduled:
            self._scheduled_per_tenant[message.tenant] += 1
        self._scheduled[message.id] = item
        self._wait_until(message.id, message.send_at)

    def _wait_until(self, message_id: str, at: float) -> None:
        """A (new) heap entry for the message; any older one of it is stale from now on."""
        number = next(self._entry_numbers)
        self._entries[message_id] = (number, at)
        heapq.heappush(self._due, (at, number, message_id))
        if len(self._due) > 2 * len(self._entries) + 64:  # mostly stale entries: rebuild
            self._due = [(when, n, m) for m, (n, when) in self._entries.items()]
            heapq.heapify(self._due)
        self._arm()

    def _unschedule(self, message_id: str) -> Outgoing | None:
        self._entries.pop(message_id, None)
        item = self._scheduled.pop(message_id, None)
        if item is not None:
            self._scheduled_per_tenant[item.message.tenant] -= 1
            if not self._scheduled_per_tenant[item.message.tenant]:
                del self._scheduled_per_tenant[item.message.tenant]
        return item

    def _arm(self) -> None:
        """The one timer, set for the earliest due time.

        Compared on the loop's clock, so that a due time that the wall clock has passed
        (it stepped forward) is not left waiting behind a timer set before the step.
        """
        if not self._due:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, self._due[0][0] - self._clock())
        if self._wake is not None:
            if self._wake.when() <= deadline:
                return
            self._wake.cancel()
        self._wake = loop.call_at(deadline, self._release_due)

    def _release_due(self) -> None:
        """Give the due handler every scheduled message whose time has come.

        They stay scheduled (cancel_sm and replace_sm still find them) but without a heap
        entry until the handler answers.
        """
        self._wake = None
        now = self._clock()
        due: list[Outgoing] = []
        while self._due and self._due[0][0] <= now + TICK:
            _, number, message_id = heapq.heappop(self._due)
            entry = self._entries.get(message_id)
            if entry is not None and entry[0] == number:  # not cancelled or moved
                del self._entries[message_id]
                due.append(self._scheduled[message_id])
        if due:
            self._on_due(due)
        self._arm()

    def _awaiting_release(self, message_id: str) -> bool:
        """Given to the due handler, and neither cancelled nor moved since."""
        return message_id in self._scheduled and message_id not in self._entries

    def release(self, items: Sequence[Outgoing]) -> None:
        """Let due scheduled messages go onto the network, as they are now (a replace_sm
        meanwhile kept)."""
        for item in items:
            if self._awaiting_release(item.message.id):
                released = self._unschedule(item.message.id)
                assert released is not None
                self._start(released)

    def stop_scheduled(self, item: Outgoing, reason: str) -> None:
        """End a due scheduled message ``rejected`` instead (e.g. opted out meanwhile)."""
        if self._awaiting_release(item.message.id):
            stopped = self._unschedule(item.message.id)
            assert stopped is not None
            self._end(stopped, Status.REJECTED, reason)

    def postpone(self, items: Sequence[Outgoing], delay: float) -> None:
        """Hand due scheduled messages to the due handler again in ``delay`` seconds."""
        at = self._clock() + delay
        for item in items:
            if self._awaiting_release(item.message.id):
                self._wait_until(item.message.id, at)

    def reschedule(self, tenant: str, message_id: str, send_at: float, expires_at: float) -> bool:
        """Move a scheduled message's time and validity (queued, not committed); False if
        it is not scheduled (any more)."""
        item = self._scheduled.get(message_id)
        if item is None or item.message.tenant != tenant:
            return False
        message = dataclasses.replace(item.message, send_at=send_at, expires_at=expires_at)
        self._store.traffic.reschedule(message_id, send_at, expires_at)
        self._schedule(dataclasses.replace(item, message=message))
        return True

    def _finish_after(self, message_id: str, delay: float) -> None:
        loop = asyncio.get_running_loop()
        tick = math.ceil((loop.time() + delay) / TICK)
        if tick not in self._ticks:
            self._ticks[tick] = (loop.call_at(tick * TICK, self._finish_tick, tick), [])
        self._ticks[tick][1].append(message_id)

    def _finish_tick(self, tick: int) -> None:
        due = [m for m in self._ticks.pop(tick)[1] if m in self._in_flight]  # not cancelled
        if not self._rechecks:
            for message_id in due:
                self._finish(message_id)
            return
        task = asyncio.create_task(self._recheck_then_finish(due))
        self._rechecking.add(task)
        task.add_done_callback(self._rechecking.discard)

    async def _recheck_then_finish(self, due: list[str]) -> None:
        messages = [self._in_flight[message_id].item.message for message_id in due]
        stopped: dict[str, str] = {}
        try:
            for recheck in self._rechecks:
                for message, reason in zip(messages, await recheck(messages), strict=True):
                    if reason is not None:
                        stopped.setdefault(message.id, reason)
        except Exception:  # the store's reads raise its driver's errors as well as StoreError
            log_event(log, "network.recheck_failed", logging.WARNING, messages=len(due))
            for message_id in due:
                if message_id in self._in_flight:
                    self._finish_after(message_id, RECHECK_RETRY)
            return
        for message_id in due:
            flight = self._in_flight.get(message_id)  # cancelled or forced meanwhile: gone
            if flight is None:
                continue
            reason = stopped.get(message_id)
            if reason is None:
                self._finish(message_id)
            else:
                del self._in_flight[message_id]
                self._end(flight.item, Status.REJECTED, reason)

    def _held(self, message_id: str) -> Outgoing | None:
        """A message scheduled or on its way, of any tenant."""
        flight = self._in_flight.get(message_id)
        return flight.item if flight is not None else self._scheduled.get(message_id)

    def pending(self, tenant: str, message_id: str) -> Message | None:
        """The message if it is scheduled or on its way (not final), for this tenant only."""
        item = self._held(message_id)
        if item is None or item.message.tenant != tenant:
            return None
        return item.message

    def outgoing(self, tenant: str, message_id: str) -> Outgoing | None:
        """The message with its body while it is scheduled or on its way, for this tenant only."""
        item = self._held(message_id)
        if item is None or item.message.tenant != tenant:
            return None
        return item

    def pending_to(self, tenant: str, recipient: str) -> list[str]:
        """Ids of this tenant's messages to ``recipient`` scheduled or on their way."""
        held = [f.item for f in self._in_flight.values()] + list(self._scheduled.values())
        return [
            item.message.id
            for item in held
            if item.message.tenant == tenant and item.message.recipient == recipient
        ]

    def recipients(self, tenant: str) -> set[str]:
        """The numbers this tenant's messages scheduled or on their way go to."""
        held = [f.item for f in self._in_flight.values()] + list(self._scheduled.values())
        return {item.message.recipient for item in held if item.message.tenant == tenant}

    def cancel(self, tenant: str, message_id: str) -> bool:
        """Withdraw a message that is not final yet; it ends ``deleted`` (queued, not committed)."""
        if self.pending(tenant, message_id) is None:
            return False
        # Its tick (or its heap entry) will find it gone.
        flight = self._in_flight.pop(message_id, None)
        item = flight.item if flight is not None else self._unschedule(message_id)
        assert item is not None
        self._end(item, Status.DELETED, "cancelled")
        return True

    def force(self, tenant: str, message_id: str, outcome: Outcome) -> bool:
        """End a message on its way or scheduled now with ``outcome``, as its tick would
        have (queued).

        A scheduled one forced ``delivered`` goes enroute and is finished at once (the
        caller has asked the privacy gates again, as for a due one); forced to any other
        outcome it ends so without being handed over. The delivery checks still run: an
        opt-out committed meanwhile still stops a delivery.
        """
        if self.pending(tenant, message_id) is None:
            return False
        flight = self._in_flight.get(message_id)
        if flight is not None:
            flight.outcome = outcome  # its tick will find it gone
        else:  # its heap entry, or the due handler, will find it gone
            item = self._unschedule(message_id)
            assert item is not None
            if outcome is not Outcome.DELIVERED:
                self._end(item, Status(outcome.value), OUTCOME_ERRORS[outcome])
                return True
            self._go_enroute(item, outcome)
        self._finish(message_id)
        return True

    def refuse_scheduled(self, tenant: str, message_id: str, reason: str) -> bool:
        """End a scheduled message ``rejected`` now, before its time (a privacy gate refused
        its forced delivery; queued); False if it is not scheduled (any more)."""
        item = self._scheduled.get(message_id)
        if item is None or item.message.tenant != tenant:
            return False
        self._unschedule(message_id)
        self._end(item, Status.REJECTED, reason)
        return True

    def drop_tenant(self, tenant: str) -> None:
        """Forget a purged tenant's messages on their way, writing nothing: their rows are gone.

        Their ticks find them gone, as after a cancel; no receipt or callback follows.
        """
        flights = self._in_flight
        for message_id in [m for m, f in flights.items() if f.item.message.tenant == tenant]:
            del flights[message_id]
        for message_id in [m for m, i in self._scheduled.items() if i.message.tenant == tenant]:
            self._unschedule(message_id)

    def replace(self, tenant: str, message_id: str, body: str) -> bool:
        """Replace the body of a message that is not final yet (queued, not committed)."""
        if self.pending(tenant, message_id) is None:
            return False
        flight = self._in_flight.get(message_id)
        if flight is not None:
            flight.item = dataclasses.replace(flight.item, body=body)
        else:
            self._scheduled[message_id] = dataclasses.replace(
                self._scheduled[message_id], body=body
            )
        self._store.traffic.replace_body(message_id, body)
        return True

    def stop_before_delivery(self, item: Outgoing, reason: str) -> None:
        """End a committed message ``rejected`` without handing it over (e.g. opted out)."""
        self._end(item, Status.REJECTED, reason)

    def _finish(self, message_id: str) -> None:
        flight = self._in_flight.pop(message_id)
        for check in self._delivery_checks:
            reason = check(flight.item.message)
            if reason is not None:
                self._end(flight.item, Status.REJECTED, reason)
                return
        self._end(flight.item, Status(flight.outcome.value), OUTCOME_ERRORS[flight.outcome])

    def _end(self, item: Outgoing, status: Status, error: str | None) -> None:
        """Queue the final state, with the handset's inbox entry if it was delivered and
        the final hooks' writes, as one unit; announced once it is committed."""
        now = self._clock()
        final = item.message.moved_to(status, now, error)
        store = self._store
        steps = [*store.traffic.status_steps(StatusChange(final.id, status, now, error))]
        delivered = status is Status.DELIVERED
        if delivered:
            steps += store.inbox.delivery_steps(item, now)
        followers = []
        for hook in self._final_hooks:
            added = hook(final)
            if added is not None:
                steps += added[0]
                followers.append(added[1])
        store.queue("final", steps, partial(self._final_committed, final, delivered, followers))

    def _final_committed(
        self, message: Message, delivered: bool, followers: list[Callable[[], None]]
    ) -> None:
        if delivered:
            self._publish_received(message)
        for follow in followers:
            follow()
        self._announce(message)

    def _announce(self, message: Message) -> None:
        self._metrics.deliveries.inc(message.tenant, message.status)  # a StrEnum: its value
        self._publish_status(message)
        for listener in self._listeners:
            listener(message)

    def _announce_enroute(self, message: Message) -> None:
        self._publish_status(message)
        for listener in self._enroute_listeners:
            listener(message)

    def _publish_status(self, message: Message) -> None:
        self._events.publish(
            message.tenant, MESSAGE_STATUS, message.id, message.status.value, message.error
        )

    def _publish_received(self, message: Message) -> None:
        """A handset's inbox holds the message (one event per part of a long one)."""
        self._events.publish(
            message.tenant, HANDSET_RECEIVED, [message.id], message.recipient, message.sender
        )

    def stop(self) -> None:
        """Drop pending timers; those messages stay unfinished and resume at the next start."""
        for timer, _ in self._ticks.values():
            timer.cancel()
        self._ticks.clear()
        for task in self._rechecking:
            task.cancel()
        self._in_flight.clear()
        if self._wake is not None:
            self._wake.cancel()
        self._wake = None
        self._due.clear()
        self._entries.clear()
        self._scheduled.clear()
        self._scheduled_per_tenant.clear()
