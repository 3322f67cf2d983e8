"""A real Prometheus server for tests: scrapes the gateway and loads our alert rules.

Debian's ``prometheus`` package provides it; ``scripts/ensure-prometheus`` (run by
the README's test command) installs it when missing. Prometheus is another
process with no event to await, so `wait_for_scrape_after` polls its HTTP API
with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
ALERT_RULES = ROOT / "prometheus" / "alerts.yml"
STARTUP_TIMEOUT = 30.0
WAIT = 30.0
POLL = 0.1


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} is not installed: run scripts/ensure-prometheus")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Prometheus:
    url: str
    http: aiohttp.ClientSession

    async def api(self, path: str, **params: str) -> Any:
        async with self.http.get(f"{self.url}/api/v1/{path}", params=params) as response:
            document = await response.json()
        if document["status"] != "success":
            raise AssertionError(f"{path} {params}: {document.get('error')}")
        return document["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        return list((await self.api("query", query=expr))["result"])

    async def scalar(self, expr: str) -> float:
        """The single value of ``expr``; 0 when it has no series (a counter never touched)."""
        result = await self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else 0.0

    async def wait_for_scrape_after(self, moment: float) -> None:
        """Until a scrape of the gateway that started after ``moment`` is stored."""
        async with asyncio.timeout(WAIT):
            while True:
                if await self.scalar("max(timestamp(smsgw_build_info))") > moment:
                    return
                await asyncio.sleep(POLL)

    async def wait_for_rules_evaluated(self) -> list[dict[str, Any]]:
        """Every loaded rule, once each has been evaluated at least once."""
        async with asyncio.timeout(WAIT):
            while True:
                groups = (await self.api("rules"))["groups"]
                rules = [rule for group in groups for rule in group["rules"]]
                if rules and all(not r["lastEvaluation"].startswith("0001") for r in rules):
                    return rules
                await asyncio.sleep(POLL)


@contextlib.asynccontextmanager
async def prometheus_server(tmp_path: Path, target: str) -> AsyncIterator[Prometheus]:
    """Prometheus on loopback, scraping ``target`` (host:port) twice a second."""
    config = {
        "global": {
            "scrape_interval": "500ms",
            "scrape_timeout": "500ms",
            "evaluation_interval": "500ms",
        },
        "rule_files": [str(ALERT_RULES)],
        "scrape_configs": [{"job_name": "smsgw", "static_configs": [{"targets": [target]}]}],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "prometheus.log"
    with log.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            binary("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={url.removeprefix('http://')}",
            "--log.level=warn",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{url}/-/ready") as response:
                        if response.status == 200:
                            break
                if process.returncode is not None or time.monotonic() > deadline:
                    raise AssertionError(f"prometheus did not start: {log.read_text()}")
                await asyncio.sleep(POLL)
            yield Prometheus(url, http)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
