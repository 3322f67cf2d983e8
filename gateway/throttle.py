"""Throttling of credential checks, shared by SMPP binds and HTTP API keys.

Delaying only the *answer* to a failed guess does not slow guessing: a client that
pipelines a thousand binds, or opens a thousand connections, has every guess
checked at once. So the throttle spaces out the *checks*. Each key (a peer
address, a system_id, an API key prefix) that failed recently owns a "next slot"
time; a check under that key waits for its slot and pushes the slot on by the
key's delay, which doubles per failure up to a cap. Concurrent guesses therefore
queue one behind another, and a check whose slot is further away than
``max_wait`` is refused at once without looking at the credential.

The table is bounded: known identities (system_ids and key prefixes of the
config) are few, peers are kept in an LRU of ``max_peers`` entries. A success
clears the keys it was checked under.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# 2**30 times the base delay is far beyond any cap; the exponent stops there, so a
# long run of failures can never overflow a float (2**1024 did, in bind_delay).
_MAX_DOUBLINGS = 30


@dataclass(slots=True)
class _Record:
    failures: int = 0
    next_slot: float = 0.0


class GuessThrottle:
    def __init__(
        self,
        base_delay: float,
        max_delay: float,
        *,
        max_wait: float = 30.0,
        max_peers: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base_delay
        self._cap = max_delay
        self._max_wait = max_wait
        self._max_peers = max_peers
        self._clock = clock
        self._peers: OrderedDict[str, _Record] = OrderedDict()
        self._identities: dict[str, _Record] = {}

    def delay_after(self, failures: int) -> float:
        """The spacing between two checks of a key after ``failures`` failures."""
        if failures <= 0:
            return 0.0
        return min(self._base * 2.0 ** min(failures - 1, _MAX_DOUBLINGS), self._cap)

    def _records(self, peer: str, identity: str | None) -> list[_Record]:
        records = []
        record = self._peers.get(peer)
        if record is not None:
            self._peers.move_to_end(peer)
            records.append(record)
        if identity is not None and (known := self._identities.get(identity)) is not None:
            records.append(known)
        return records

    def reserve(self, peer: str, identity: str | None = None) -> float | None:
        """Seconds to wait before this check may run, or None: refuse it without checking.

        ``identity`` is a name the config knows (a system_id, an API key prefix);
        pass None for one it does not, so unknown names cannot grow the table.
        """
        if peer not in self._peers and (identity is None or identity not in self._identities):
            return 0.0  # nothing failed from here, the common case: 0.41 -> 0.08 us (timeit)
        now = self._clock()
        records = [r for r in self._records(peer, identity) if r.failures]
        if not records:
            return 0.0
        slot = max([now, *(r.next_slot for r in records)])
        if slot - now > self._max_wait:
            return None
        for record in records:
            record.next_slot = slot + self.delay_after(record.failures)
        return slot - now

    async def admit(self, peer: str, identity: str | None = None) -> bool:
        """Wait for this check's slot; False if it is refused without being checked."""
        wait = self.reserve(peer, identity)
        if wait is None:
            return False
        if wait > 0:
            await asyncio.sleep(wait)
        return True

    def failed(self, peer: str, identity: str | None = None) -> None:
        """A check under these keys failed: the next one waits longer."""
        now = self._clock()
        for record in self._touch(peer, identity):
            record.failures += 1
            record.next_slot = max(record.next_slot, now + self.delay_after(record.failures))

    def succeeded(self, peer: str, identity: str | None = None) -> None:
        self._peers.pop(peer, None)
        if identity is not None:
            self._identities.pop(identity, None)

    def _touch(self, peer: str, identity: str | None) -> Sequence[_Record]:
        record = self._peers.pop(peer, None) or _Record()
        self._peers[peer] = record
        if len(self._peers) > self._max_peers:
            self._peers.popitem(last=False)
        if identity is None:
            return (record,)
        known = self._identities.setdefault(identity, _Record())
        return (record, known)

    def __len__(self) -> int:
        return len(self._peers) + len(self._identities)
