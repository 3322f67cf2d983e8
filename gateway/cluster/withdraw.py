"""Withdrawing a message another instance holds: a cancel through any instance reaches it.

A message on its way (or scheduled) lives in the memory of the instance that holds its
outbox row, with its timer; only that instance can stop it without racing its delivery.
So an instance asked to cancel a message it does not hold, and that the store says is
not final, asks the others on the bus (``withdraw``: tenant, message id, a request id);
the holder cancels it as a local cancel would, waits for the ``deleted`` state to
commit, and answers (``withdrawn``: the request id). No answer within ``timeout`` (no
instance holds it any more, or the request was lost) is "not on its way": the caller
refuses the cancel, and nothing was acknowledged that did not happen.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Final

from gateway.cluster.bus import ClusterBus
from gateway.network import SimulatedNetwork
from gateway.store import Store

_ASK: Final = "withdraw"
_ANSWER: Final = "withdrawn"
# How long a cancel waits for the holder's answer: notifications take milliseconds.
TIMEOUT: Final = 2.0


class RemoteWithdrawals:
    """Asks the other instances to cancel a message, and cancels what they ask of us."""

    def __init__(
        self, bus: ClusterBus, network: SimulatedNetwork, store: Store, timeout: float = TIMEOUT
    ) -> None:
        self._bus = bus
        self._network = network
        self._store = store
        self._timeout = timeout
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # A lost request or answer only makes its cancel time out: nothing to resync.
        bus.listen(_ASK, self._asked, lambda: None)
        bus.listen(_ANSWER, self._answered, lambda: None)

    async def withdraw(self, tenant: str, message_id: str) -> bool:
        """Whether another instance held the message and has committed its ``deleted``."""
        request = secrets.token_hex(8)
        answered = self._waiting[request] = asyncio.get_running_loop().create_future()
        self._bus.notify(_ASK, [tenant, message_id, request])
        try:
            await asyncio.wait_for(answered, self._timeout)
        except TimeoutError:
            return False
        finally:
            del self._waiting[request]
        return True

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _asked(self, items: list[Any]) -> None:
        for item in items:
            if not (isinstance(item, list) and len(item) == 3):
                continue
            if not all(isinstance(value, str) for value in item):
                continue
            tenant, message_id, request = item
            if self._network.cancel(tenant, message_id):
                task = asyncio.create_task(self._answer_once_committed(request))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _answer_once_committed(self, request: str) -> None:
        await self._store.flush()  # the deleted state the network queued
        self._bus.notify(_ANSWER, request)

    def _answered(self, items: list[Any]) -> None:
        for request in items:
            answered = self._waiting.get(request) if isinstance(request, str) else None
            if answered is not None and not answered.done():
                answered.set_result(None)
