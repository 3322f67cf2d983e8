"""The HTTP listener: aiohttp's server, with a bound on what each client can hold.

aiohttp caps request lines and headers by size and closes idle keep-alive
connections (``keepalive_timeout``, our ``idle_timeout``), but it waits for a
request's headers without end: a client that trickles them a byte at a time
(slowloris) keeps its connection for ever. `_GuardedRequestHandler` arms a
timer when a connection opens and when the first bytes of a new request reach
an idle one, and disarms it as soon as the request's headers are parsed; if it
fires, the client gets a 408 and the connection is closed. Connections beyond
``max_connections`` get a 503 and are closed before any is read. The body has
its own deadline (``body_timeout``) where it is read, in
`gateway.server.http_api.read_json`.

aiohttp offers no hook for either, so the handler reads two attributes of its
base class: ``_request_count`` (requests parsed on the connection) and
``_waiter`` (pending while the connection waits for a request). The tests in
tests/test_http_limits.py fail if a new aiohttp changes them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import Counter

from gateway.config import HttpConfig
from gateway.server.appkeys import CONFIG, METRICS
from gateway.server.http_api import PROBLEM_TYPE, Problem


def _raw_problem(problem: Problem, reason: str, extra_headers: str = "") -> bytes:
    """A whole HTTP/1.1 response, for answers sent outside any request handler."""
    body = json.dumps(problem.document()).encode()
    head = (
        f"HTTP/1.1 {problem.status} {reason}\r\n"
        f"Content-Type: {PROBLEM_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra_headers}"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


# Seconds a connection answered 408 stays half-closed, dropping input, before it closes.
_LINGER = 2.0
_HEADERS_TOO_SLOW = _raw_problem(
    Problem(
        408, "request_timeout", "the request headers did not arrive within http.header_timeout"
    ),
    "Request Timeout",
)
_TOO_MANY_CONNECTIONS = _raw_problem(
    Problem(503, "too_many_connections", "http.max_connections are open; retry later"),
    "Service Unavailable",
    "Retry-After: 1\r\n",
)


class _Listener:
    """What the connections of one listener share: their limits and how many are open."""

    __slots__ = ("errors", "header_timeout", "max_connections", "open")

    def __init__(self, http: HttpConfig, errors: Counter) -> None:
        self.header_timeout = http.header_timeout
        self.max_connections = http.max_connections
        self.open = 0
        self.errors = errors


class _GuardedRequestHandler(RequestHandler):
    """One connection: a request's headers must be in within ``header_timeout``."""

    __slots__ = ("_counted", "_header_bytes", "_header_timer", "_lingering", "_listener")

    def __init__(self, manager: web.Server, listener: _Listener, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._listener = listener
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = False  # part of a request head has arrived, not all of it
        self._counted = False
        self._lingering = False  # answered 408 and half-closed: input is read and dropped

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        listener = self._listener
        if listener.open >= listener.max_connections:
            listener.errors.labels("too_many_connections").inc()
            cast(asyncio.Transport, transport).write(_TOO_MANY_CONNECTIONS)
            transport.close()
            return
        listener.open += 1
        self._counted = True
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._counted:
            return  # refused in connection_made: aiohttp never saw it
        self._counted = False
        self._listener.open -= 1
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._disarm()  # a request's headers are complete
            self._header_bytes = False
            return
        self._header_bytes = True
        waiting = self._waiter is not None and not self._waiter.done()
        if waiting and self._header_timer is None:
            self._arm()  # the first bytes of the next request on a kept-alive connection

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self._listener.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport is None:
            return
        if not self._header_bytes:  # a client that sent nothing is closed without an answer
            self.force_close()
            return
        self._listener.errors.labels("request_timeout").inc()
        transport = self.transport
        transport.write(_HEADERS_TOO_SLOW)
        if not transport.can_write_eof():  # TLS: no half-close
            self.force_close()
            return
        # Closing a socket with unread input makes the kernel send a reset, which can
        # destroy the 408 before the client reads it (seen with a trickling client).
        # So half-close, drop what still comes for a moment, then close.
        transport.write_eof()
        self._lingering = True
        asyncio.get_running_loop().call_later(_LINGER, self.force_close)


class _GuardedServer(web.Server):
    """aiohttp's Server, making `_GuardedRequestHandler` connections."""

    def __init__(self, handler: Any, *, listener: _Listener, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._listener = listener

    def __call__(self) -> RequestHandler:
        return _GuardedRequestHandler(self, self._listener, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """The runner for `gateway.server.app.create_app`'s app, with the limits of its ``[http]``."""

    def __init__(self, app: web.Application) -> None:
        super().__init__(app, access_log=None, keepalive_timeout=app[CONFIG].http.idle_timeout)

    async def _make_server(self) -> web.Server:
        # AppRunner starts the app and builds its Server; we keep its settings, not its class.
        server = await super()._make_server()
        listener = _Listener(self.app[CONFIG].http, self.app[METRICS].http_errors)
        return _GuardedServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            listener=listener,
            **server._kwargs,
        )
