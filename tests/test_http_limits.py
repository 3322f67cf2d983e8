"""What an HTTP client can hold is bounded: slow headers, short bodies, idle and extra connections.

Raw sockets, since no HTTP client misbehaves on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.config import ConfigError, config_from_dict
from tests.conftest import API_KEY, EVENT_TIMEOUT, RunningGateway, merged, running_gateway
from tests.test_http_errors import open_raw

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: smsgw\r\n\r\n"


@pytest.fixture
async def limited(config_dict: dict[str, Any]) -> AsyncIterator[RunningGateway]:
    """Short header and body timeouts; the idle timeout is long, so it closes nothing here."""
    limits = {"header_timeout": "300ms", "body_timeout": "300ms", "idle_timeout": "1h"}
    async with running_gateway(config_from_dict(merged(config_dict, {"http": limits}))) as gw:
        yield gw


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length: status, headers, body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), EVENT_TIMEOUT)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {
        name.strip().lower(): value.strip()
        for name, value in (line.split(":", 1) for line in lines)
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def closed(reader: asyncio.StreamReader) -> bytes:
    """Whatever the server still sends, up to its close (EOF)."""
    return await asyncio.wait_for(reader.read(), EVENT_TIMEOUT)


async def trickle(writer: asyncio.StreamWriter) -> None:
    """Slowloris: a header line now and then, never the blank line that ends them."""
    writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: smsgw\r\n")
    for n in range(10_000):
        await asyncio.sleep(0.05)
        writer.write(f"X-Slow-{n}: still typing\r\n".encode())


async def test_slowloris_connections_are_closed_within_the_header_timeout(
    limited: RunningGateway,
) -> None:
    connections = [await open_raw(limited) for _ in range(20)]
    tricklers = [asyncio.create_task(trickle(writer)) for _, writer in connections]
    try:
        answers = await asyncio.gather(*(closed(reader) for reader, _ in connections))
    finally:
        for task in tricklers:
            task.cancel()
        for _, writer in connections:
            writer.close()
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ")
        assert b"application/problem+json" in head
        assert json.loads(body)["code"] == "request_timeout"


async def test_a_kept_alive_connection_must_finish_its_next_headers_in_time(
    limited: RunningGateway,
) -> None:
    reader, writer = await open_raw(limited)
    writer.write(HEALTHZ)
    assert (await read_response(reader))[0] == 200
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: smsgw\r\n")  # no blank line, ever
    assert (await closed(reader)).startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_a_silent_connection_is_closed_without_an_answer(limited: RunningGateway) -> None:
    reader, writer = await open_raw(limited)
    assert await closed(reader) == b""
    writer.close()


async def test_a_body_shorter_than_its_content_length_times_out(limited: RunningGateway) -> None:
    reader, writer = await open_raw(limited)
    writer.write(
        b"POST /v1/messages HTTP/1.1\r\nHost: smsgw\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {API_KEY}\r\nContent-Length: 100\r\n\r\n".encode()
        + b'{"to": "+46'
    )
    status, headers, body = await read_response(reader)
    assert (status, headers["content-type"]) == (408, "application/problem+json")
    assert headers["connection"] == "close"
    assert json.loads(body)["code"] == "request_timeout"
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed(config_dict: dict[str, Any]) -> None:
    config = config_from_dict(merged(config_dict, {"http": {"idle_timeout": "200ms"}}))
    async with running_gateway(config) as gateway:
        reader, writer = await open_raw(gateway)
        writer.write(HEALTHZ)
        status, headers, _ = await read_response(reader)
        assert status == 200 and headers.get("connection") != "close"
        assert await closed(reader) == b""
        writer.close()


async def test_connections_beyond_max_connections_are_refused(
    config_dict: dict[str, Any],
) -> None:
    config = config_from_dict(merged(config_dict, {"http": {"max_connections": 3}}))
    async with running_gateway(config) as gateway, contextlib.AsyncExitStack() as stack:
        held = []
        for _ in range(3):
            reader, writer = await open_raw(gateway)
            stack.callback(writer.close)
            writer.write(HEALTHZ)
            assert (await read_response(reader))[0] == 200  # open, as the server counts
            held.append(writer)
        reader, writer = await open_raw(gateway)
        stack.callback(writer.close)
        status, headers, body = await read_response(reader)
        assert (status, json.loads(body)["code"]) == (503, "too_many_connections")
        assert headers["retry-after"] == "1"
        assert await closed(reader) == b""

        for writer in held:  # closing them frees their slots
            writer.close()
            await writer.wait_closed()
        async with asyncio.timeout(EVENT_TIMEOUT):
            while True:  # until the server has seen the closes; a refusal may come as a reset
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with gateway.http.get(f"{gateway.url}/healthz") as response:
                        if response.status == 200:
                            break
        metrics = await (await gateway.http.get(f"{gateway.url}/metrics")).text()
        assert 'smsgw_http_errors_total{code="too_many_connections"}' in metrics


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        ({"header_timeout": "0s"}, "http.header_timeout: must be positive"),
        ({"max_connections": 0}, "http.max_connections: must be at least 1"),
        ({"max_auth_delay": "10ms"}, "http.max_auth_delay: must be at least failed_auth_delay"),
    ],
)
def test_limits_are_checked_as_the_config_loads(
    config_dict: dict[str, Any], limits: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as error:
        config_from_dict(merged(config_dict, {"http": limits}))
    assert str(error.value) == problem
