"""A tenant's ``max_submit_rate`` held for the tenant as a whole, across instances.

The tenant's token bucket is a row of ``rate_buckets`` (tokens, and when it was last
refilled, by the database's clock). An instance does not go to that row for each
submit: it leases a chunk of tokens (``[cluster] rate_lease`` seconds' worth, at least
one) into a local bucket and spends them there; a batch that needs more than the local
bucket holds leases what it lacks, in one round trip, before its submits are admitted.

The approximation, stated: tokens are taken from the shared bucket once and only once,
so over any stretch of time T the tenant's instances together admit at most
``capacity + rate * T + instances * chunk`` submits, where capacity is one second's
worth (as for one instance) and the last term is what each instance may hold leased
but unspent while the shared bucket fills up again behind it. They admit at least the
shared bucket's tokens less those same unspent leases: an instance may refuse a submit
while another holds tokens it is not using. Round trips: a lease granted whole brings
at least a chunk, so there is at most one per chunk admitted; one that comes back short
(the shared bucket nearly empty) makes this instance wait until a chunk could be there
before it asks again. A tenant far over its rate thus costs an instance a few round
trips per lease period, never one per submit. Leased tokens are not returned; they are spent by
the next submits on that instance, whenever they come. If the database does not
answer, the submits that need a lease are throttled (fail closed) and the next lease
is tried a lease period later.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import asyncpg

from gateway.config import TenantConfig
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.rates import Bucket

log = logging.getLogger(__name__)

# The available tokens of the row being updated, refilled up to now ($3 capacity, $4 rate).
_AVAILABLE = "least($3, tokens + greatest(0.0, now.t - stamp) * $4)"
# One lease: take up to $2 whole tokens of what is available. SET sees the row as it was,
# so ``granted`` and ``tokens`` are computed from the same refill; concurrent leases of
# the tenant queue on the row lock and each sees the one before it.
LEASE = (
    f"UPDATE rate_buckets SET granted = least($2, floor({_AVAILABLE})),"
    f" tokens = {_AVAILABLE} - least($2, floor({_AVAILABLE})), stamp = now.t"
    " FROM (SELECT extract(epoch FROM clock_timestamp())::float8 AS t) AS now"
    " WHERE tenant = $1 RETURNING granted, tokens"
)
# A full bucket for each tenant not seen before.
CREATE_BUCKETS = (
    "INSERT INTO rate_buckets (tenant, tokens, stamp, granted)"
    " SELECT tenant, capacity, extract(epoch FROM clock_timestamp()), 0"
    " FROM unnest($1::text[], $2::float8[]) AS t(tenant, capacity)"
    " ON CONFLICT (tenant) DO NOTHING"
)

DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class LeasedBucket:
    """One tenant's tokens leased to this instance; `take` and `retry_after` never wait."""

    __slots__ = (
        "_chunk",
        "_clock",
        "_errors",
        "_lock",
        "_not_before",
        "_pool",
        "_rate",
        "capacity",
        "tenant",
        "tokens",
    )

    def __init__(
        self,
        pool: asyncpg.Pool,
        tenant: str,
        rate: float,
        lease_seconds: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._errors = metrics.cluster_errors.labels("lease")
        self.tenant = tenant
        self._rate = rate
        self.capacity = max(rate, 1.0)  # as TokenBucket: one second's worth, at least one
        self._chunk = min(self.capacity, max(1.0, math.ceil(rate * lease_seconds)))
        self._clock = clock
        self.tokens = 0.0
        # No lease before this (monotonic) time: the last one found the shared bucket short.
        self._not_before = 0.0
        self._lock = asyncio.Lock()

    def take(self) -> bool:
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def retry_after(self) -> float:
        return max(self._not_before - self._clock(), 1.0 / self._rate)

    async def lease_for(self, needed: int) -> None:
        """Have ``needed`` tokens here if the shared bucket has them: one lease at most."""
        async with self._lock:  # batches arriving together share the first one's lease
            wanted = needed - math.floor(self.tokens)
            if wanted <= 0 or self._clock() < self._not_before:
                return
            asked = max(float(wanted), self._chunk)
            try:
                row = await self._pool.fetchrow(
                    LEASE, self.tenant, asked, self.capacity, self._rate
                )
            except DATABASE_ERRORS as exc:
                self._not_before = self._clock() + self._chunk / self._rate
                self._errors.inc()
                log_event(log, "cluster.lease_failed", logging.WARNING, error=type(exc).__name__)
                return
            granted, left = float(row["granted"]), float(row["tokens"])
            self.tokens += granted
            if granted < asked:  # wait until the shared bucket could hold a chunk again
                self._not_before = self._clock() + (self._chunk - left) / self._rate


class LeasedRates:
    """Every rate-limited tenant's `LeasedBucket`, leasing from ``rate_buckets``."""

    leased = True

    def __init__(
        self,
        pool: asyncpg.Pool,
        tenants: Iterable[TenantConfig],
        lease_seconds: float,
        metrics: Metrics,
    ) -> None:
        self._pool = pool
        self._leased = {
            t.id: LeasedBucket(pool, t.id, t.submit_rate, lease_seconds, metrics)
            for t in tenants
            if t.submit_rate
        }
        self.buckets: dict[str, Bucket] = dict(self._leased)

    async def open(self) -> None:
        """Create the shared (full) buckets of tenants no instance has limited before."""
        tenants = list(self._leased)
        capacities = [self._leased[t].capacity for t in tenants]
        await self._pool.execute(CREATE_BUCKETS, tenants, capacities)

    async def reserve(self, tenants: Sequence[str]) -> None:
        for tenant, needed in Counter(tenants).items():
            bucket = self._leased.get(tenant)
            if bucket is not None and bucket.tokens < needed:
                await bucket.lease_for(needed)
