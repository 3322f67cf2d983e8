"""The webhook client's answer reader, fed golden bytes whole and one byte at a time,
and the client against a real local server (`gateway.webhook_client`)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from yarl import URL

from gateway.webhook_client import MAX_DRAIN, MAX_HEAD, WebhookClient, WebhookError, _Answer
from tests.conftest import EVENT_TIMEOUT, serve_locally

ANSWERS = [
    (b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n", 204, b"", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, b"hello", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 200, b"", False),
    (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
        201,
        b"ok",
        True,
    ),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: y\r\n\r\n",
        200,
        b"Wikipedia",
        True,
    ),
    (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
        200,
        b"ok",
        False,
    ),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", True),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", False),
]


def feed_all(answer: _Answer, data: bytes, one_by_one: bool) -> bool:
    if not one_by_one:
        return answer.feed(data)
    complete = False
    for i in range(len(data)):
        complete = answer.feed(data[i : i + 1])
        if complete:
            assert i == len(data) - 1, "complete before its last byte"
    return complete


@pytest.mark.parametrize("one_by_one", [False, True])
@pytest.mark.parametrize(("data", "status", "body", "reusable"), ANSWERS)
def test_answers_are_read_whole_or_byte_by_byte(
    data: bytes, status: int, body: bytes, reusable: bool, one_by_one: bool
) -> None:
    answer = _Answer(wanted=100)
    assert feed_all(answer, data, one_by_one)
    assert (answer.status, bytes(answer.body), answer.reusable) == (status, body, reusable)


def test_an_answer_up_to_the_close_ends_with_the_stream() -> None:
    answer = _Answer(wanted=3)
    assert not answer.feed(b"HTTP/1.0 200 OK\r\n\r\nabcdef")
    assert answer.end_of_stream()
    assert (answer.status, bytes(answer.body), answer.reusable) == (200, b"abc", False)


@pytest.mark.parametrize(
    "after",
    [b"EXTRA", b"HTTP/1.1 500 Unasked\r\nContent-Length: 0\r\n\r\n"],
)
def test_bytes_after_the_answer_keep_its_status_and_close_its_connection(after: bytes) -> None:
    answer = _Answer(wanted=0)
    assert answer.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx" + after)
    assert (answer.status, bytes(answer.body), answer.reusable) == (200, b"", False)


def test_a_1xx_answers_length_does_not_frame_the_answer_after_it() -> None:
    answer = _Answer(wanted=10)
    assert not answer.feed(b"HTTP/1.1 103 Early Hints\r\nContent-Length: 9\r\n\r\n")
    assert not answer.feed(b"HTTP/1.1 200 OK\r\n\r\nup to the close")
    assert answer.end_of_stream()
    assert (answer.status, bytes(answer.body), answer.reusable) == (200, b"up to the ", False)


def test_an_early_close_does_not_complete_a_framed_answer() -> None:
    for head in (b"Content-Length: 5", b"Transfer-Encoding: chunked"):
        answer = _Answer(wanted=10)
        assert not answer.feed(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n\r\nab")
        assert not answer.end_of_stream()
    answer = _Answer(wanted=10)
    assert not answer.feed(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert not answer.end_of_stream()


def test_a_head_longer_than_max_head_is_refused() -> None:
    answer = _Answer(wanted=10)
    answer.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(WebhookError, match="head too long"):
        answer.feed(b"X-Long: " + b"a" * MAX_HEAD)


@pytest.mark.parametrize(
    "data",
    [
        b"SMTP 220 hello\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
        # A switch of protocols that no POST asks for, with its headers or without.
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
)
def test_malformed_answers_are_refused(data: bytes) -> None:
    with pytest.raises(WebhookError):
        _Answer(wanted=10).feed(data)


async def test_posts_reuse_one_connection_and_read_what_is_wanted() -> None:
    peers: list[object] = []

    async def hook(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        assert request.headers["User-Agent"] == "smsgw-callbacks"
        return web.Response(text=(await request.read()).decode() * 2)

    app = web.Application()
    app.router.add_post("/hook", hook)
    client = WebhookClient(timeout=EVENT_TIMEOUT)
    try:
        async with serve_locally(app) as url:
            for body in (b"one", b"two", b"three"):
                status, answer = await client.post(
                    URL(f"{url}/hook?k=1"), body, {"Content-Type": "text/plain"}, wanted=4
                )
                assert (status, answer) == (200, (body * 2)[:4])
            assert len(set(peers)) == 1, "one kept-alive connection for every POST"
    finally:
        client.close()


async def test_a_long_answer_closes_its_connection_and_a_dead_port_raises() -> None:
    async def hook(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (2 * MAX_DRAIN + 200_000))

    app = web.Application()
    app.router.add_post("/hook", hook)
    client = WebhookClient(timeout=EVENT_TIMEOUT)
    try:
        async with serve_locally(app) as url:
            status, answer = await client.post(URL(f"{url}/hook"), b"", {}, wanted=10)
            assert (status, answer) == (200, b"x" * 10)
        with pytest.raises(OSError):
            await asyncio.wait_for(client.post(URL(url), b"", {}, wanted=0), EVENT_TIMEOUT)
    finally:
        client.close()


async def test_a_redirect_is_an_answer_not_followed() -> None:
    """Following it could lead off the callback allow-list."""
    followed: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        followed.append(request.path)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_route("*", "/elsewhere", elsewhere)
    client = WebhookClient(timeout=EVENT_TIMEOUT)
    try:
        async with serve_locally(app) as url:
            status, _ = await client.post(URL(f"{url}/hook"), b"{}", {}, wanted=0)
            assert (status, followed) == (302, [])
    finally:
        client.close()
