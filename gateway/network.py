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
Final hooks run just before the state is queued, so what they queue (a receipt's
row) commits with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from collections.abc import Callable

from gateway.chaos import Chaos
from gateway.config import Outcome, SimulatorConfig, SubmitError
from gateway.domain import Message, Outgoing, RejectCode, Status, StatusChange
from gateway.events import HANDSET_RECEIVED, MESSAGE_STATUS, EventBus
from gateway.metrics import Metrics
from gateway.store import Store

StatusListener = Callable[[Message], None]
# Asked just before delivery; a reason (e.g. "opted_out") stops the message there.
DeliveryCheck = Callable[[Message], str | None]

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
        self._final_hooks: list[StatusListener] = []
        self._delivery_checks: list[DeliveryCheck] = []
        self._in_flight: dict[str, _InFlight] = {}
        # tick -> its timer and the ids of the messages due then
        self._ticks: dict[int, tuple[asyncio.TimerHandle, list[str]]] = {}
        metrics.in_flight.set_function(lambda: len(self._in_flight))

    def subscribe(self, listener: StatusListener) -> None:
        """Call ``listener`` with the updated message whenever one reaches a final state."""
        self._listeners.append(listener)

    def add_final_hook(self, hook: StatusListener) -> None:
        """Call ``hook`` with each final message before its state is queued for commit.

        Writes the hook queues in the store share that commit: a crash keeps both or neither.
        """
        self._final_hooks.append(hook)

    def add_delivery_check(self, check: DeliveryCheck) -> None:
        self._delivery_checks.append(check)

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
        """Take an accepted, committed message onto the network."""
        message = item.message
        decision = self.decide(message.tenant, message.recipient)
        now = self._clock()
        enroute = Outgoing(
            message.moved_to(Status.ENROUTE, now),
            item.body,
            item.part,
        )
        self._store.traffic.record_status(
            StatusChange(message.id, Status.ENROUTE, now),
            after_commit=lambda: self._publish_status(enroute.message),
        )
        self._in_flight[message.id] = _InFlight(enroute, decision.outcome)
        self._finish_after(message.id, decision.latency)

    def _finish_after(self, message_id: str, delay: float) -> None:
        loop = asyncio.get_running_loop()
        tick = math.ceil((loop.time() + delay) / TICK)
        if tick not in self._ticks:
            self._ticks[tick] = (loop.call_at(tick * TICK, self._finish_tick, tick), [])
        self._ticks[tick][1].append(message_id)

    def _finish_tick(self, tick: int) -> None:
        for message_id in self._ticks.pop(tick)[1]:
            if message_id in self._in_flight:  # not cancelled meanwhile
                self._finish(message_id)

    def pending(self, tenant: str, message_id: str) -> Message | None:
        """The message if it is still on its way (not final), for this tenant only."""
        flight = self._in_flight.get(message_id)
        if flight is None or flight.item.message.tenant != tenant:
            return None
        return flight.item.message

    def pending_to(self, tenant: str, recipient: str) -> list[str]:
        """Ids of this tenant's messages to ``recipient`` still on their way."""
        return [
            message_id
            for message_id, flight in self._in_flight.items()
            if flight.item.message.tenant == tenant and flight.item.message.recipient == recipient
        ]

    def cancel(self, tenant: str, message_id: str) -> bool:
        """Withdraw a message that is not final yet; it ends ``deleted`` (queued, not committed)."""
        if self.pending(tenant, message_id) is None:
            return False
        flight = self._in_flight.pop(message_id)  # its tick will find it gone
        self._end(flight.item, Status.DELETED, "cancelled")
        return True

    def drop_tenant(self, tenant: str) -> None:
        """Forget a purged tenant's messages on their way, writing nothing: their rows are gone.

        Their ticks find them gone, as after a cancel; no receipt or callback follows.
        """
        flights = self._in_flight
        for message_id in [m for m, f in flights.items() if f.item.message.tenant == tenant]:
            del flights[message_id]

    def replace(self, tenant: str, message_id: str, body: str) -> bool:
        """Replace the body of a message that is not final yet (queued, not committed)."""
        if self.pending(tenant, message_id) is None:
            return False
        flight = self._in_flight[message_id]
        flight.item = dataclasses.replace(flight.item, body=body)
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
        status = Status(flight.outcome.value)
        if status is Status.DELIVERED:
            message = flight.item.message
            self._store.inbox.record_delivery(
                flight.item, self._clock(), after_commit=lambda: self._publish_received(message)
            )
        self._end(flight.item, status, OUTCOME_ERRORS[flight.outcome])

    def _end(self, item: Outgoing, status: Status, error: str | None) -> None:
        now = self._clock()
        final = item.message.moved_to(status, now, error)
        for hook in self._final_hooks:
            hook(final)
        self._store.traffic.record_status(
            StatusChange(final.id, status, now, error), after_commit=lambda: self._announce(final)
        )

    def _announce(self, message: Message) -> None:
        self._metrics.deliveries.inc(message.tenant, message.status.value)
        self._publish_status(message)
        for listener in self._listeners:
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
        self._in_flight.clear()
