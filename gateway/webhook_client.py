"""A lean HTTP/1.1 client for webhook POSTs to plain ``http://`` URLs, connections kept.

With ``callback_url`` on every message, aiohttp's client was a third of the event
loop's time (py-spy on the HTTP side by side: request and URL objects, header merging,
a timer handle and a connector acquire per POST). A callback needs none of that: the
request is one bytes object, and the answer's status, its end and at most a few
kilobytes of body are all we read. The answer is parsed by httptools: llhttp, the C
parser of Node.js, kept by the uvicorn/MagicStack people and strict about framing
(duplicate or conflicting lengths, bad chunk sizes, bytes after ``Connection: close``),
where a hand-written parser had to get each of those right itself; it costs less
too (an answer read whole: aiohttp's 200 with a short body, 3.3 -> 2.4 us and 29.7k ->
22.3k instructions; a chunked one, 5.9 -> 2.6 us and 53.0k -> 23.0k; timeit best of 5
with the cyclic collector on, and callgrind).
Answers come in three shapes (``Content-Length``, chunked, or up to the close);
anything malformed is a `WebhookError`, as is a connection that closes early and an
unasked switch of protocols (101). Redirects are not followed: a 3xx is an answer like
any other non-2xx (following one could lead outside the callback allow-list).

Idle connections are kept per host and port, at most `MAX_CONNECTIONS` open in all
(a POST beyond that waits for one), and each answer is read to its end to reuse its
connection, unless it is longer than the caller wants by more than `MAX_DRAIN`, when
the connection is closed instead; it is closed too when the answer says so (llhttp's
keep-alive rule), ends at the close, or is followed by bytes nobody asked for.
``https://`` URLs, and URLs with credentials in them, stay with aiohttp
(`gateway.callbacks`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httptools
from yarl import URL

# Connections open at once, over all hosts (aiohttp's default limit, kept).
MAX_CONNECTIONS = 100
# Bytes of an answer beyond what the caller wants that are still read to keep the
# connection; beyond them it is closed.
MAX_DRAIN = 64 * 1024
# The most an answer's status line and headers may take (1xx answers before it included).
MAX_HEAD = 64 * 1024
USER_AGENT = "smsgw-callbacks"
SWITCHING_PROTOCOLS = 101


class WebhookError(Exception):
    """No usable answer: the connection failed or closed early, or the answer is malformed."""


class _Answer:
    """The sans-IO reader of one answer: bytes in, (status, body) out once it is complete.

    llhttp calls the ``on_*`` methods; an informational (1xx) answer is skipped, and the
    one after it read.
    """

    __slots__ = (
        "_framed",
        "_head_bytes",
        "_head_done",
        "_parser",
        "body",
        "complete",
        "reusable",
        "status",
        "wanted",
    )

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.status = 0
        self.body = bytearray()
        self.complete = False
        self.reusable = False
        self._head_done = False
        self._head_bytes = 0  # fed while the final answer's head is not complete
        self._framed = False  # by Content-Length or chunked, else up to the close
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)

    def feed(self, data: bytes) -> bool:
        """Take ``data``; True once the answer is complete.

        Bytes after the answer make it not `reusable`: the peer sent what we did not ask for.
        """
        if self._parser is None:  # complete already
            self.reusable = False
            return True
        if not self._head_done:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self.status == SWITCHING_PROTOCOLS:  # llhttp stops there, Upgrade or not
                raise WebhookError("the answer switched protocols unasked") from exc
            if not self.complete:
                raise WebhookError(f"malformed answer: {exc}") from exc
            self.reusable = False  # bytes after the answer
        if not self._head_done and self._head_bytes > MAX_HEAD:
            raise WebhookError("answer head too long")
        return self.complete

    def end_of_stream(self) -> bool:
        """The peer closed: True if that completes the answer (one read up to the close)."""
        if self._head_done and not self._framed and not self.complete:
            self.complete = True
            self._parser = None
        return self.complete

    # llhttp's callbacks.

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer: stops the parser, see feed
            raise WebhookError("bytes after the answer")
        self._framed = False  # a 1xx answer's headers say nothing of the next one's body

    def on_header(self, name: bytes, value: bytes) -> None:
        """Notes the framing llhttp follows (RFC 9112 6.3): a close ends only an unframed body."""
        name = name.lower()
        if name == b"content-length" or (
            name == b"transfer-encoding" and value.rstrip().lower().endswith(b"chunked")
        ):
            self._framed = True

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self.status = self._parser.get_status_code()
        self._head_done = not 100 <= self.status < 200

    def on_body(self, body: bytes) -> None:
        room = self.wanted - len(self.body)
        if room > 0:
            self.body += body[:room]

    def on_message_complete(self) -> None:
        if self._head_done and self._parser is not None:
            self.complete = True
            self.reusable = self._parser.should_keep_alive()
            # The parser holds our bound methods: dropping it frees both without the
            # cyclic collector (7 objects an answer, gc.collect()).
            self._parser = None


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one POST at a time, its answer read by an `_Answer`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._answer: _Answer | None = None
        self._done: asyncio.Future[tuple[int, bytes]] | None = None
        self._read = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def post(self, request: bytes, wanted: int) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None and self._done is None
        self._answer = _Answer(wanted)
        self._read = 0
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._done

    def data_received(self, data: bytes) -> None:
        answer, done = self._answer, self._done
        if answer is None or done is None:  # nothing was asked: the peer is confused
            self.close()
            return
        self._read += len(data)
        try:
            complete = answer.feed(data)
        except WebhookError as exc:
            self._fail(exc)
            return
        if complete:
            self._finish(answer, reuse=answer.reusable)
        elif self._read > answer.wanted + MAX_DRAIN + MAX_HEAD:  # too long to drain
            self._finish(answer, reuse=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        answer = self._answer
        if answer is not None and self._done is not None:
            if answer.end_of_stream():
                self._finish(answer, reuse=False)
            else:
                self._fail(WebhookError("the connection closed before the answer ended"))

    def _finish(self, answer: _Answer, *, reuse: bool) -> None:
        done = self._done
        self._answer = self._done = None
        if not reuse:
            self.close()
        if done is not None and not done.done():
            done.set_result((answer.status, bytes(answer.body)))

    def _fail(self, exc: Exception) -> None:
        done = self._done
        self._answer = self._done = None
        self.close()
        if done is not None and not done.done():
            done.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class WebhookClient:
    """POSTs to plain http:// URLs over kept-alive connections (see the module docstring)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._open: set[_Connection] = set()

    @staticmethod
    def handles(url: URL) -> bool:
        """Whether this client takes the URL: plain http, no credentials in it."""
        return url.scheme == "http" and url.raw_user is None and url.raw_host is not None

    async def post(
        self, url: URL, body: bytes, headers: Mapping[str, str], wanted: int
    ) -> tuple[int, bytes]:
        """POST ``body``: the answer's status and at most ``wanted`` octets of its body.

        Raises `WebhookError`, `OSError` (no connection) or `TimeoutError` (none within
        the client's timeout, connecting included).
        """
        host, port = url.raw_host, url.port
        assert host is not None and port is not None
        lines = [
            f"POST {url.raw_path_qs} HTTP/1.1",
            f"Host: {url.host_port_subcomponent}",
            f"User-Agent: {USER_AGENT}",
            "Accept: */*",
            f"Content-Length: {len(body)}",
        ]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        key = (host, port)
        async with asyncio.timeout(self._timeout), self._slots:
            connection = await self._connection(key)
            try:
                answer = await connection.post(request, wanted)
            except BaseException:
                connection.close()
                self._open.discard(connection)
                raise
            if connection.closed or len(self._open) > MAX_CONNECTIONS:
                connection.close()  # kept, idle connections would pass the bound
                self._open.discard(connection)
            else:
                self._idle.setdefault(key, []).append(connection)
            return answer

    async def _connection(self, key: tuple[str, int]) -> _Connection:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if not idle:  # no empty list is kept: any host may be allowed ("*")
                del self._idle[key]
            if not connection.closed:
                return connection
            self._open.discard(connection)
        _, connection = await asyncio.get_running_loop().create_connection(
            _Connection, key[0], key[1]
        )
        self._open.add(connection)
        return connection

    def close(self) -> None:
        for connection in self._open:
            connection.close()
        self._open.clear()
        self._idle.clear()
