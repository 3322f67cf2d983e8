"""A submit rate limit: the token bucket behind ``max_submit_rate`` and the chaos cap.

The pipeline holds one bucket per tenant, so the limit holds over every front end
together (an SMPP session and an HTTP client of the same tenant share it).
"""

from __future__ import annotations

import time
from collections.abc import Callable


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
