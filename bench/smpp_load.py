"""SMPP end to end: submits per second through the real gateway, against a bare responder.

Starts `smsgw serve` as its own process (SQLite under a temp dir, delivery latency
1 ms, receipts on) and a bare asyncio SMPP responder that only answers, in another
process; then one load client in this process binds as a transceiver to each in
turn and keeps ``--window`` submit_sm in flight until ``--messages`` are answered
and, for the gateway, every delivery receipt has come back (and been answered).

    .venv/bin/python bench/smpp_load.py [--messages 100000] [--window 2000]

Prints messages/s for both and their ratio, and the CPU time each server process
spent per message, which varies less than rates on a shared machine. With
``--subscriber`` a second gateway runs the same load while one client follows its
event stream (every event), and the figure is set beside the one without.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import re
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp

from smpp.framer import Framer
from smpp.pdu import CommandId, Pdu, encode

HEADER = struct.Struct(">IIII")
RESP = 0x80000000
PLACEHOLDER = b"46799999999"
# The load clients' bind, as CONFIG's tenant.
BIND = encode(Pdu.make(CommandId.bind_transceiver, 1, system_id="bench", password="bench"))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def submit_template() -> tuple[bytearray, int]:
    """An encoded submit_sm asking for a receipt, and where its destination digits are."""
    pdu = Pdu.make(
        CommandId.submit_sm,
        1,
        source_addr_ton=5,
        source_addr="Bench",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=PLACEHOLDER.decode(),
        registered_delivery=1,
        short_message=b"benchmark message",
    )
    frame = bytearray(encode(pdu))
    return frame, frame.index(PLACEHOLDER)


class Receipts:
    """Receipts back over all of a tenant's sessions: the gateway may send one to any of them."""

    def __init__(self, expected: int) -> None:
        self.expected, self.count = expected, 0
        self.all_back = asyncio.get_running_loop().create_future()
        self.finished = 0.0

    def add(self, receipts: int, refused: int) -> None:
        """A refused submit has no receipt to wait for."""
        self.count += receipts
        self.expected -= refused
        if self.count >= self.expected and not self.all_back.done():
            self.finished = time.perf_counter()
            self.all_back.set_result(None)


class LoadClient(asyncio.Protocol):
    """Keeps ``window`` submits outstanding; answers every deliver_sm it gets.

    Destinations are +4670 and seven digits counting from ``first``, so sessions
    given apart ranges never share a recipient (each is a consent-cache miss).
    """

    def __init__(self, total: int, window: int, receipts: Receipts | None, first: int = 0) -> None:
        self.total, self.window, self.receipts, self.first = total, window, receipts, first
        self.framer = Framer()
        self.template, self.dest_at = submit_template()
        self.sent = self.answered = self.failed = 0
        self.bound = asyncio.get_running_loop().create_future()
        self.done = asyncio.get_running_loop().create_future()
        self.started = self.submits_done = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(BIND)

    def send_more(self) -> None:
        assert self.transport is not None
        burst = []
        while self.sent < self.total and self.sent - self.answered < self.window:
            self.sent += 1
            frame = self.template
            struct.pack_into(">I", frame, 12, self.sent + 1)
            frame[self.dest_at : self.dest_at + 11] = b"4670%07d" % (self.first + self.sent)
            burst.append(bytes(frame))
        if burst:
            self.transport.write(b"".join(burst))

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.framer.receive_data(data)
        replies, refused = [], 0
        while (frame := self.framer.next_frame()) is not None:
            _, command, status, sequence = HEADER.unpack_from(frame)
            if command == CommandId.submit_sm_resp:
                self.answered += 1
                refused += status != 0
                if self.answered == self.total:
                    self.submits_done = time.perf_counter()
                    self.done.set_result(None)
            elif command == CommandId.deliver_sm:
                replies.append(HEADER.pack(17, CommandId.deliver_sm_resp, 0, sequence) + b"\0")
            elif command == CommandId.bind_transceiver_resp:
                self.started = time.perf_counter()
                self.bound.set_result(status)
        self.failed += refused
        if replies:
            self.transport.write(b"".join(replies))
        if self.receipts is not None and (replies or refused):
            self.receipts.add(len(replies), refused)
        if self.bound.done():
            self.send_more()


async def load(
    port: int, total: int, window: int, receipts: Receipts | None, first: int = 0
) -> LoadClient:
    """One session's submits all answered and, with ``receipts``, every receipt back."""
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: LoadClient(total, window, receipts, first), "127.0.0.1", port
    )
    if await client.bound != 0:
        raise SystemExit("bind refused")
    client.send_more()
    await asyncio.wait_for(client.done, 600)
    if receipts is not None:
        await asyncio.wait_for(receipts.all_back, 600)
    assert client.transport is not None
    client.transport.close()
    return client


class BareResponder(asyncio.Protocol):
    """Answers binds and submits with hand-packed responses; nothing else."""

    def __init__(self) -> None:
        self.framer = Framer()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.framer.receive_data(data)
        out = []
        while (frame := self.framer.next_frame()) is not None:
            _, command, _, sequence = HEADER.unpack_from(frame)
            body = b"bare\0" if command != CommandId.submit_sm else b"%016x\0" % sequence
            out.append(HEADER.pack(16 + len(body), command | RESP, 0, sequence) + body)
        self.transport.write(b"".join(out))


def run_bare(ports: multiprocessing.Queue[int]) -> None:
    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(BareResponder, "127.0.0.1", 0)
        ports.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(serve())


CONFIG = """
[http]
port = 0
[smpp]
port = 0
[storage]
path = "{dir}/bench.sqlite3"
[privacy]
key_file = "{dir}/keys.json"
[simulator]
latency = ["1ms", "1ms"]
[[tenants]]
id = "bench"
senders = ["Bench"]
api_keys = ["bench-key"]
smpp = {{ system_id = "bench", password = "bench", max_sessions = 64 }}
"""


@contextlib.asynccontextmanager
async def gateway_process(
    prepare: Callable[[Path], Awaitable[None]] | None = None,
    start_lines: list[str] | None = None,
    config_text: str = CONFIG,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str, int]]:
    """`smsgw serve` on CONFIG in a temp dir: the process, its HTTP URL and SMPP port.

    ``prepare`` gets the config file's path before the gateway starts, to fill its
    database (bench.curves loads a consent registry so); ``start_lines`` gets the log
    lines read up to the listening ones (the rest stay on the process's stderr).
    ``config_text`` is CONFIG or a variant of it (bench.scale_out's, on PostgreSQL),
    ``{dir}`` in it the temp dir.
    """
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(config_text.format(dir=tmp))
        if prepare is not None:
            await prepare(config)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--config", str(config),
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            url, port = await asyncio.wait_for(listening(process, start_lines), 30)
            yield process, url, port
        finally:
            process.terminate()
            await process.wait()


async def listening(
    process: asyncio.subprocess.Process, lines: list[str] | None = None
) -> tuple[str, int]:
    """The HTTP URL and SMPP port from the gateway's listening lines (SMPP comes first);
    every line read is appended to ``lines``."""
    assert process.stderr is not None
    port = 0
    while line := (await process.stderr.readline()).decode():
        if lines is not None:
            lines.append(line)
        if match := re.search(r"smpp\.listening host=\S+ port=(\d+)", line):
            port = int(match.group(1))
        elif match := re.search(r"http\.listening host=(\S+) port=(\d+)", line):
            return f"http://{match.group(1)}:{match.group(2)}", port
    raise SystemExit("the gateway exited")


# Events the follower has read, as a list so the task can count into it.
FOLLOWED = [0]
_EVENT_LINE = b"\nevent: "


async def follow_events(url: str, subscribed: asyncio.Event) -> None:
    """Follow the tenant's event stream (GET /v1/events) and count what arrives.

    It reads every byte, but counts ``event:`` lines in whole chunks rather than
    iterating line by line (four lines an event): it shares the cores with the load
    client and the gateway, and a line iterator's cost showed in the gateway's figure.
    """
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/v1/events", headers={"Authorization": "Bearer bench-key"}) as response,
    ):
        subscribed.set()  # the gateway subscribed before it sent the headers
        tail = b"\n"  # the stream's first line has no line break before it
        async for chunk in response.content.iter_any():
            # The last bytes before a chunk may begin an event line, but not hold it
            # whole, so none is counted twice.
            data = tail + chunk
            FOLLOWED[0] += data.count(_EVENT_LINE)
            tail = data[-(len(_EVENT_LINE) - 1) :]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=2000)
    parser.add_argument(
        "--subscriber",
        action="store_true",
        help="run the gateway again with one follower of its event stream, and compare",
    )
    args = parser.parse_args()

    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    bare = multiprocessing.Process(target=run_bare, args=(ports,), daemon=True)
    bare.start()
    bare_port = ports.get(timeout=10)
    assert bare.pid is not None
    cpu_before = cpu_seconds(bare.pid)
    bare_client = await load(bare_port, args.messages, args.window, None)
    bare_cpu = cpu_seconds(bare.pid) - cpu_before
    bare.terminate()
    bare_rate = args.messages / (bare_client.submits_done - bare_client.started)

    async with gateway_process() as (process, _, port):
        cpu_before = cpu_seconds(process.pid)
        receipts = Receipts(args.messages)
        client = await load(port, args.messages, args.window, receipts)
        gateway_cpu = cpu_seconds(process.pid) - cpu_before
    if args.subscriber:
        async with gateway_process() as (process, url, port):
            subscribed = asyncio.Event()
            follower = asyncio.create_task(follow_events(url, subscribed))
            await asyncio.wait_for(subscribed.wait(), 30)
            cpu_before = cpu_seconds(process.pid)
            followed_receipts = Receipts(args.messages)
            followed = await load(port, args.messages, args.window, followed_receipts)
            followed_cpu = cpu_seconds(process.pid) - cpu_before
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    submits = args.messages / (client.submits_done - client.started)
    end_to_end = args.messages / (receipts.finished - client.started)
    print(f"messages: {args.messages}, window: {args.window}")
    for what, rate in (
        ("bare responder, submit_sm_resp", bare_rate),
        ("gateway, submit_sm_resp", submits),
        ("gateway, with receipts", end_to_end),
    ):
        print(f"{what:32} {rate:10,.0f} messages/s  {rate / bare_rate:.3f}x bare")
    per_message = [cpu * 1e6 / args.messages for cpu in (bare_cpu, gateway_cpu)]
    # CPU time counts in clock ticks (10 ms): a short run can leave the bare responder at 0.
    ratio = f"{per_message[1] / per_message[0]:.0f}x" if bare_cpu else "bare below one clock tick"
    print(
        f"CPU per message: bare {per_message[0]:.1f} us, gateway {per_message[1]:.1f} us ({ratio})"
    )
    print(f"refused: {client.failed}, receipts: {receipts.count}")
    if args.subscriber:
        rate = args.messages / (followed_receipts.finished - followed.started)
        print(
            f"{'gateway, receipts, a follower':32} {rate:10,.0f} messages/s"
            f"  {rate / bare_rate:.3f}x bare, {rate / end_to_end:.2f}x without the follower;"
            f" CPU {followed_cpu * 1e6 / args.messages:.1f} us a message, {FOLLOWED[0]:,} events"
            f" streamed, refused {followed.failed}"
        )


if __name__ == "__main__":
    asyncio.run(main())
