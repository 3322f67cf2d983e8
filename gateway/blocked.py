"""The recent submits a privacy gate refused, per tenant, in memory only.

A refused submit stores nothing (its body least of all), so without this the web
inbox's "blocked" bubbles lived only as long as the page that saw their
``message.blocked`` event. What is kept is what that event carries: recipient,
sender, interface, code and time; never the body. It is bounded twice: each tenant's
last `KEPT` attempts, and none older than ``privacy.body_ttl`` (the window in which
the handset list shows a number the tenant sent to). A restart forgets it all, a
simulator reset or a purge forgets the tenant's, an erasure the subject's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from gateway.domain import BlockedAttempt

# Each tenant's most recent refused submits kept; older ones make way.
KEPT = 200


class BlockedAttempts:
    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._clock = clock
        self._rings: dict[str, deque[BlockedAttempt]] = {}

    def record(self, tenant: str, attempt: BlockedAttempt) -> None:
        ring = self._rings.get(tenant)
        if ring is None:
            ring = self._rings[tenant] = deque(maxlen=KEPT)
        ring.append(attempt)

    def _live(self, tenant: str) -> deque[BlockedAttempt]:
        """The tenant's ring without the attempts older than the ttl (oldest first)."""
        ring = self._rings.get(tenant)
        if ring is None:
            return deque()
        oldest = self._clock() - self._ttl
        while ring and ring[0].at < oldest:
            ring.popleft()
        if not ring:
            del self._rings[tenant]
        return ring

    def to(self, tenant: str, msisdn: str) -> list[BlockedAttempt]:
        """The attempts to one handset, oldest first."""
        return [a for a in self._live(tenant) if a.recipient == msisdn]

    def last_at(self, tenant: str) -> dict[str, float]:
        """Per handset with an attempt kept, the time of its latest."""
        return {a.recipient: a.at for a in self._live(tenant)}

    def forget_tenant(self, tenant: str) -> None:
        self._rings.pop(tenant, None)

    def forget_handset(self, tenant: str, msisdn: str) -> None:
        ring = self._rings.get(tenant)
        if ring is not None:
            kept = [a for a in ring if a.recipient != msisdn]
            self._rings[tenant] = deque(kept, maxlen=KEPT)
