"""Soak: steady SMPP and HTTP traffic through the real gateway, watching what grows.

Starts `smsgw serve` as its own process (bench/smpp_load.py's start-up, on a temp
config), then for ``--minutes`` drives ``--smpp-rate`` submit_sm a second (receipts
requested, every deliver_sm answered) over one transceiver and ``--http-rate`` POST
/v1/messages a second, each message to a recipient not used before. Every
``--interval`` seconds it prints the gateway's RSS and open fds, the database and
WAL size, submit_sm_resp and HTTP latency percentiles over that interval, the
gateway's CPU (a share of one core) and the time its threads were runnable but
waited for a core: on a shared machine that wait, not the gateway, is most of the tail.

    .venv/bin/python -m bench.soak [--minutes 10] [--smpp-rate 500] [--http-rate 100]

(from the repository root, as a module, so that it imports bench.smpp_load.)

A steady state shows flat RSS, fds and latency; the database grows with the
traffic log, the WAL should not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import struct
import time
from pathlib import Path

import aiohttp

from bench.smpp_load import BIND, HEADER, cpu_seconds, gateway_process, submit_template
from smpp.framer import Framer
from smpp.pdu import CommandId

HEADERS = {"Authorization": "Bearer bench-key"}
# Recipients never repeat within a run: SMPP from +4671..., HTTP from +4672...
SMPP_PREFIX, HTTP_PREFIX = b"4671", "+4672"


class SoakClient(asyncio.Protocol):
    """Sends submit_sm on demand, times each answer and answers every deliver_sm."""

    def __init__(self) -> None:
        self.framer = Framer()
        self.template, self.dest_at = submit_template()
        self.sent_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.sequence = 1
        self.failed = self.receipts = 0
        self.bound = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(BIND)

    def submit(self, count: int) -> None:
        assert self.transport is not None
        burst, now = [], time.perf_counter()
        for _ in range(count):
            self.sequence += 1
            frame = self.template
            struct.pack_into(">I", frame, 12, self.sequence)
            frame[self.dest_at : self.dest_at + 11] = SMPP_PREFIX + b"%07d" % self.sequence
            burst.append(bytes(frame))
            self.sent_at[self.sequence] = now
        self.transport.write(b"".join(burst))

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.framer.receive_data(data)
        replies, now = [], time.perf_counter()
        while (frame := self.framer.next_frame()) is not None:
            _, command, status, sequence = HEADER.unpack_from(frame)
            if command == CommandId.submit_sm_resp:
                self.latencies.append(now - self.sent_at.pop(sequence))
                self.failed += status != 0
            elif command == CommandId.deliver_sm:
                self.receipts += 1
                replies.append(HEADER.pack(17, CommandId.deliver_sm_resp, 0, sequence) + b"\0")
            elif command == CommandId.bind_transceiver_resp and not self.bound.done():
                self.bound.set_result(status)
        if replies:
            self.transport.write(b"".join(replies))


class HttpDriver:
    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url, self.http = url, http
        self.latencies: list[float] = []
        self.sent = self.failed = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def submit(self, count: int) -> None:
        for _ in range(count):
            self.sent += 1
            task = asyncio.create_task(self.post(f"{HTTP_PREFIX}{self.sent:07d}"))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def post(self, to: str) -> None:
        started = time.perf_counter()
        document = {"to": to, "from": "Bench", "body": "soak message"}
        async with self.http.post(f"{self.url}/v1/messages", json=document, headers=HEADERS) as r:
            await r.read()
            self.failed += r.status != 202
        self.latencies.append(time.perf_counter() - started)


def percentiles(samples: list[float]) -> str:
    if len(samples) < 2:
        return "   -- /   -- ms"
    cuts = statistics.quantiles(samples, n=100)
    return f"{cuts[49] * 1000:5.1f} / {cuts[98] * 1000:5.1f} ms"


def config_path(pid: int) -> Path:
    """The --config argument of the gateway process (its temp dir holds the database)."""
    arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return Path(arguments[arguments.index(b"--config") + 1].decode())


def run_queue_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a core (schedstat).

    On a shared machine this is the neighbours' share of the latency, which no
    change to the gateway removes.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def process_figures(pid: int, database: Path) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    sizes = [Path(f"{database}{suffix}") for suffix in ("", "-wal")]
    db, wal = (p.stat().st_size / 2**20 if p.exists() else 0.0 for p in sizes)
    return f"rss {rss / 1024:6.1f} MB  fds {fds:3}  db {db:7.1f} MB  wal {wal:6.1f} MB"


async def drive(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    async with gateway_process() as (process, url, port):
        database = config_path(process.pid).parent / "bench.sqlite3"  # as CONFIG says
        _, smpp = await loop.create_connection(SoakClient, "127.0.0.1", port)
        if await smpp.bound != 0:
            raise SystemExit("bind refused")
        async with aiohttp.ClientSession() as http:
            driver = HttpDriver(url, http)
            started = loop.time()
            end = started + args.minutes * 60
            next_report = started + args.interval
            tick = 0.01
            print(f"soak: {args.smpp_rate} SMPP + {args.http_rate} HTTP messages/s,")
            print(f"{args.minutes} minutes; percentiles are p50 / p99 over each interval")
            print(f"     {'elapsed':>7}  {'process':52}  submit_sm_resp       HTTP 202")
            print(f"     {'':7}  {process_figures(process.pid, database)}")

            last = [started, cpu_seconds(process.pid), run_queue_seconds(process.pid)]

            def report(now: float) -> None:
                # Over the interval, as shares of one core: the gateway's CPU, and the
                # time its threads were ready to run but waited for a core.
                taken = [now, cpu_seconds(process.pid), run_queue_seconds(process.pid)]
                busy, waited = (
                    (b - a) / (now - last[0]) for a, b in zip(last[1:], taken[1:], strict=True)
                )
                last[:] = taken
                print(
                    f"     {now - started:6.0f}s  {process_figures(process.pid, database)}"
                    f"  {percentiles(smpp.latencies)}  {percentiles(driver.latencies)}"
                    f"  cpu {busy:4.0%} waited {waited:4.0%}",
                    flush=True,
                )
                smpp.latencies.clear()
                driver.latencies.clear()

            while (now := loop.time()) < end:
                # Whatever the schedule owes by now, so the rates hold however the loop lags.
                smpp.submit(int(args.smpp_rate * (now - started)) - (smpp.sequence - 1))
                driver.submit(int(args.http_rate * (now - started)) - driver.sent)
                if now >= next_report:
                    next_report += args.interval
                    report(now)
                await asyncio.sleep(max(0.0, tick - (loop.time() - now)))
            report(loop.time())
            await asyncio.gather(*driver.tasks)
        print(
            f"sent: {smpp.sequence - 1} SMPP ({smpp.failed} refused, {smpp.receipts} receipts),"
            f" {driver.sent} HTTP ({driver.failed} refused)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--smpp-rate", type=int, default=500)
    parser.add_argument("--http-rate", type=int, default=100)
    parser.add_argument("--interval", type=float, default=30.0)
    asyncio.run(drive(parser.parse_args()))


if __name__ == "__main__":
    main()
