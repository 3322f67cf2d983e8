"""API keys resist guessing: checks from an address that failed are spaced out, then refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.config import config_from_dict
from gateway.server.http_api import AUTH_THROTTLE
from tests.conftest import API_KEY, EVENT_TIMEOUT, RunningGateway, merged, running_gateway

WRONG = {"Authorization": "Bearer not-a-key"}
RIGHT = {"Authorization": f"Bearer {API_KEY}"}


class Checks:
    """Records the throttle's verdicts in the order the server reached them."""

    def __init__(self, gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> None:
        throttle = gateway.app[AUTH_THROTTLE]
        self.order: list[str] = []
        self.waits: list[float | None] = []
        self.reserved: asyncio.Queue[None] = asyncio.Queue()
        reserve, failed, succeeded = throttle.reserve, throttle.failed, throttle.succeeded

        def reserving(peer: str, identity: str | None = None) -> float | None:
            self.waits.append(reserve(peer, identity))
            self.reserved.put_nowait(None)
            return self.waits[-1]

        def failing(peer: str, identity: str | None = None) -> None:
            self.order.append("failed")
            failed(peer, identity)

        def succeeding(peer: str, identity: str | None = None) -> None:
            self.order.append("succeeded")
            succeeded(peer, identity)

        monkeypatch.setattr(throttle, "reserve", reserving)
        monkeypatch.setattr(throttle, "failed", failing)
        monkeypatch.setattr(throttle, "succeeded", succeeding)

    async def until_reserved(self, count: int) -> None:
        for _ in range(count):
            await asyncio.wait_for(self.reserved.get(), EVENT_TIMEOUT)


def throttled(config_dict: dict[str, Any], base: str, cap: str, wait: str) -> Any:
    delays = {"failed_auth_delay": base, "max_auth_delay": cap, "max_auth_wait": wait}
    return running_gateway(config_from_dict(merged(config_dict, {"http": delays})))


@pytest.fixture
async def gateway(config_dict: dict[str, Any]) -> AsyncIterator[RunningGateway]:
    async with throttled(config_dict, "200ms", "1s", "5s") as running:
        yield running


async def get(http: aiohttp.ClientSession, gateway: RunningGateway, headers: Any) -> int:
    async with http.get(f"{gateway.url}/v1/messages", headers=headers) as response:
        return response.status


async def test_a_right_key_after_wrong_ones_is_checked_after_them(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = Checks(gateway, monkeypatch)
    assert await get(gateway.http, gateway, WRONG) == 401
    await checks.until_reserved(1)
    wrong = [asyncio.create_task(get(gateway.http, gateway, WRONG)) for _ in range(5)]
    await checks.until_reserved(5)  # all five hold a slot, 200 ms apart
    assert await get(gateway.http, gateway, RIGHT) == 200
    assert await asyncio.gather(*wrong) == [401] * 5
    assert checks.order == ["failed"] * 6 + ["succeeded"]
    right_key_wait = checks.waits[-1]
    assert right_key_wait is not None and right_key_wait > 0


async def attempt(gateway: RunningGateway) -> tuple[int, str]:
    """A wrong key: its status and Retry-After, or its status and problem code."""
    async with gateway.http.get(f"{gateway.url}/v1/messages", headers=WRONG) as response:
        assert response.content_type == "application/problem+json"
        document = await response.json(content_type=None)
        return response.status, response.headers.get("Retry-After") or document["code"]


async def test_a_burst_of_wrong_keys_is_refused_beyond_the_wait_bound(
    config_dict: dict[str, Any],
) -> None:
    async with throttled(config_dict, "50ms", "200ms", "500ms") as gateway:
        answers = await asyncio.wait_for(
            asyncio.gather(*(attempt(gateway) for _ in range(40))), EVENT_TIMEOUT
        )
        failed = answers.count((401, "unauthorized"))
        refused = answers.count((429, "1"))
        assert failed + refused == 40 and refused > 0 and failed > 0
        metrics = await (await gateway.http.get(f"{gateway.url}/metrics")).text()
    assert f'smsgw_auth_failures_total{{interface="http",verdict="failed"}} {failed}.0' in metrics
    assert f'smsgw_auth_failures_total{{interface="http",verdict="refused"}} {refused}.0' in metrics


async def test_a_right_key_is_not_slowed_by_another_address(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = Checks(gateway, monkeypatch)
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as guesser:
        assert await asyncio.gather(*(get(guesser, gateway, WRONG) for _ in range(3))) == [401] * 3
    assert [await get(gateway.http, gateway, RIGHT) for _ in range(3)] == [200] * 3
    assert checks.waits[-3:] == [0.0, 0.0, 0.0]
