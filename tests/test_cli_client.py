"""``smsgw send``, ``inbox``, ``watch``, ``--version`` and the serve banner, on a terminal.

The commands run as the real ``python -m gateway`` process against a real gateway.
``watch`` and the plugin's waits follow ``GET /v1/events``; until that route is
merged they are checked against a small local app that serves the event-stream
contract's format (EVENTS_CONTRACT.md), which stays a valid check afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.server.appkeys import EVENTS
from gateway.server.cli import _parser
from gateway.server.cli_client import event_line
from gateway.server.client import GatewayClient, SseParser
from gateway.testing.harness import Waits, WaitTimeout
from tests.conftest import EVENT_TIMEOUT, RunningGateway, merged
from tests.test_admin import smsgw
from tests.test_process import gateway_process, write_toml

ROOT = Path(__file__).resolve().parent.parent
HANDSET = "+46701231001"


def client_config(tmp_path: Path, config: dict[str, Any], gateway: RunningGateway) -> Path:
    """The test's config with the running gateway's HTTP port, as a user's file would have."""
    port = int(gateway.url.rsplit(":", 1)[1])
    path = tmp_path / "client.toml"
    write_toml(path, merged(config, {"http": {"port": port}}))
    return path


async def test_send_then_inbox_shows_the_message(
    tmp_path: Path, config_dict: dict[str, Any], gateway: RunningGateway
) -> None:
    config_path = client_config(tmp_path, config_dict, gateway)
    finals = gateway.finals()
    status, out, err = await smsgw(config_path, "send", "--to", HANDSET, "--body", "Hi\nthere")
    assert (status, err) == (0, "")
    sent = json.loads(out)
    assert (sent["status"], sent["from"], sent["to"]) == ("accepted", "Acme", HANDSET)
    delivered = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    assert delivered.id == sent["id"]

    status, out, err = await smsgw(config_path, "inbox", HANDSET)
    assert (status, err) == (0, "")
    (line,) = out.splitlines()
    assert line.endswith("  Acme  received  Hi\\nthere")  # one line, the newline shown
    assert line.startswith(sent["submitted_at"][:10])
    status, out, _ = await smsgw(config_path, "inbox", HANDSET, "--json")
    assert json.loads(out)["messages"][0]["message_id"] == sent["id"]
    status, out, _ = await smsgw(config_path, "inbox", "+46701231002")
    assert (status, out) == (0, "+46701231002: no messages\n")


async def test_send_picks_the_tenant_and_sender(
    tmp_path: Path, config_dict: dict[str, Any], gateway: RunningGateway
) -> None:
    config_path = client_config(tmp_path, config_dict, gateway)
    status, out, _ = await smsgw(
        config_path, "send", "--tenant", "other", "--to", HANDSET, "--body", "x"
    )
    assert status == 0 and json.loads(out)["from"] == "Other"
    status, out, _ = await smsgw(
        config_path, "send", "--to", HANDSET, "--body", "x", "--from", "+46700000001"
    )
    assert status == 0 and json.loads(out)["from"] == "+46700000001"


async def test_a_refused_submit_is_one_line_with_its_code_and_exit_1(
    tmp_path: Path,
    config_dict: dict[str, Any],
    gateway: RunningGateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config_path = client_config(tmp_path, config_dict, gateway)
    status, out, err = await smsgw(
        config_path, "send", "--to", HANDSET, "--body", "x", "--from", "Nobody"
    )
    assert (status, out) == (1, "")
    assert err.startswith("smsgw: ") and err.endswith(" (unknown_sender)\n")
    assert len(err.splitlines()) == 1
    monkeypatch.setenv("SMSGW_API_KEY", "not-a-key-of-anyone")
    status, _, err = await smsgw(config_path, "send", "--to", HANDSET, "--body", "x")
    assert status == 1 and err.endswith("(unauthorized)\n")


async def test_usage_and_config_problems_exit_2(
    tmp_path: Path, config_dict: dict[str, Any]
) -> None:
    hashed = merged(config_dict, {})
    hashed["tenants"][1]["api_keys"] = ["sha256:" + "ab" * 32]
    config_path = tmp_path / "config.toml"
    write_toml(config_path, hashed)
    status, _, err = await smsgw(
        config_path, "send", "--tenant", "nobody", "--to", "1", "--body", "x"
    )
    assert (status, err) == (2, "smsgw: no tenant 'nobody' in the config (it has acme, other)\n")
    status, _, err = await smsgw(config_path, "inbox", HANDSET, "--tenant", "other")
    assert status == 2 and "has no API key in clear" in err
    status, _, err = await smsgw(config_path, "send", "--body", "x")
    assert status == 2 and "--to" in err


async def test_version(tmp_path: Path) -> None:
    status, out, _ = await smsgw(tmp_path / "unused.toml", "--version")
    assert (status, out) == (0, "smsgw 0.1.0\n")


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "a.toml", "inbox", HANDSET],
        ["inbox", HANDSET, "--config", "a.toml"],
        ["--config", "b.toml", "inbox", HANDSET, "--config", "a.toml"],
        ["--config", "a.toml", "audit", "verify"],
        ["serve", "--config", "a.toml"],
    ],
)
def test_config_is_taken_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert _parser().parse_args(argv).config == "a.toml"


def shipped_config(tmp_path: Path) -> Path:
    """config.toml as shipped, on free ports and with its files under tmp_path."""
    config = tomllib.loads((ROOT / "config.toml").read_text())
    config = merged(
        config,
        {
            "http": {"port": 0},
            "smpp": {"port": 0},
            "storage": {"path": str(tmp_path / "smsgw.sqlite3")},
            "privacy": {"key_file": str(tmp_path / "keys.json")},
        },
    )
    path = tmp_path / "config.toml"
    write_toml(path, config)
    return path


async def test_serve_banner_names_the_urls_and_only_the_demo_key(tmp_path: Path) -> None:
    async with gateway_process(shipped_config(tmp_path)) as gateway:
        docs = await gateway.line_with("banner.docs")
        assert await gateway.stop() == 0
    banner = [line for line in gateway.log if " banner." in line]
    assert [line.split()[3] for line in banner] == [
        "banner.http",
        "banner.smpp",
        "banner.admin",
        "banner.demo",
        "banner.docs",
    ]
    assert f"url={gateway.url} inbox={gateway.url}/ui/" in banner[0]
    assert f"address=127.0.0.1:{gateway.smpp_port}" in banner[1]
    assert f"url={gateway.url}/admin/v1" in banner[2]
    assert "tenant=demo api_key=demo-key" in banner[3]
    assert f"openapi={gateway.url}/openapi.json" in docs
    assert "demo-operator-token" not in "".join(gateway.log)


async def test_no_key_in_the_banner_of_another_config(
    tmp_path: Path, config_dict: dict[str, Any]
) -> None:
    config_path = tmp_path / "config.toml"
    write_toml(config_path, config_dict)
    async with gateway_process(config_path) as gateway:
        await gateway.line_with("banner.docs")
        assert await gateway.stop() == 0
    log = "".join(gateway.log)
    assert "banner.demo" not in log and "api_key" not in log


# --- the event stream, against a local app serving the contract's format --------------


def sse(event: dict[str, Any]) -> bytes:
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def status_event(number: int, message_id: str, status: str) -> dict[str, Any]:
    return {
        "id": str(number),
        "type": "message.status",
        "at": "2026-12-01T12:00:00.123Z",
        "message_id": message_id,
        "status": status,
        "error": None,
    }


class EventServer:
    """GET /v1/events as the contract has it: each connection gets the next batch, then ends."""

    def __init__(self) -> None:
        self.batches: asyncio.Queue[list[bytes]] = asyncio.Queue()
        self.requests: list[tuple[str | None, str | None]] = []  # (Last-Event-ID, ?after)
        self.statuses: dict[str, str] = {}
        self.status_asked = asyncio.Event()
        self.url = ""
        self.open_streams = 0

    def close(self) -> None:
        """End every stream still waiting for a batch, so the app can stop."""
        for _ in range(self.open_streams):
            self.batches.put_nowait([])

    async def events(self, request: web.Request) -> web.StreamResponse:
        assert request.headers["Authorization"] == "Bearer stream-key"
        self.requests.append((request.headers.get("Last-Event-ID"), request.query.get("after")))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": ping\n\n")
        self.open_streams += 1
        try:
            batch = await self.batches.get()
        finally:
            self.open_streams -= 1
        for chunk in batch:
            await response.write(chunk)
        return response  # the stream ends, as for a subscriber that fell behind

    async def message(self, request: web.Request) -> web.Response:
        message_id = request.match_info["id"]
        self.status_asked.set()
        return web.json_response({"id": message_id, "status": self.statuses[message_id]})


@pytest.fixture
async def event_server() -> AsyncIterator[EventServer]:
    server = EventServer()
    app = web.Application()
    app.router.add_get("/v1/events", server.events)
    app.router.add_get("/v1/messages/{id}", server.message)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        server.close()
        await runner.cleanup()


def test_sse_parser_follows_the_format() -> None:
    parser = SseParser()
    lines = [
        ": ping",
        "",
        "id: 7",
        "event: message.status",
        'data: {"id": "7",',
        'data: "type": "x"}',
    ]
    assert [parser.feed(line + "\n") for line in lines] == [None] * len(lines)
    assert parser.feed("\n") == {"id": "7", "type": "x"}
    assert parser.last_id == "7"
    for line in ["id: 0", 'data: {"id": "0", "type": "gap", "after": "3"}']:
        parser.feed(line)
    assert parser.feed("") == {"id": "0", "type": "gap", "after": "3"}
    assert parser.last_id == "7"  # resuming after a gap must not ask for it again


async def test_the_stream_is_resumed_with_the_last_event_id_when_it_ends(
    event_server: EventServer,
) -> None:
    first = [sse(status_event(1, "m1", "enroute")), sse(status_event(2, "m1", "delivered"))]
    # The second connection ends mid-event: that one is sent again on the third.
    torn = sse(status_event(3, "m2", "enroute"))[:-1]
    for batch in (first, [torn], [sse(status_event(3, "m2", "enroute"))]):
        event_server.batches.put_nowait(batch)
    async with GatewayClient(event_server.url, "stream-key") as client:
        stream = client.events(after="now")
        seen = [await asyncio.wait_for(anext(stream), EVENT_TIMEOUT) for _ in range(3)]
        await stream.aclose()
    assert [(e["id"], e["status"]) for e in seen] == [
        ("1", "enroute"),
        ("2", "delivered"),
        ("3", "enroute"),
    ]
    assert event_server.requests == [(None, "now"), ("2", None), ("2", None)]


async def test_watch_prints_one_line_per_event_and_follows_reconnects(
    event_server: EventServer, tmp_path: Path, config_dict: dict[str, Any]
) -> None:
    event_server.batches.put_nowait([sse(status_event(1, "m1", "enroute"))])
    event_server.batches.put_nowait([sse(status_event(2, "m1", "delivered"))])
    config_path = tmp_path / "config.toml"
    write_toml(config_path, config_dict)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "watch", "--url", event_server.url,
        "--key", "stream-key", "--config", str(config_path),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    try:
        lines = [
            (await asyncio.wait_for(process.stdout.readline(), EVENT_TIMEOUT)).decode()
            for _ in range(2)
        ]
    finally:
        process.kill()
        await process.wait()
    assert lines == [
        "12:00:00.123 message.status message_id=m1 status=enroute\n",
        "12:00:00.123 message.status message_id=m1 status=delivered\n",
    ]
    assert event_server.requests[1] == ("1", None)


def test_event_lines_are_coloured_for_a_terminal_only() -> None:
    event = status_event(5, "m5", "undeliverable")
    assert "\033[" not in event_line(event, colour=False)
    coloured = event_line(event, colour=True)
    assert "status=\033[31mundeliverable\033[0m" in coloured
    assert event_line({"id": "6", "type": "chaos.changed", "settings": {"a": 1}}, False) == (
        'chaos.changed settings={"a": 1}'
    )


async def test_a_wait_checks_the_state_then_wakes_on_the_event(event_server: EventServer) -> None:
    event_server.statuses["m9"] = "enroute"
    gate: asyncio.Queue[list[bytes]] = event_server.batches
    async with GatewayClient(event_server.url, "stream-key") as client:
        waits = Waits(client)
        waiting = asyncio.create_task(waits.wait_for_status("m9", "delivered", EVENT_TIMEOUT))
        await asyncio.wait_for(event_server.status_asked.wait(), EVENT_TIMEOUT)
        assert not waiting.done()
        event_server.statuses["m9"] = "delivered"
        gate.put_nowait(
            [sse(status_event(1, "other", "delivered")), sse(status_event(2, "m9", "delivered"))]
        )
        document = await asyncio.wait_for(waiting, EVENT_TIMEOUT)
        assert document["status"] == "delivered"
        assert event_server.requests[0] == (None, "0")  # from the gateway's first event

        event_server.statuses["m10"] = "undeliverable"
        with pytest.raises(AssertionError, match="is undeliverable, not delivered: final"):
            await waits.wait_for_status("m10", "delivered", EVENT_TIMEOUT)
        event_server.statuses["m11"] = "enroute"
        with pytest.raises(WaitTimeout, match=r"m11 is enroute, not delivered within 0\.2 s"):
            await waits.wait_for_status("m11", "delivered", 0.2)
        await waits.events.stop()


async def test_watch_follows_a_real_messages_status_changes(
    tmp_path: Path, config_dict: dict[str, Any], gateway: RunningGateway
) -> None:
    config_path = client_config(tmp_path, config_dict, gateway)
    # As an earlier watch would: the tenant's events are kept from its first follower on.
    gateway.app[EVENTS].subscribe("acme").close()
    after = str(gateway.app[EVENTS].last_id)  # so nothing sent below can be missed
    sent = await (await gateway.send()).json()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "watch", "--json", "--after", after,
        "--config", str(config_path),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    statuses: list[str] = []
    try:
        while "delivered" not in statuses:
            line = await asyncio.wait_for(process.stdout.readline(), EVENT_TIMEOUT)
            event = json.loads(line)
            if event.get("message_id") == sent["id"]:
                statuses.append(event["status"])
    finally:
        process.kill()
        await process.wait()
    assert statuses == ["accepted", "enroute", "delivered"]
