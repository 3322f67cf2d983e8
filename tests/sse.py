"""A Server-Sent Events reader for tests: ``GET /v1/events`` with a real aiohttp client."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from tests.conftest import API_KEY, EVENT_TIMEOUT, RunningGateway


class StreamEvent:
    __slots__ = ("data", "id", "type")

    def __init__(self, id: str | None, type: str, data: dict[str, Any]) -> None:
        self.id = id
        self.type = type
        self.data = data

    def __repr__(self) -> str:
        return f"StreamEvent({self.id}, {self.type}, {self.data})"


class EventStream:
    """One open stream; `next` returns its next event (pings are counted, not returned)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.pings = 0

    async def block(self) -> list[str]:
        """The lines of the next block; EOFError once the gateway ended the stream."""
        async with asyncio.timeout(EVENT_TIMEOUT):
            raw = await self.response.content.readuntil(b"\n\n")
        if not raw.endswith(b"\n\n"):
            raise EOFError
        return raw.decode().splitlines()

    async def next(self) -> StreamEvent:
        while True:
            lines = [line for line in await self.block() if line]
            if all(line.startswith(":") for line in lines):
                self.pings += 1
                continue
            fields = dict(line.split(": ", 1) for line in lines if not line.startswith(":"))
            data = json.loads(fields["data"])
            assert data["type"] == fields["event"]
            assert fields.get("id") in (None, data["id"])
            return StreamEvent(fields.get("id"), fields["event"], data)

    async def until(self, type: str, **match: Any) -> list[StreamEvent]:
        """Events up to and including the first of ``type`` whose fields match."""
        seen = []
        while True:
            event = await self.next()
            seen.append(event)
            if event.type == type and all(event.data.get(k) == v for k, v in match.items()):
                return seen


@contextlib.asynccontextmanager
async def open_stream(
    gateway: RunningGateway,
    key: str = API_KEY,
    headers: dict[str, str] | None = None,
    **query: str,
) -> AsyncIterator[EventStream]:
    """Once this yields, the gateway has subscribed: nothing published after it is missed."""
    async with gateway.http.get(
        f"{gateway.url}/v1/events",
        params=query,
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
    ) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        yield EventStream(response)
