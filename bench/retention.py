"""Pseudonymising a million traffic rows while submits keep coming.

Fills a store with N final traffic rows 40 days old, starts the real app (store,
pipeline, network) in this process, measures the submit throughput of the
pipeline for a few seconds, then again while one retention run pseudonymises all N
rows, and prints both side by side with the rows/s of the run.

    .venv/bin/python bench/retention.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from aiohttp import web

from gateway.config import config_from_dict
from gateway.domain import Interface, SubmitRequest
from gateway.ids import id_floor
from gateway.server.app import create_app
from gateway.server.appkeys import PIPELINE, RETENTION
from gateway.storage.traffic import MESSAGE_COLUMNS, MESSAGE_ROWS

BATCH = 200


def fill(path: Path, rows: int, start: float) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    chunk = 100_000
    for first in range(0, rows, chunk):
        values = []
        for i in range(first, min(rows, first + chunk)):
            at = start + i * 0.001
            values.append(
                (
                    f"{id_floor(at)}0000{i % 65536:04x}",
                    "bench",
                    "http",
                    "Bench",
                    f"+4670{i:07d}",
                    "transactional",
                    1,
                    "gsm7",
                    "delivered",
                    at,
                    None,
                    None,
                    at,
                    at + 1,
                    None,
                    0,
                    None,
                    None,
                    None,
                    None,  # send_at
                    None,  # expires_at
                )
            )
        with db:
            marks = ", ".join("?" * len(MESSAGE_ROWS.columns))
            db.executemany(f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({marks})", values)
    db.close()


class Rate(NamedTuple):
    submits: int
    seconds: float
    cpu: float  # this process's CPU time (every thread) meanwhile

    @property
    def per_second(self) -> float:
        return self.submits / self.seconds


async def submit_rate(pipeline: object, seconds: float, stop: asyncio.Event | None) -> Rate:
    """Messages accepted through the pipeline, for ``seconds`` or until ``stop``."""
    tenant = pipeline._config.tenants[0]  # type: ignore[attr-defined]
    requests = [
        SubmitRequest(tenant, Interface.HTTP, f"+4673{i:07d}", "Bench", "benchmark body")
        for i in range(BATCH)
    ]
    done = 0
    started, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds and not (stop and stop.is_set()):
        results = await pipeline.submit_many(requests)  # type: ignore[attr-defined]
        done += len(results)
    return Rate(done, time.perf_counter() - started, time.process_time() - cpu)


async def run(rows: int) -> None:
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-") as tmp:
        path = Path(tmp) / "bench.sqlite3"
        config = config_from_dict(
            {
                "http": {"port": 0},
                "smpp": {"port": 0},
                "storage": {"path": str(path)},
                "privacy": {"key_file": f"{tmp}/keys.json"},
                "simulator": {"latency": ["1ms", "5ms"]},
                "tenants": [{"id": "bench", "api_keys": ["bench-key-1"], "senders": ["Bench"]}],
            }
        )
        runner = web.AppRunner(create_app(config))
        await runner.setup()  # creates the schema
        await runner.cleanup()
        start = time.time() - 40 * 86400 - rows * 0.001
        filled = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            pool.apply(fill, (path, rows, start))
        print(f"filled {rows:,} rows in {time.perf_counter() - filled:.1f} s")

        runner = web.AppRunner(create_app(config))
        await runner.setup()
        app = runner.app
        before = await submit_rate(app[PIPELINE], 5.0, None)
        stop = asyncio.Event()
        load = asyncio.create_task(submit_rate(app[PIPELINE], 3600.0, stop))
        report = await app[RETENTION].run()
        stop.set()
        during = await load
        # Alone again: on a shared machine the neighbours' load drifts, so the ratio is
        # to the mean of before and after.
        after = await submit_rate(app[PIPELINE], 5.0, None)
        await runner.cleanup()
    alone = (before.per_second + after.per_second) / 2
    cpu_per_submit = (before.cpu + after.cpu) / (before.submits + after.submits)
    # What the run cost this process (the gateway): its CPU beyond the submits' own.
    retention_cpu = during.cpu - during.submits * cpu_per_submit
    rows = report.pseudonymised
    print(
        f"pseudonymised {rows:,} rows in {report.seconds:.1f} s: {rows / report.seconds:,.0f}"
        f" rows/s; the gateway's CPU for it {retention_cpu:.1f} s,"
        f" {retention_cpu / rows * 1e6:.1f} us a row ({rows / retention_cpu:,.0f} rows/CPU-s)"
    )
    print(
        f"submits/s through the pipeline: {before.per_second:,.0f} alone before,"
        f" {after.per_second:,.0f} after, {during.per_second:,.0f} during the run"
        f" ({during.per_second / alone:.2f}x); CPU a submit {cpu_per_submit * 1e6:.0f} us alone,"
        f" {during.cpu / during.submits * 1e6:.0f} us during (retention's included)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    asyncio.run(run(parser.parse_args().rows))


if __name__ == "__main__":
    main()
