"""The curves: SMPP throughput against sessions and window, HTTP against registry size.

Every point starts its own `smsgw serve` (bench/smpp_load.py's start-up: SQLite in a
temp dir, delivery latency 1 ms), so no point inherits another's database or caches.

- sessions (1, 4, 16, 64) at window 64, then window (1, 10, 64, 500) on one session:
  bench.smpp_load's load client on each transceiver, receipts requested, until
  every submit_sm is answered and every receipt has come back; the messages are
  shared out between the sessions, each recipient used once.
- consent registry size (10^4, 10^5, 10^6 known subjects): the registry is filled
  before the gateway starts, in one transaction through the store's own consent
  module; then single POST /v1/messages, 64 in flight, each to a number the
  registry has never seen, until all are accepted and /metrics counts them delivered.

Each point prints messages/s end to end and the gateway's CPU time per message.

    .venv/bin/python -m bench.curves [--quick] [--messages 20000] [--http-messages 10000]
        [--sizes 10000 100000 1000000] [--markdown curves.md]

(from the repository root, as a module, so that it imports bench.smpp_load.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.http_batch import post_all, wait_delivered
from bench.smpp_load import Receipts, cpu_seconds, gateway_process, load
from gateway.config import load_config
from gateway.metrics import Metrics
from gateway.storage.base import NewConsentRow
from gateway.store import Store

SESSIONS = (1, 4, 16, 64)
WINDOWS = (1, 10, 64, 500)
SIZES = (10_000, 100_000, 1_000_000)
SESSIONS_WINDOW = 64
# A table's row, formatted.
Row = tuple[str, ...]
HTTP_CONCURRENCY = 64
# --quick: enough messages that each point's CPU time spans a few clock ticks.
QUICK_MESSAGES, QUICK_HTTP_MESSAGES, QUICK_SIZES = 2_000, 1_000, (1_000, 10_000, 100_000)


@dataclass(frozen=True)
class Curve:
    title: str
    columns: tuple[str, ...]
    rows: list[Row]

    def text(self) -> str:
        table = (self.columns, *self.rows)
        widths = [max(len(cell) for cell in column) for column in zip(*table, strict=True)]
        lines = [self.title]
        for row in table:
            cells = (cell.rjust(width) for cell, width in zip(row, widths, strict=True))
            lines.append("  ".join(cells))
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "---:|" * len(self.columns))
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


async def smpp_point(sessions: int, window: int, messages: int) -> Row:
    """One gateway, ``sessions`` transceivers sharing ``messages``: the curve's row."""
    share = max(1, messages // sessions)
    async with gateway_process() as (process, _, port):
        cpu_before = cpu_seconds(process.pid)
        receipts = Receipts(share * sessions)
        clients = await asyncio.gather(
            *(load(port, share, window, receipts, first=i * share) for i in range(sessions))
        )
        cpu = cpu_seconds(process.pid) - cpu_before
    total = share * sessions
    started = min(client.started for client in clients)
    submits = total / (max(client.submits_done for client in clients) - started)
    end_to_end = total / (receipts.finished - started)
    refused = sum(client.failed for client in clients)
    return (
        str(sessions),
        str(window),
        f"{total:,}",
        f"{submits:,.0f}",
        f"{end_to_end:,.0f}",
        f"{cpu * 1e6 / total:.0f}",
        str(refused),
    )


def filler_subjects(size: int) -> list[NewConsentRow]:
    """``size`` opted-out subjects, pseudonym-shaped (``p1:`` and 128 random bits).

    In subject order, so the insert appends to the subject index instead of
    splitting its pages at random: 10^6 rows fill in 9 s rather than 45 s.
    """
    rng = random.Random(size)
    subjects = sorted(f"p1:{rng.getrandbits(128):032x}" for _ in range(size))
    return [("bench", subject, "opted_out", None, None, "import", "", 0.0) for subject in subjects]


async def registry_point(size: int, messages: int) -> Row:
    fill_seconds = 0.0

    async def fill(config_path: Path) -> None:
        nonlocal fill_seconds
        started = time.perf_counter()
        store = await Store.open(load_config(config_path).storage, Metrics())
        try:  # one unit: one executemany in one transaction
            await store.commit("bench.fill", store.consent.append(filler_subjects(size)))
        finally:
            await store.close()
        fill_seconds = time.perf_counter() - started

    bodies = [
        json.dumps({"to": f"+4673{i:07d}", "from": "Bench", "body": "benchmark message"}).encode()
        for i in range(messages)
    ]
    start_lines: list[str] = []
    async with gateway_process(fill, start_lines) as (process, url, _):
        # Until the registry's filter of known subjects is built (in the background),
        # lookups of new numbers still read the database: measure after it, as it runs.
        build_seconds = await asyncio.wait_for(filter_built(process, start_lines), 600)
        cpu_before = cpu_seconds(process.pid)
        started = time.perf_counter()
        accepted_seconds = await post_all(url, "/v1/messages", bodies, HTTP_CONCURRENCY)
        await asyncio.wait_for(wait_delivered(url, messages), 600)
        delivered_seconds = time.perf_counter() - started
        cpu = cpu_seconds(process.pid) - cpu_before
    return (
        f"{size:,}",
        f"{fill_seconds:.2f}",
        f"{build_seconds:.2f}",
        f"{messages:,}",
        f"{messages / accepted_seconds:,.0f}",
        f"{messages / delivered_seconds:,.0f}",
        f"{cpu * 1e6 / messages:.0f}",
    )


SMPP_COLUMNS = (
    "sessions",
    "window",
    "messages",
    "submit_sm_resp/s",
    "msg/s with receipts",
    "server CPU µs/msg",
    "refused",
)


async def filter_built(process: asyncio.subprocess.Process, start_lines: list[str]) -> float:
    """Seconds the gateway took to build its filter of known subjects, from its log line
    (among the start-up lines already read, for a small registry, or still to come)."""
    assert process.stderr is not None
    for line in start_lines:
        if match := _FILTER_BUILT.search(line):
            return float(match.group(1))
    while line := (await process.stderr.readline()).decode():
        if match := _FILTER_BUILT.search(line):
            return float(match.group(1))
    raise SystemExit("the gateway exited before its consent filter was built")


_FILTER_BUILT = re.compile(r"registry\.filter_built .*seconds=([0-9.]+)")


REGISTRY_COLUMNS = (
    "known subjects",
    "fill s",
    "filter build s",
    "messages",
    "accepted/s",
    "delivered/s",
    "server CPU µs/msg",
)


async def curves(messages: int, http_messages: int, sizes: list[int]) -> list[Curve]:
    """Measure the three curves, printing each table as soon as it is complete."""
    results = []

    async def curve(
        title: str, columns: tuple[str, ...], points: list[Coroutine[Any, Any, Row]]
    ) -> None:
        rows = [await point for point in points]  # one at a time: each has the machine
        results.append(Curve(title, columns, rows))
        print(results[-1].text() + "\n", flush=True)

    await curve(
        f"SMPP against sessions (window {SESSIONS_WINDOW})",
        SMPP_COLUMNS,
        [smpp_point(n, SESSIONS_WINDOW, messages) for n in SESSIONS],
    )
    await curve(
        "SMPP against window (one session)",
        SMPP_COLUMNS,
        [smpp_point(1, window, messages) for window in WINDOWS],
    )
    await curve(
        f"HTTP single submits against consent registry size ({HTTP_CONCURRENCY} in flight)",
        REGISTRY_COLUMNS,
        [registry_point(size, http_messages) for size in sizes],
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run at small sizes")
    parser.add_argument("--messages", type=int, help="SMPP messages a point (20,000)")
    parser.add_argument("--http-messages", type=int, help="HTTP messages a point (10,000)")
    parser.add_argument("--sizes", type=int, nargs="+", help="known subjects a point")
    parser.add_argument("--markdown", type=Path, help="also write the tables here as Markdown")
    args = parser.parse_args()
    messages = args.messages or (QUICK_MESSAGES if args.quick else 20_000)
    http_messages = args.http_messages or (QUICK_HTTP_MESSAGES if args.quick else 10_000)
    sizes = args.sizes or list(QUICK_SIZES if args.quick else SIZES)
    if min(messages, http_messages) < 1 or min(sizes) < 0:
        parser.error("message counts must be positive, sizes not negative")
    results = asyncio.run(curves(messages, http_messages, sizes))
    if args.markdown:
        args.markdown.write_text("\n\n".join(curve.markdown() for curve in results) + "\n")


if __name__ == "__main__":
    main()
