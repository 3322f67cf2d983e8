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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from smpp.bodies import DeliverSm
from smpp.pdu import CommandId, CommandStatus, Pdu, Tag, TlvValue, encode
from tests.conftest import API_KEY, EVENT_TIMEOUT, CallbackReceiver, base_config, merged
from tests.smpp_clients import raw_session
from tests.test_smpp_server import submit_fields

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
C = CommandId


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
    smpp_port: int
    log: list[str]  # every stderr line so far, read as it comes so the pipe never fills
    drained: asyncio.Task[None]
    awaited: list[tuple[str, asyncio.Future[str]]]

    async def line_with(self, text: str) -> str:
        """The first log line containing ``text``, as soon as it is written."""
        for line in self.log:
            if text in line:
                return line
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.awaited.append((text, future))
        return await asyncio.wait_for(future, EVENT_TIMEOUT)

    async def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        """Signal the process; its exit status once it and its log have ended."""
        self.process.send_signal(signum)
        status = await asyncio.wait_for(self.process.wait(), EVENT_TIMEOUT)
        await asyncio.wait_for(self.drained, EVENT_TIMEOUT)
        return status


def listening_address(line: str) -> tuple[str, str, int] | None:
    """("http" or "smpp", host, port) from a listening event, in text or JSON lines."""
    if line.startswith("{"):
        entry = json.loads(line)
        kind = str(entry["event"]).removesuffix(".listening")
        return (kind, entry["host"], entry["port"]) if kind in ("http", "smpp") else None
    match = re.search(r"(http|smpp)\.listening host=(\S+) port=(\d+)", line)
    return (match.group(1), match.group(2), int(match.group(3))) if match else None


@contextlib.asynccontextmanager
async def gateway_process(config_path: Path, *options: str) -> AsyncIterator[GatewayProcess]:
    """``smsgw serve --config config_path *options``, until it has both listeners."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--config",
        str(config_path),
        *options,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log: list[str] = []
    awaited: list[tuple[str, asyncio.Future[str]]] = []
    addresses: dict[str, asyncio.Future[tuple[str, int]]] = {
        kind: asyncio.get_running_loop().create_future() for kind in ("http", "smpp")
    }

    async def drain() -> None:
        assert process.stderr is not None
        while line := (await process.stderr.readline()).decode():
            log.append(line)
            for text, future in awaited:
                if text in line and not future.done():
                    future.set_result(line)
            address = listening_address(line)
            if address is not None and not addresses[address[0]].done():
                addresses[address[0]].set_result(address[1:])
        for address_future in addresses.values():
            if not address_future.done():
                address_future.set_exception(AssertionError("gateway exited: " + "".join(log)))

    drained = asyncio.create_task(drain())
    try:
        (host, port), (_, smpp_port) = await asyncio.wait_for(
            asyncio.gather(addresses["http"], addresses["smpp"]), EVENT_TIMEOUT
        )
        url = f"http://{host}:{port}"
        yield GatewayProcess(process, url, smpp_port, log, drained, awaited)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await drained


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
        assert await gateway.stop(signum) == 0
        assert "shutdown.finished" in gateway.log[-1]


async def test_acknowledged_cancel_and_replace_survive_sigkill(tmp_path: Path) -> None:
    config_path = tmp_path / "config.toml"
    slow = merged(base_config(tmp_path), {"simulator": {"latency": ["1h", "1h"]}})
    write_toml(config_path, slow)
    count = 20
    async with (
        gateway_process(config_path) as gateway,
        raw_session(gateway.smpp_port, C.bind_transceiver) as raw,
    ):
        ids = []
        for i in range(2 * count):
            fields = submit_fields(to=f"4670123{i:04d}", registered_delivery=1)
            ids.append(
                (await raw.request(Pdu.make(C.submit_sm, 2 + i, **fields))).params["message_id"]
            )
        # All in one write, so they share a commit; the kill follows the last answer.
        changes = [
            Pdu.make(C.cancel_sm, 100 + i, message_id=ids[i], source_addr="Acme")
            for i in range(count)
        ] + [
            Pdu.make(C.replace_sm, 200 + i, message_id=ids[count + i], short_message=b"replaced")
            for i in range(count)
        ]
        await raw.send_bytes(b"".join(encode(pdu) for pdu in changes))
        answers = [await raw.next() for _ in changes]
        gateway.process.send_signal(signal.SIGKILL)
        assert await gateway.process.wait() == -signal.SIGKILL
        assert all(a.command_status == CommandStatus.ESME_ROK for a in answers)

    write_toml(config_path, base_config(tmp_path))  # fast again: resumed messages deliver
    async with aiohttp.ClientSession() as http, gateway_process(config_path) as gateway:
        await gateway.line_with(f"network.resumed count={count}")
        async with raw_session(gateway.smpp_port, C.bind_receiver) as receiver:
            outcomes: dict[TlvValue, bytes] = {}
            while len(outcomes) < 2 * count:
                deliver = await receiver.next()
                stat = deliver.body(DeliverSm)["short_message"].split(b"stat:")[1][:7]
                outcomes[deliver.tlvs[Tag.receipted_message_id]] = stat
                await receiver.send(
                    Pdu.make(C.deliver_sm_resp, deliver.sequence_number, message_id="")
                )
        assert outcomes == {i: b"DELETED" for i in ids[:count]} | {
            i: b"DELIVRD" for i in ids[count:]
        }
        for i in (0, count):
            async with http.get(
                f"{gateway.url}/v1/simulator/handsets/+4670123{i:04d}/messages", headers=HEADERS
            ) as response:
                inbox = (await response.json())["messages"]
            assert [m["body"] for m in inbox] == ([] if i < count else ["replaced"])


async def test_receipts_a_receiver_never_acknowledged_survive_sigkill(tmp_path: Path) -> None:
    config_path = tmp_path / "config.toml"
    write_toml(config_path, base_config(tmp_path))
    count = 20
    async with (
        gateway_process(config_path) as gateway,
        raw_session(gateway.smpp_port, C.bind_receiver) as silent,
        raw_session(gateway.smpp_port, C.bind_transmitter) as transmitter,
    ):
        ids = set()
        for i in range(count):
            fields = submit_fields(to=f"4670123{i:04d}", registered_delivery=1)
            ids.add(
                (await transmitter.request(Pdu.make(C.submit_sm, 2 + i, **fields))).params[
                    "message_id"
                ]
            )
        receipted = {(await silent.next()).tlvs[Tag.receipted_message_id] for _ in range(count)}
        assert receipted == ids  # delivered to the receiver, never acknowledged
        gateway.process.send_signal(signal.SIGKILL)
        assert await gateway.process.wait() == -signal.SIGKILL

    async with (
        gateway_process(config_path) as gateway,
        raw_session(gateway.smpp_port, C.bind_receiver) as receiver,
    ):
        again: set[TlvValue] = set()
        while len(again) < count:
            deliver = await receiver.next()
            again.add(deliver.tlvs[Tag.receipted_message_id])
            await receiver.send(Pdu.make(C.deliver_sm_resp, deliver.sequence_number, message_id=""))
        assert again == ids


@pytest.mark.slow
async def test_scheduled_messages_survive_sigkill(
    tmp_path: Path, callback_receiver: CallbackReceiver
) -> None:
    """Acknowledged schedules, a cancel and a replace_sm's new time all outlive a SIGKILL."""
    config_path = tmp_path / "config.toml"
    write_toml(config_path, base_config(tmp_path))
    now = datetime.now(UTC)
    soon, later = (now + timedelta(seconds=4)).isoformat(), (now + timedelta(hours=1)).isoformat()

    async def scheduled(http: aiohttp.ClientSession, url: str, i: int, send_at: str) -> str:
        document = {
            "to": f"+4670123{i:04d}",
            "from": "Acme",
            "body": f"scheduled body {i}",
            "callback_url": callback_receiver.url,
            "send_at": send_at,
        }
        async with http.post(f"{url}/v1/messages", json=document, headers=HEADERS) as response:
            assert response.status == 202
            assert (await response.json())["status"] == "scheduled"
            return str((await response.json())["id"])

    async with aiohttp.ClientSession() as http:
        async with gateway_process(config_path) as gateway:
            soon_ids = [await scheduled(http, gateway.url, i, soon) for i in range(5)]
            waiting, cancelled, moved = [
                await scheduled(http, gateway.url, i, later) for i in range(5, 8)
            ]
            async with http.post(
                f"{gateway.url}/v1/messages/{cancelled}/cancel", headers=HEADERS
            ) as response:
                assert response.status == 200
            async with raw_session(gateway.smpp_port, C.bind_transceiver) as raw:
                replaced = await raw.request(
                    Pdu.make(
                        C.replace_sm,
                        2,
                        message_id=moved,
                        short_message=b"moved",
                        schedule_delivery_time="000000000004000R",
                    )
                )
                assert replaced.command_status == CommandStatus.ESME_ROK
                _, waiting_before = await _get(http, gateway.url, waiting)
                gateway.process.send_signal(signal.SIGKILL)
                assert await gateway.process.wait() == -signal.SIGKILL

        async with gateway_process(config_path) as gateway:
            await gateway.line_with("network.resumed count=7")
            delivered: set[str] = set()
            while len(delivered) < 6:
                callback = await callback_receiver.next()  # the cancel's too, deleted
                if callback["status"] == "delivered":
                    delivered.add(callback["id"])
            assert delivered == {*soon_ids, moved}
            status, waiting_after = await _get(http, gateway.url, waiting)
            assert (status, waiting_after["status"]) == (200, "scheduled")
            assert waiting_after["send_at"] == waiting_before["send_at"]
            assert (await _get(http, gateway.url, cancelled))[1]["status"] == "deleted"
            async with http.get(
                f"{gateway.url}/v1/simulator/handsets/+46701230007/messages", headers=HEADERS
            ) as response:
                assert [m["body"] for m in (await response.json())["messages"]] == ["moved"]


async def _get(http: aiohttp.ClientSession, url: str, message_id: str) -> tuple[int, Any]:
    async with http.get(f"{url}/v1/messages/{message_id}", headers=HEADERS) as response:
        return response.status, await response.json()
