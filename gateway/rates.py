"""A submit rate limit: the token bucket behind ``max_submit_rate`` and the chaos cap.

The pipeline holds one bucket per tenant (`SubmitRates`), so the limit holds over
every front end together (an SMPP session and an HTTP client of the same tenant share
it). With one instance the buckets are this process's (`LocalRates`); instances
sharing a PostgreSQL store share them through it (`gateway.cluster.leases`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from gateway.config import TenantConfig


class TokenBucket:
    """``rate`` takes per second on average; a burst of one second's worth (at least one)."""

    __slots__ = ("_capacity", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        # A rate below 1/s still lets one submit through now and then, not never.
        self._capacity = max(rate, 1.0)
        self._tokens = self._capacity
        self._clock = clock
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def take(self) -> bool:
        """Take one token if there is one."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the next token (0 if one is there)."""
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self._rate)


class Bucket(Protocol):
    def take(self) -> bool:
        """Take one token if there is one."""

    def retry_after(self) -> float:
        """Seconds until the next token could be there."""


class SubmitRates(Protocol):
    """The tenants' ``max_submit_rate`` buckets, as the pipeline draws on them."""

    @property
    def buckets(self) -> Mapping[str, Bucket]:
        """Tenant id -> its bucket; tenants without a limit have none."""

    @property
    def leased(self) -> bool:
        """Whether `reserve` must be awaited before a batch takes its tokens."""

    async def reserve(self, tenants: Sequence[str]) -> None:
        """Fetch the tokens a batch of submits of these tenants (one entry each) will take."""


class LocalRates:
    """Every tenant's bucket in this process: all there is with one instance."""

    leased = False

    def __init__(self, tenants: Iterable[TenantConfig]) -> None:
        self.buckets: dict[str, Bucket] = {
            t.id: TokenBucket(t.submit_rate) for t in tenants if t.submit_rate
        }

    async def reserve(self, tenants: Sequence[str]) -> None:
        """Nothing to fetch: every token is here (the pipeline does not even call this)."""
