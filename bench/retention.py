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

from aiohttp import web

from gateway.config import config_from_dict
from gateway.domain import Interface, SubmitRequest
from gateway.ids import id_floor
from gateway.server.app import create_app
from gateway.server.appkeys import PIPELINE, RETENTION
from gateway.storage.traffic import MESSAGE_COLUMNS

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
                )
            )
        with db:
            db.executemany(
                f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({', '.join('?' * 17)})", values
            )
    db.close()


async def submit_rate(pipeline: object, seconds: float, stop: asyncio.Event | None) -> float:
    """Messages accepted per second through the pipeline, for ``seconds`` or until ``stop``."""
    tenant = pipeline._config.tenants[0]  # type: ignore[attr-defined]
    requests = [
        SubmitRequest(tenant, Interface.HTTP, f"+4673{i:07d}", "Bench", "benchmark body")
        for i in range(BATCH)
    ]
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds and not (stop and stop.is_set()):
        results = await pipeline.submit_many(requests)  # type: ignore[attr-defined]
        done += len(results)
    return done / (time.perf_counter() - started)


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
        baseline = await submit_rate(app[PIPELINE], 5.0, None)
        stop = asyncio.Event()
        load = asyncio.create_task(submit_rate(app[PIPELINE], 3600.0, stop))
        report = await app[RETENTION].run()
        stop.set()
        during = await load
        await runner.cleanup()
    print(
        f"pseudonymised {report.pseudonymised:,} rows in {report.seconds:.1f} s:"
        f" {report.pseudonymised / report.seconds:,.0f} rows/s"
    )
    print(
        f"submits/s through the pipeline: {baseline:,.0f} alone,"
        f" {during:,.0f} during the run ({during / baseline:.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    asyncio.run(run(parser.parse_args().rows))


if __name__ == "__main__":
    main()
