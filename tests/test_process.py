"""The real `smsgw serve` process: crash durability and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import API_KEY, EVENT_TIMEOUT, CallbackReceiver, base_config, merged

HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def toml_value(value: Any) -> str:
    """TOML for our configs: inline tables and arrays, so no section headers are needed."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def write_toml(path: Path, config: dict[str, Any]) -> None:
    path.write_text("".join(f"{key} = {toml_value(v)}\n" for key, v in config.items()))


@dataclass
class GatewayProcess:
    process: asyncio.subprocess.Process
    url: str
    log: list[str]


@contextlib.asynccontextmanager
async def gateway_process(config_path: Path) -> AsyncIterator[GatewayProcess]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--config",
        str(config_path),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    log: list[str] = []

    async def read_until_listening() -> str:
        assert process.stderr is not None
        while True:
            line = (await process.stderr.readline()).decode()
            if not line:
                raise AssertionError("gateway exited: " + "".join(log))
            log.append(line)
            match = re.search(r"http\.listening host=(\S+) port=(\d+)", line)
            if match:
                return f"http://{match.group(1)}:{match.group(2)}"

    try:
        url = await asyncio.wait_for(read_until_listening(), EVENT_TIMEOUT)
        yield GatewayProcess(process, url, log)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def _submit(
    http: aiohttp.ClientSession, url: str, i: int, callback_url: str | None = None
) -> str:
    document = {
        "to": f"+4670123{i:04d}",
        "from": "Acme",
        "body": f"durable body {i}",
        "callback_url": callback_url,
    }
    async with http.post(f"{url}/v1/messages", json=document, headers=HEADERS) as response:
        assert response.status == 202
        return str((await response.json())["id"])


async def test_sigkill_loses_no_acknowledged_message(
    tmp_path: Path, callback_receiver: CallbackReceiver
) -> None:
    config_path = tmp_path / "config.toml"
    # Latency long enough that nothing is delivered before the kill.
    slow = merged(base_config(tmp_path), {"simulator": {"latency": ["1h", "1h"]}})
    write_toml(config_path, slow)
    count = 300
    async with aiohttp.ClientSession() as http:
        async with gateway_process(config_path) as gateway:
            ids = await asyncio.gather(
                *(_submit(http, gateway.url, i, callback_receiver.url) for i in range(count))
            )
            gateway.process.send_signal(signal.SIGKILL)
            assert await gateway.process.wait() == -signal.SIGKILL

        write_toml(config_path, base_config(tmp_path))  # fast again: resumed messages deliver
        async with gateway_process(config_path) as gateway:
            for message_id in ids:
                async with http.get(
                    f"{gateway.url}/v1/messages/{message_id}", headers=HEADERS
                ) as response:
                    assert response.status == 200
            assert any("network.resumed count=300" in line for line in gateway.log)

            delivered = {(await callback_receiver.next())["id"] for _ in range(count)}
            assert delivered == set(ids)
            async with http.get(
                f"{gateway.url}/v1/simulator/handsets/+46701230007/messages", headers=HEADERS
            ) as response:
                inbox = (await response.json())["messages"]
            assert [m["body"] for m in inbox] == ["durable body 7"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_gracefully(tmp_path: Path, signum: signal.Signals) -> None:
    config_path = tmp_path / "config.toml"
    write_toml(config_path, base_config(tmp_path))
    async with aiohttp.ClientSession() as http, gateway_process(config_path) as gateway:
        async with http.get(f"{gateway.url}/healthz") as response:
            assert response.status == 200
        await _submit(http, gateway.url, 1)
        gateway.process.send_signal(signum)
        assert await asyncio.wait_for(gateway.process.wait(), EVENT_TIMEOUT) == 0
        assert gateway.process.stderr is not None
        rest = (await gateway.process.stderr.read()).decode()
        assert "shutdown.finished" in rest
