"""Acting on messages another instance holds, as one gateway would on its own.

A message on its way (or scheduled) lives in the memory of the instance that holds its
row's lease, with its timer; only that instance can change it without racing its
delivery. So an instance asked to cancel, replace or force the outcome of a message it
does not hold, and that the store says is not final, asks the others on the bus
(`RemoteHolds.ask_holder`: an operation, its arguments, a request id); the holder does
what a local request would, waits for its commit, and answers with the result (done, or
the rejection one gateway would give). No answer within ``timeout`` (no instance holds
it any more, or the request was lost) is "not on its way": the caller refuses, and
nothing was acknowledged that did not happen.

An erasure or a tenant purge must reach what every instance holds
(`RemoteHolds.ask_everyone`): every instance does its part and answers, and the caller
goes on only once every instance the database lists as alive has answered.

Payloads carry ids, tenant ids and pseudonyms, never a number in clear (see
`gateway.cluster.bus`); a replacement body crosses sealed under the instances' KEK.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final

from gateway.cluster.base import ClusterError, Instances
from gateway.cluster.bus import ClusterBus
from gateway.domain import RejectCode, Rejected
from gateway.store import Store

_ASK: Final = "held"
_ANSWER: Final = "held_done"
# How long a request waits for the answers: notifications take milliseconds.
TIMEOUT: Final = 2.0

# Given an operation's arguments: None if this instance has no part in it, else what
# does it (and returns once committed).
Handler = Callable[[list[Any]], Awaitable[Rejected | None] | None]


class Unanswered(Exception):
    """A live instance did not answer in time: what needed every instance was not done."""


class _Request:
    __slots__ = ("answered", "expected", "heard", "result")

    def __init__(self, expected: set[str] | None) -> None:
        self.answered: asyncio.Event = asyncio.Event()
        self.expected = expected  # None: the first answer will do
        self.heard: set[str] = set()
        self.result: Rejected | None = None


class RemoteHolds:
    """Asks the other instances to act on what they hold, and acts on what they ask of us."""

    def __init__(
        self,
        bus: ClusterBus,
        instances: Instances,
        store: Store,
        timeout: float = TIMEOUT,
    ) -> None:
        self._bus = bus
        self._instances = instances
        self._instance = instances.id
        self._store = store
        self._timeout = timeout
        self._handlers: dict[str, Handler] = {}
        self._waiting: dict[str, _Request] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # A lost request or answer only makes its caller time out: nothing to resync.
        bus.listen(_ASK, self._asked, lambda: None)
        bus.listen(_ANSWER, self._answered, lambda: None)

    def serve(self, operation: str, handler: Handler) -> None:
        """Do ``operation`` with ``handler`` when another instance asks for it."""
        self._handlers[operation] = handler

    async def ask_holder(self, operation: str, args: list[Any]) -> tuple[bool, Rejected | None]:
        """(whether an instance held the message and answered, its result once committed)."""
        request = _Request(None)
        if not await self._ask(operation, args, request):
            return False, None
        return True, request.result

    async def ask_everyone(self, operation: str, args: list[Any]) -> None:
        """Return once every other live instance did its part of ``operation``; Unanswered
        if one did not within the timeout (or the instance list cannot be read)."""
        try:
            listing = await self._instances.listing()
        except ClusterError:
            raise Unanswered("the instance list cannot be read now") from None
        others = {view.id for view in listing if view.alive} - {self._instance}
        if others and not await self._ask(operation, args, _Request(others)):
            raise Unanswered("an instance sharing the store did not answer in time; retry")

    async def _ask(self, operation: str, args: list[Any], request: _Request) -> bool:
        key = secrets.token_hex(8)
        self._waiting[key] = request
        self._bus.notify(_ASK, [operation, key, args])
        try:
            await asyncio.wait_for(request.answered.wait(), self._timeout)
        except TimeoutError:
            return False
        finally:
            del self._waiting[key]
        return True

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _asked(self, items: list[Any]) -> None:
        for item in items:
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[2], list)):
                continue
            operation, key, args = item
            handler = self._handlers.get(operation) if isinstance(operation, str) else None
            if handler is None or not isinstance(key, str):
                continue
            doing = handler(args)
            if doing is not None:
                task = asyncio.create_task(self._answer_once_done(key, doing))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _answer_once_done(self, key: str, doing: Awaitable[Rejected | None]) -> None:
        result = await doing
        await self._store.flush()  # whatever the handler queued
        refused = None if result is None else [result.code.value, result.detail]
        self._bus.notify(_ANSWER, [key, self._instance, refused])

    def _answered(self, items: list[Any]) -> None:
        for item in items:
            if not (isinstance(item, list) and len(item) == 3):
                continue
            key, instance, refused = item
            request = self._waiting.get(key) if isinstance(key, str) else None
            if request is None or request.answered.is_set():
                continue
            if isinstance(refused, list) and len(refused) == 2:
                request.result = _rejection(*refused)
            request.heard.add(str(instance))
            if request.expected is None or request.expected <= request.heard:
                request.answered.set()


def _rejection(code: Any, detail: Any) -> Rejected:
    try:
        found = RejectCode(code)
    except ValueError:
        found = RejectCode.NOT_PENDING
    return Rejected(found, str(detail))
