"""A gateway inside the test process, on its own event-loop thread, and a handle to drive it.

In-process rather than a subprocess: a start takes milliseconds instead of an
interpreter's start-up, so a module with its own config can have its own gateway;
the loop thread serves sync tests and async tests (on any pytest-asyncio loop
scope) alike; and a failure inside the gateway shows up in the test's log capture.
The gateway still has its own real listeners on free loopback ports, and every
call goes over them through the public HTTP API (`GatewayClient`), so tests see
the gateway as their code does. Each start gets a fresh directory for the store and
the key file.

Waits never poll: each checks the state once over HTTP, then sleeps until the event
stream (`GET /v1/events`, followed from the gateway's first event) brings an event
that may change the answer, and checks again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import json
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.config import config_from_dict
from gateway.domain import Status
from gateway.server.cli import StartedGateway, start_gateway
from gateway.server.client import GAP, ApiError, GatewayClient

_T = TypeVar("_T")

DEFAULT_TIMEOUT = 10.0
# A sync call that is not a wait gets this long before the test is failed as hung.
CALL_TIMEOUT = 60.0
# Events kept for waits that began before they arrived (a wait re-checks anyway if
# the one it began after is gone).
KEPT_EVENTS = 1000
# What the plugin's reset before each test sends to POST /v1/simulator/reset: every
# test starts with no traffic, no handset messages and no opt-outs from the last one.
RESET_OPTIONS: dict[str, Any] = {"traffic": True, "consent": True}

DEFAULT_CONFIG: dict[str, Any] = {
    "http": {"host": "127.0.0.1", "port": 0},
    "smpp": {"host": "127.0.0.1", "port": 0},
    "simulator": {"latency": ["1ms", "10ms"], "allow_reset": True},
    "tenants": [
        {
            "id": "test",
            "api_keys": ["smsgw-test-key"],
            "senders": ["TestApp", "+46700000001"],
            "smpp": {"system_id": "test", "password": "test-pw"},
        }
    ],
}


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` over ``base``: tables merge key by key, anything else replaces."""
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


class WaitTimeout(AssertionError):
    """A wait ran out of time; the message says what was awaited and what there was."""


@dataclass(frozen=True, slots=True)
class Tenant:
    """The tenant the handle acts as: the config's first."""

    id: str
    api_key: str
    system_id: str | None
    password: str | None
    senders: tuple[str, ...]


class EventFollower:
    """The tenant's event stream, followed from the gateway's first event on.

    Waiters ask for the first event from a mark (a count of events seen) on that
    a predicate accepts; a ``gap`` event, or a mark older than the events kept,
    wakes every waiter, which then checks the state itself.
    """

    def __init__(self, client: GatewayClient) -> None:
        self._client = client
        self._events: deque[dict[str, Any]] = deque(maxlen=KEPT_EVENTS)
        self.count = 0  # events seen so far
        self._waiters: list[tuple[Callable[[dict[str, Any]], bool], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="smsgw-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _follow(self) -> None:
        try:
            # "0": everything from the gateway's first event, so nothing is missed
            # between the gateway's start and the first wait.
            async for event in self._client.events(after="0"):
                self._events.append(event)
                self.count += 1
                for accepts, future in self._waiters:
                    if not future.done() and (event.get("type") == GAP or accepts(event)):
                        future.set_result(None)
        except ApiError as exc:
            self._failure = exc
            for _, future in self._waiters:
                if not future.done():
                    future.set_exception(exc)

    async def after(self, mark: int, accepts: Callable[[dict[str, Any]], bool]) -> None:
        """Return once an event after the first ``mark`` ones is accepted (or a gap came)."""
        if self._failure is not None:
            raise self._failure
        missed = self.count - mark
        if missed > len(self._events):
            return
        recent = list(self._events)[len(self._events) - missed :] if missed else []
        if any(e.get("type") == GAP or accepts(e) for e in recent):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (accepts, future)
        self._waiters.append(waiter)
        try:
            await future
        finally:
            self._waiters.remove(waiter)


class Gateway:
    """One running gateway and the tenant client on it; lives on the server loop."""

    def __init__(self, started: StartedGateway, tenant: Tenant) -> None:
        self.started = started
        self.tenant = tenant
        self.client = GatewayClient(started.url, tenant.api_key)
        self.waits = Waits(self.client)

    async def close(self) -> None:
        await self.waits.events.stop()
        await self.client.close()
        await self.started.runner.cleanup()


class Waits:
    """Waits on one tenant's state, woken by its event stream."""

    def __init__(self, client: GatewayClient) -> None:
        self.client = client
        self.events = EventFollower(client)

    async def until(
        self,
        check: Callable[[], Awaitable[_T | None]],
        accepts: Callable[[dict[str, Any]], bool],
        within: float,
        awaited: Callable[[], Awaitable[str]],
    ) -> _T:
        """``check()``'s first answer that is not None, re-checked on each accepted event."""
        self.events.start()
        try:
            async with asyncio.timeout(within):
                while True:
                    mark = self.events.count
                    found = await check()
                    if found is not None:
                        return found
                    await self.events.after(mark, accepts)
        except TimeoutError:
            raise WaitTimeout(f"{await awaited()} within {within:g} s") from None

    async def wait_for_message(
        self, to: str, contains: str | None, within: float
    ) -> dict[str, Any]:
        number: list[str] = []  # the handset's number as the gateway writes it

        async def check() -> dict[str, Any] | None:
            inbox = await self.client.inbox(to)
            number[:] = [inbox["msisdn"]]
            for entry in inbox["messages"]:
                if contains is None or contains in entry["body"]:
                    return entry  # type: ignore[no-any-return]
            return None

        def accepts(event: dict[str, Any]) -> bool:
            return event.get("type") == "handset.received" and event.get("handset") in number

        async def awaited() -> str:
            bodies = [entry["body"] for entry in (await self.client.inbox(to))["messages"]]
            wanted = f"containing {contains!r}" if contains is not None else "at all"
            return f"no message to {to} {wanted} (its inbox holds {bodies!r})"

        return await self.until(check, accepts, within, awaited)

    async def wait_for_status(self, message_id: str, status: str, within: float) -> dict[str, Any]:
        wanted = Status(status)

        async def check() -> dict[str, Any] | None:
            document = await self.client.message(message_id)
            now = Status(document["status"])
            if now is wanted:
                return document
            if now.is_final:
                raise AssertionError(f"message {message_id} is {now}, not {wanted}: final")
            return None

        def accepts(event: dict[str, Any]) -> bool:
            return event.get("type") == "message.status" and event.get("message_id") == message_id

        async def awaited() -> str:
            now = (await self.client.message(message_id))["status"]
            return f"message {message_id} is {now}, not {wanted}"

        return await self.until(check, accepts, within, awaited)


class GatewayServer:
    """The session's event-loop thread and the gateway on it, restarted per distinct config.

    Modules that ask for the same config share one gateway; one that asks for
    another stops it and starts its own, on a fresh directory from ``workdir``.
    """

    def __init__(self, workdir: Callable[[], Path]) -> None:
        self._workdir = workdir
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="smsgw", daemon=True)
        self._thread.start()
        self._gateway: Gateway | None = None
        self._config_text: str | None = None

    def run(self, work: Coroutine[Any, Any, _T], timeout: float = CALL_TIMEOUT) -> _T:
        """Run ``work`` on the server loop from a sync caller; its result."""
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise WaitTimeout(f"the gateway did not answer within {timeout:g} s") from None

    async def arun(self, work: Coroutine[Any, Any, _T]) -> _T:
        """Run ``work`` on the server loop from a coroutine on another loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    def gateway(self, overrides: dict[str, Any]) -> Gateway:
        """The gateway for ``overrides`` merged over the defaults, started if it is not running."""
        config = merged(DEFAULT_CONFIG, overrides)
        text = json.dumps(config, sort_keys=True)
        if self._gateway is None or text != self._config_text:
            self._stop_gateway()
            self._gateway = self.run(self._start(config))
            self._config_text = text
        return self._gateway

    async def _start(self, config: dict[str, Any]) -> Gateway:
        directory = self._workdir()
        config = merged(
            {
                "storage": {"path": str(directory / "smsgw.sqlite3")},
                "privacy": {"key_file": str(directory / "keys.json")},
            },
            config,
        )
        loaded = config_from_dict(config)
        first = loaded.tenants[0]
        clear = [key for key in first.api_keys if not key.startswith("sha256:")]
        if not clear:
            raise ValueError(f"tenant {first.id!r}: the plugin needs an API key in clear")
        tenant = Tenant(
            first.id,
            clear[0],
            first.smpp.system_id if first.smpp else None,
            first.smpp.password if first.smpp else None,
            first.senders,
        )
        return Gateway(await start_gateway(loaded), tenant)

    def _stop_gateway(self) -> None:
        if self._gateway is not None:
            self.run(self._gateway.close())
            self._gateway = None

    def close(self) -> None:
        self._stop_gateway()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT)
        self._loop.close()


class Smsgw:
    """What a test drives: addresses, the tenant, and calls; ``a``-prefixed ones are async."""

    def __init__(self, server: GatewayServer, gateway: Gateway) -> None:
        self._server = server
        self._gateway = gateway
        self._client = gateway.client
        self.http_url = gateway.started.url
        self.smpp_host = gateway.started.smpp_host
        self.smpp_port = gateway.started.smpp_port
        self.tenant = gateway.tenant
        self.chaos_set = False  # the fixture turns chaos off after a test that set it

    def _sender(self, sender: str | None) -> str:
        return sender if sender is not None else self.tenant.senders[0]

    def send(self, to: str, body: str, sender: str | None = None, **fields: Any) -> dict[str, Any]:
        """Submit over HTTP; the message document. A refusal raises `ApiError`."""
        return self._server.run(self._client.send(to, body, self._sender(sender), **fields))

    async def asend(
        self, to: str, body: str, sender: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        return await self._server.arun(self._client.send(to, body, self._sender(sender), **fields))

    def inbox(self, msisdn: str) -> list[dict[str, Any]]:
        """What the handset received from the tenant, newest first (each with ``body``)."""
        return self._server.run(self._inbox(msisdn))

    async def ainbox(self, msisdn: str) -> list[dict[str, Any]]:
        return await self._server.arun(self._inbox(msisdn))

    async def _inbox(self, msisdn: str) -> list[dict[str, Any]]:
        return (await self._client.inbox(msisdn))["messages"]  # type: ignore[no-any-return]

    def message(self, message_id: str) -> dict[str, Any]:
        """The message's document as it is now."""
        return self._server.run(self._client.message(message_id))

    async def amessage(self, message_id: str) -> dict[str, Any]:
        return await self._server.arun(self._client.message(message_id))

    def wait_for_message(
        self, to: str, contains: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """The newest message in ``to``'s inbox (holding ``contains``), once there is one."""
        work = self._gateway.waits.wait_for_message(to, contains, timeout)
        return self._server.run(work, timeout + CALL_TIMEOUT)

    async def await_for_message(
        self,
        to: str,
        contains: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (as the sync call has it)
    ) -> dict[str, Any]:
        return await self._server.arun(self._gateway.waits.wait_for_message(to, contains, timeout))

    def wait_for_status(
        self, message_id: str, status: str, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """The message's document once it has ``status``; fails at once on another final one."""
        work = self._gateway.waits.wait_for_status(message_id, status, timeout)
        return self._server.run(work, timeout + CALL_TIMEOUT)

    async def await_for_status(
        self,
        message_id: str,
        status: str,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (as the sync call has it)
    ) -> dict[str, Any]:
        return await self._server.arun(
            self._gateway.waits.wait_for_status(message_id, status, timeout)
        )

    def reply(self, handset: str, to: str, body: str) -> dict[str, Any]:
        """The handset sends ``body`` to the tenant's number ``to`` (MO); STOP opts it out."""
        return self._server.run(self._client.reply(handset, to, body))

    async def areply(self, handset: str, to: str, body: str) -> dict[str, Any]:
        return await self._server.arun(self._client.reply(handset, to, body))

    def opt_out(self, msisdn: str) -> dict[str, Any]:
        """Record an opt-out of ``msisdn`` from every purpose of the tenant."""
        return self._server.run(self._client.opt_out(msisdn))

    async def aopt_out(self, msisdn: str) -> dict[str, Any]:
        return await self._server.arun(self._client.opt_out(msisdn))

    def set_chaos(self, **settings: Any) -> dict[str, Any]:
        """Put the tenant's chaos settings (PUT /v1/simulator/chaos); the fixture undoes them."""
        self.chaos_set = True
        return self._server.run(self._client.set_chaos(settings))

    async def aset_chaos(self, **settings: Any) -> dict[str, Any]:
        self.chaos_set = True
        return await self._server.arun(self._client.set_chaos(settings))

    def clear_chaos(self) -> None:
        """Chaos off (DELETE /v1/simulator/chaos): only the config's rules apply."""
        self._server.run(self._client.clear_chaos())
        self.chaos_set = False

    async def aclear_chaos(self) -> None:
        await self._server.arun(self._client.clear_chaos())
        self.chaos_set = False

    def reset(self, **options: Any) -> Any:
        """Clear the tenant's simulator state (POST /v1/simulator/reset with ``options``)."""
        return self._server.run(self._client.reset(options))

    async def areset(self, **options: Any) -> Any:
        return await self._server.arun(self._client.reset(options))
