"""A lean HTTP/1.1 client for webhook POSTs to plain ``http://`` URLs, connections kept.

With ``callback_url`` on every message, aiohttp's client was a third of the event
loop's time (py-spy on the HTTP side by side: request and URL objects, header merging,
a timer handle and a connector acquire per POST). A callback needs none of that: the
request is one bytes object, and the answer's status line, its length and at most a
few kilobytes of body are all we read. Answers come in three shapes (``Content-Length``,
chunked, or up to the close); anything else is a `WebhookError`, as is a connection
that closes early. Redirects are not followed: a 3xx is an answer like any other non-2xx
(following one could lead outside the callback allow-list).

Idle connections are kept per host and port, at most `MAX_CONNECTIONS` open in all
(a POST beyond that waits for one), and each answer is read to its end to reuse its
connection, unless it is longer than the caller wants by more than `MAX_DRAIN`, when
the connection is closed instead. ``https://`` URLs, and URLs with credentials in
them, stay with aiohttp (`gateway.callbacks`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from yarl import URL

# Connections open at once, over all hosts (aiohttp's default limit, kept).
MAX_CONNECTIONS = 100
# Bytes of an answer beyond what the caller wants that are still read to keep the
# connection; beyond them it is closed.
MAX_DRAIN = 64 * 1024
# The most an answer's status line and headers may take.
MAX_HEAD = 64 * 1024
USER_AGENT = "smsgw-callbacks"
# What a chunked answer's reader expects next when it is not inside a chunk.
_SIZE_LINE, _AFTER_DATA, _TRAILER = -1, -2, -3


class WebhookError(Exception):
    """No usable answer: the connection failed or closed early, or the answer is malformed."""


class _Answer:
    """The sans-IO reader of one answer: bytes in, (status, body) out once it is complete."""

    __slots__ = ("body", "chunk_left", "head", "left", "mode", "reusable", "status", "wanted")

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.head = b""
        self.status = 0
        self.mode = "head"  # then "length", "chunked", "close", "done"
        self.left = 0  # octets of the body still to come ("length")
        self.chunk_left = _SIZE_LINE  # octets of the chunk still to come, or the line next
        self.body = bytearray()
        self.reusable = True

    def feed(self, data: bytes) -> bytes | None:
        """Take ``data``; returns what follows the answer once it is complete, else None."""
        if self.mode == "head":
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > MAX_HEAD:
                    raise WebhookError("answer head too long")
                return None
            head, data = self.head[:end], self.head[end + 4 :]
            self.head = b""
            self._read_head(head)
            if self.mode == "head":  # a 1xx answer: the real one follows
                return self.feed(data)
            if self.mode == "done":  # no body
                return data
        if self.mode == "length":
            taken = data[: self.left]
            self._keep(taken)
            self.left -= len(taken)
            if self.left == 0:
                self.mode = "done"
                return data[len(taken) :]
            return None
        if self.mode == "chunked":
            return self._chunks(data)
        if self.mode == "close":
            self._keep(data)
        return None

    def end_of_stream(self) -> bool:
        """The peer closed: True if that completes the answer (one read up to the close)."""
        if self.mode == "close":
            self.mode = "done"
            return True
        return False

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise WebhookError("not an HTTP/1.x answer")
        self.status = int(code)
        if 100 <= self.status < 200:
            return
        length: bytes | None = None
        chunked = False
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise WebhookError("malformed answer header")
            name, value = name.strip().lower(), value.strip()
            if name == b"content-length":
                if length is not None and length != value:
                    raise WebhookError("two Content-Length headers")
                length = value
            elif name == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
            elif name == b"connection" and value.lower() == b"close":
                self.reusable = False
        if version == b"HTTP/1.0":
            self.reusable = False
        if chunked:
            self.mode = "chunked"
        elif length is not None:
            if not length.isdigit():
                raise WebhookError("malformed Content-Length")
            self.left = int(length)
            self.mode = "length" if self.left else "done"
        elif self.status in (204, 304):
            self.mode = "done"
        else:
            self.mode = "close"
            self.reusable = False

    def _chunks(self, data: bytes) -> bytes | None:
        """Chunked: ``chunk_left`` > 0 inside a chunk, else what line comes next."""
        buffer = self.head + data
        while True:
            if self.chunk_left > 0:
                taken = buffer[: self.chunk_left]
                self._keep(taken)
                self.chunk_left -= len(taken)
                buffer = buffer[len(taken) :]
                if self.chunk_left:
                    self.head = b""
                    return None
                self.chunk_left = _AFTER_DATA
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise WebhookError("chunk line too long")
                self.head = buffer
                return None
            line, buffer = buffer[:end], buffer[end + 2 :]
            if self.chunk_left == _AFTER_DATA:
                if line:
                    raise WebhookError("malformed chunk")
                self.chunk_left = _SIZE_LINE
            elif self.chunk_left == _TRAILER:
                if not line:
                    self.mode = "done"
                    return buffer
            else:
                size = line.split(b";")[0].strip()
                if not size or size.strip(b"0123456789abcdefABCDEF"):
                    raise WebhookError("malformed chunk size")
                self.chunk_left = int(size, 16) or _TRAILER

    def _keep(self, data: bytes) -> None:
        room = self.wanted - len(self.body)
        if room > 0:
            self.body += data[:room]


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
            rest = answer.feed(data)
        except WebhookError as exc:
            self._fail(exc)
            return
        if rest is None:
            if self._read > answer.wanted + MAX_DRAIN + MAX_HEAD:  # too long to drain
                self._finish(answer, reuse=False)
            return
        self._finish(answer, reuse=answer.reusable and not rest)

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
