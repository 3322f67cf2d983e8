"""The simulated mobile network: decides each message's fate and plays it out.

Rules (first match wins, in config order) pick an outcome by recipient prefix or
exact number, optionally with a probability (a miss falls through to the next
rule) and a latency range of their own. Without a matching rule a message is
delivered after a random latency from ``[simulator] latency``. Listeners hear
of a final state only after it is committed, so a callback or receipt never
announces something a crash could take back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable

from gateway.config import Outcome, SimulatorConfig
from gateway.domain import InboxEntry, Message, Status, StatusChange
from gateway.metrics import Metrics
from gateway.store import Store

StatusListener = Callable[[Message], None]

# The reason a final state carries, as the traffic log and the API show it.
OUTCOME_ERRORS: dict[Outcome, str | None] = {
    Outcome.DELIVERED: None,
    Outcome.UNDELIVERABLE: "unknown_subscriber",
    Outcome.EXPIRED: "validity_period_expired",
    Outcome.REJECTED: "network_rejected",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    latency: float


class SimulatedNetwork:
    def __init__(
        self,
        config: SimulatorConfig,
        store: Store,
        metrics: Metrics,
        clock: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self._listeners: list[StatusListener] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def subscribe(self, listener: StatusListener) -> None:
        """Call ``listener`` with the updated message whenever one reaches a final state."""
        self._listeners.append(listener)

    def decide(self, recipient: str) -> Decision:
        rng = self._rng
        for rule in self._config.rules:
            if rule.matches(recipient) and (
                rule.probability >= 1.0 or rng.random() < rule.probability
            ):
                low, high = rule.latency or self._config.latency
                return Decision(rule.outcome, rng.uniform(low, high))
        low, high = self._config.latency
        return Decision(Outcome.DELIVERED, rng.uniform(low, high))

    def hand_over(self, message: Message, body: str) -> None:
        """Take an accepted, committed message onto the network."""
        decision = self.decide(message.recipient)
        now = self._clock()
        self._store.record_status(StatusChange(message.id, Status.ENROUTE, now))
        enroute = dataclasses.replace(message, status=Status.ENROUTE, enroute_at=now)
        loop = asyncio.get_running_loop()
        self._timers[message.id] = loop.call_later(
            decision.latency, self._finish, enroute, body, decision.outcome
        )
        self._metrics.in_flight.inc()

    def _finish(self, message: Message, body: str, outcome: Outcome) -> None:
        del self._timers[message.id]
        self._metrics.in_flight.dec()
        now = self._clock()
        status = Status(outcome.value)
        error = OUTCOME_ERRORS[outcome]
        if outcome is Outcome.DELIVERED:
            self._store.record_delivery(
                InboxEntry(message.id, message.tenant, message.recipient, message.sender, body, now)
            )
        final = dataclasses.replace(message, status=status, final_at=now, error=error)
        self._store.record_status(
            StatusChange(message.id, status, now, error), after_commit=lambda: self._announce(final)
        )

    def _announce(self, message: Message) -> None:
        self._metrics.deliveries.labels(message.tenant, message.status.value).inc()
        for listener in self._listeners:
            listener(message)

    def stop(self) -> None:
        """Drop pending timers; those messages stay unfinished and resume at the next start."""
        for timer in self._timers.values():
            timer.cancel()
        self._metrics.in_flight.dec(len(self._timers))
        self._timers.clear()
