"""Chaos at run time: faults a tenant turns on and off over the API, for its tests.

The config's ``[[simulator.rules]]`` are the static baseline; chaos layers on top
of them, for one tenant at a time: a submit error by kind with some probability,
a delivery outcome with some probability, extra latency, SMPP session drops and a
throughput cap. What chaos does not pick falls through to the rules. The network
asks `Chaos` at submit and at hand-over, the pipeline for the cap, the SMPP
server whether to drop a session; each fault injected is counted in
``smsgw_chaos_injected_total`` by kind, and each change is a ``chaos.changed``
event on the tenant's stream.

Chaos is a test tool and lives in memory only: a restart turns it off.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway.config import Outcome, SubmitError
from gateway.events import CHAOS_CHANGED, EventBus
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.rates import TokenBucket

log = logging.getLogger(__name__)

SUBMIT_ERROR_KINDS = tuple(kind for kind in SubmitError if kind is not SubmitError.NONE)
OUTCOME_KINDS = tuple(Outcome)
# Bounds on what a client can ask for: no timer a day away, no float overflow.
MAX_EXTRA_LATENCY = 600.0
MAX_RATE = 1_000_000.0
MAX_AFTER_PDUS = 2**31 - 1
_FIELDS = ("submit_errors", "outcomes", "extra_latency", "session_drop", "max_submit_rate")
_Kind = TypeVar("_Kind", SubmitError, Outcome)


class ChaosError(ValueError):
    """A chaos settings document that is not valid, naming the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"'{field}' {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ChaosSettings:
    """One tenant's chaos. The default is none at all."""

    # Probability of each kind of submit error; together at most 1.
    submit_errors: Mapping[SubmitError, float] = field(default_factory=dict)
    # Probability of each delivery outcome; together at most 1.
    outcomes: Mapping[Outcome, float] = field(default_factory=dict)
    # Seconds added to each message's simulated latency, drawn from [min, max].
    extra_latency: tuple[float, float] = (0.0, 0.0)
    # SMPP: a bound session is closed when a PDU arrives after this many.
    drop_after_pdus: int | None = None
    # SMPP: probability that a PDU closes its session instead of being handled.
    drop_probability: float = 0.0
    # Submits per second over all front ends, on top of the tenant's max_submit_rate.
    max_submit_rate: float | None = None

    @property
    def active(self) -> bool:
        return self != OFF

    @classmethod
    def from_document(cls, document: object) -> ChaosSettings:
        """Settings from their JSON form (see `document`); every key optional; {} is none."""
        table = _object(document, "")
        _no_unknown(table, _FIELDS, "")
        drop = table.get("session_drop")
        drop = {} if drop is None else _object(drop, "session_drop")
        _no_unknown(drop, ("after_pdus", "probability"), "session_drop")
        return cls(
            submit_errors=_kinds(table.get("submit_errors"), "submit_errors", SUBMIT_ERROR_KINDS),
            outcomes=_kinds(table.get("outcomes"), "outcomes", OUTCOME_KINDS),
            extra_latency=_latency(table.get("extra_latency"), "extra_latency"),
            drop_after_pdus=_after_pdus(drop.get("after_pdus"), "session_drop.after_pdus"),
            drop_probability=_probability(drop.get("probability", 0.0), "session_drop.probability"),
            max_submit_rate=_rate(table.get("max_submit_rate"), "max_submit_rate"),
        )

    def document(self) -> dict[str, Any]:
        """The JSON form, every field present: what GET shows, and what PUT takes back."""
        return {
            "submit_errors": {k.value: self.submit_errors.get(k, 0.0) for k in SUBMIT_ERROR_KINDS},
            "outcomes": {k.value: self.outcomes.get(k, 0.0) for k in OUTCOME_KINDS},
            "extra_latency": list(self.extra_latency),
            "session_drop": {
                "after_pdus": self.drop_after_pdus,
                "probability": self.drop_probability,
            },
            "max_submit_rate": self.max_submit_rate,
        }


OFF = ChaosSettings()


class _TenantChaos:
    """The settings of one tenant with chaos on, and the bucket of its throughput cap."""

    __slots__ = ("bucket", "settings")

    def __init__(self, settings: ChaosSettings) -> None:
        self.settings = settings
        rate = settings.max_submit_rate
        self.bucket = TokenBucket(rate) if rate else None


class Chaos:
    """Each tenant's chaos, consulted on every submit, hand-over and SMPP PDU.

    A tenant without chaos is one failed dict lookup per question; one tenant's
    settings never touch another's traffic.
    """

    def __init__(
        self,
        tenants: Iterable[str],
        events: EventBus,
        metrics: Metrics,
        rng: random.Random | None = None,
    ) -> None:
        self._tenants = frozenset(tenants)
        self._events = events
        self._injected = metrics.chaos_injected
        self._rng = rng or random.Random()
        self._on: dict[str, _TenantChaos] = {}

    def settings(self, tenant: str) -> ChaosSettings:
        on = self._on.get(tenant)
        return OFF if on is None else on.settings

    def set(self, tenant: str, settings: ChaosSettings) -> None:
        """Replace the tenant's chaos (`OFF` turns it off) and say so on its event stream."""
        if tenant not in self._tenants:
            raise KeyError(tenant)
        if settings.active:
            self._on[tenant] = _TenantChaos(settings)
        else:
            self._on.pop(tenant, None)
        log_event(log, "chaos.changed", tenant=tenant, active=settings.active)
        self._events.publish(tenant, CHAOS_CHANGED, settings.document())

    def submit_error(self, tenant: str) -> SubmitError | None:
        """The submit error chaos injects into this submit, if any."""
        on = self._on.get(tenant)
        if on is None or not on.settings.submit_errors:
            return None
        return self._pick(tenant, on.settings.submit_errors)

    def outcome(self, tenant: str) -> Outcome | None:
        """The delivery outcome chaos imposes on this message, if any (else the rules decide)."""
        on = self._on.get(tenant)
        if on is None or not on.settings.outcomes:
            return None
        return self._pick(tenant, on.settings.outcomes)

    def extra_latency(self, tenant: str) -> float:
        on = self._on.get(tenant)
        if on is None:
            return 0.0
        low, high = on.settings.extra_latency
        if high <= 0.0:
            return 0.0
        self._injected.inc(tenant, "latency")
        return self._rng.uniform(low, high)

    def admit(self, tenant: str) -> float | None:
        """None if the throughput cap lets this submit through; else seconds until it would."""
        on = self._on.get(tenant)
        if on is None or on.bucket is None or on.bucket.take():
            return None
        self._injected.inc(tenant, "throughput_cap")
        return on.bucket.retry_after()

    def drops_session(self, tenant: str, pdus: int) -> bool:
        """Whether an SMPP session of ``tenant``, receiving its PDU number ``pdus``, closes."""
        on = self._on.get(tenant)
        if on is None:
            return False
        settings = on.settings
        after = settings.drop_after_pdus
        if (after is not None and pdus > after) or (
            settings.drop_probability and self._rng.random() < settings.drop_probability
        ):
            self._injected.inc(tenant, "session_drop")
            return True
        return False

    def _pick(self, tenant: str, chances: Mapping[_Kind, float]) -> _Kind | None:
        """One draw: each kind with its probability, none with what is left."""
        draw = self._rng.random()
        for kind, chance in chances.items():
            if draw < chance:
                self._injected.inc(tenant, kind.value)
                return kind
            draw -= chance
        return None


# --- reading the JSON form ---------------------------------------------------------------


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ChaosError(path or "(document)", "must be a JSON object")
    return value


def _no_unknown(table: dict[str, Any], known: tuple[str, ...], path: str) -> None:
    for key in table:
        if key not in known:
            name = f"{path}.{key[:64]}" if path else key[:64]
            raise ChaosError(name, f"is not a chaos setting; known: {', '.join(known)}")


def _number(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ChaosError(path, "must be a number")
    return float(value)


def _probability(value: object, path: str) -> float:
    chance = _number(value, path)
    if not 0.0 <= chance <= 1.0:
        raise ChaosError(path, "must be a probability, 0 to 1")
    return chance


def _kinds(value: object, path: str, kinds: tuple[_Kind, ...]) -> dict[_Kind, float]:
    """A table of probabilities by kind; zeros left out, so an all-zero table is none."""
    if value is None:
        return {}
    table = _object(value, path)
    by_name = {kind.value: kind for kind in kinds}
    _no_unknown(table, tuple(by_name), path)
    chances = {by_name[name]: _probability(p, f"{path}.{name}") for name, p in table.items()}
    if sum(chances.values()) > 1.0 + 1e-9:
        raise ChaosError(path, "probabilities add up to more than 1")
    return {kind: chance for kind, chance in chances.items() if chance > 0.0}


def _latency(value: object, path: str) -> tuple[float, float]:
    if value is None:
        return (0.0, 0.0)
    if not isinstance(value, list) or len(value) != 2:
        raise ChaosError(path, "must be [min, max] in seconds")
    low, high = _number(value[0], f"{path}[0]"), _number(value[1], f"{path}[1]")
    if not 0.0 <= low <= high <= MAX_EXTRA_LATENCY:
        raise ChaosError(path, f"must be [min, max] with 0 <= min <= max <= {MAX_EXTRA_LATENCY:g}")
    return (low, high)


def _after_pdus(value: object, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_AFTER_PDUS:
        raise ChaosError(path, f"must be an integer, 1 to {MAX_AFTER_PDUS}, or null")
    return value


def _rate(value: object, path: str) -> float | None:
    if value is None:
        return None
    rate = _number(value, path)
    if not 0.0 < rate <= MAX_RATE:
        raise ChaosError(path, f"must be more than 0 and at most {MAX_RATE:g} per second, or null")
    return rate
