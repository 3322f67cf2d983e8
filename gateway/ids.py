"""Message ids that sort by time.

Sortable ids let the primary-key index serve ``since`` filters and pagination
cursors without a second timestamp index on the hot insert path.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

_SEQ_LIMIT = 0x10000


class MessageIds:
    """``<ms since epoch:12 hex><boot:4 hex><sequence:4 hex>``, unique per process and boot.

    The boot part is random per process, so two processes started within the same
    millisecond do not collide; the sequence counts within a millisecond.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._boot = f"{secrets.randbelow(_SEQ_LIMIT):04x}"
        self._last_ms = 0
        self._seq = 0

    def next(self) -> str:
        ms = int(self._clock() * 1000)
        if ms <= self._last_ms:
            ms = self._last_ms
            self._seq += 1
            if self._seq == _SEQ_LIMIT:
                ms += 1
                self._seq = 0
        else:
            self._seq = 0
        self._last_ms = ms
        return f"{ms:012x}{self._boot}{self._seq:04x}"


def id_floor(timestamp: float) -> str:
    """The smallest id that can have been issued at or after ``timestamp``."""
    return f"{int(timestamp * 1000):012x}"
