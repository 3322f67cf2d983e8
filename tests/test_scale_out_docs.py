"""The load balancer config docs/scale-out.md ships: HAProxy accepts it, and it works.

The second test runs HAProxy on the sample, its addresses rewritten to three gateway
processes on loopback, and drives SMPP and HTTP through it: sessions spread over the
instances, every backend server passes its /readyz check, receipts come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from smpp.pdu import CommandId, CommandStatus, Pdu, Tag
from tests.conftest import ADMIN_TOKEN, EVENT_TIMEOUT
from tests.postgres import postgres_dsn
from tests.smpp_clients import RawEsme, raw_session
from tests.test_process import HEADERS, GatewayProcess
from tests.test_scale_out import cluster, cluster_config, submit

__all__ = ["postgres_dsn"]

C = CommandId

HAPROXY_CFG = Path(__file__).resolve().parent.parent / "docs" / "scale-out" / "haproxy.cfg"
SERVER = re.compile(r"server (gw\d) 10\.0\.0\.1\d:(8080|2775)")


def haproxy() -> str:
    found = shutil.which("haproxy") or shutil.which("/usr/sbin/haproxy")
    if found is None:
        pytest.skip("haproxy is not installed (scripts/ensure-interop installs Debian's)")
    return found


def test_the_sample_haproxy_config_is_valid() -> None:
    result = subprocess.run(
        [haproxy(), "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout
    # Both front ends, each backend health-checked on /readyz.
    text = HAPROXY_CFG.read_text()
    assert text.count("option httpchk GET /readyz") == 2
    assert "mode tcp" in text and "bind :2775" in text and "bind :8080" in text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def on_loopback(text: str, gateways: list[GatewayProcess], http: int, smpp: int) -> str:
    """The sample with its listeners and servers moved to loopback ports."""
    ports = {f"gw{n}": gateway for n, gateway in enumerate(gateways, start=1)}

    def server(match: re.Match[str]) -> str:
        gateway = ports[match.group(1)]
        http_port = int(gateway.url.rsplit(":", 1)[1])
        if match.group(2) == "8080":
            return f"server {match.group(1)} 127.0.0.1:{http_port}"
        # The SMPP servers are health-checked on their instance's HTTP port.
        return f"server {match.group(1)} 127.0.0.1:{gateway.smpp_port} port {http_port}"

    moved = SERVER.sub(server, text)
    moved = moved.replace("bind :8080", f"bind 127.0.0.1:{http}")
    return moved.replace("bind :2775", f"bind 127.0.0.1:{smpp}")


@contextlib.asynccontextmanager
async def balancer(config: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """HAProxy in the foreground on ``config``; what it says goes to ``haproxy.log`` beside."""
    with config.with_name("haproxy.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            haproxy(), "-db", "-f", str(config), stdout=log, stderr=log
        )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def server_checks(stats: Path) -> dict[str, str]:
    """``backend/server`` -> the last health check's status, from HAProxy's stats socket."""
    reader, writer = await asyncio.open_unix_connection(str(stats))
    writer.write(b"show stat\n")
    text = (await reader.read()).decode()
    writer.close()
    rows = csv.DictReader(text.removeprefix("# ").splitlines())
    return {
        f"{row['pxname']}/{row['svname']}": row["check_status"]
        for row in rows
        if row["svname"] not in ("FRONTEND", "BACKEND")
    }


@pytest.mark.postgres
@pytest.mark.slow
async def test_the_sample_haproxy_config_balances_three_instances(
    tmp_path: Path, postgres_dsn: str
) -> None:
    http_port, smpp_port, stats = free_port(), free_port(), tmp_path / "haproxy.sock"
    async with cluster(tmp_path, cluster_config(tmp_path, postgres_dsn)) as gateways:
        text = on_loopback(HAPROXY_CFG.read_text(), gateways, http_port, smpp_port)
        config = tmp_path / "haproxy.cfg"
        config.write_text(text.replace("global\n", f"global\n    stats socket {stats}\n", 1))
        async with balancer(config) as proxy, aiohttp.ClientSession() as http:

            async def all_checked() -> dict[str, str]:
                """HAProxy is another process: its stats are what it tells."""
                while True:
                    log = config.with_name("haproxy.log")
                    assert proxy.returncode is None, f"haproxy exited: {log.read_text()}"
                    with contextlib.suppress(OSError):
                        checks = await server_checks(stats)
                        if len(checks) == 6 and set(checks.values()) == {"L7OK"}:
                            return checks
                    await asyncio.sleep(0.1)

            # Every server, HTTP and SMPP, passed its GET /readyz check.
            await asyncio.wait_for(all_checked(), 2 * EVENT_TIMEOUT)

            async with contextlib.AsyncExitStack() as sessions:
                receivers = [
                    await sessions.enter_async_context(raw_session(smpp_port, C.bind_receiver))
                    for _ in gateways
                ]
                async with http.get(
                    f"{gateways[0].url}/admin/v1/instances",
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                ) as response:
                    listed = (await response.json())["instances"]
                # Least connections: one receiver on each instance.
                assert sorted(i["sessions"] for i in listed) == [1, 1, 1], listed

                transmitter = await sessions.enter_async_context(
                    raw_session(smpp_port, C.bind_transmitter)
                )
                submitted = [await submit(transmitter, 2 + i, f"+4670123{i:04d}") for i in range(9)]
                assert {status for status, _ in submitted} == {CommandStatus.ESME_ROK}
                ids = {message_id for _, message_id in submitted}

                seen: set[str] = set()
                all_back = asyncio.Event()

                async def read(receiver: RawEsme) -> None:
                    """Receipts may come on any of the tenant's receivers: read each."""
                    while True:
                        with contextlib.suppress(TimeoutError):  # a quiet receiver
                            deliver = await receiver.next()
                            seen.add(str(deliver.tlvs[Tag.receipted_message_id]))
                            await receiver.send(
                                Pdu.make(C.deliver_sm_resp, deliver.sequence_number, message_id="")
                            )
                            if ids <= seen:
                                all_back.set()

                readers = [asyncio.create_task(read(receiver)) for receiver in receivers]
                try:
                    await asyncio.wait_for(all_back.wait(), 2 * EVENT_TIMEOUT)
                finally:
                    for reader in readers:
                        reader.cancel()
                    await asyncio.gather(*readers, return_exceptions=True)

            async with http.get(
                f"http://127.0.0.1:{http_port}/v1/messages/{min(ids)}", headers=HEADERS
            ) as response:
                assert response.status == 200
                assert (await response.json())["status"] == "delivered"
