"""Scale-out: 1, 2 and 3 gateway instances on one PostgreSQL database, beside one on SQLite.

Every configuration starts its own `smsgw serve` processes (bench/smpp_load.py's
config and start-up, the store switched to PostgreSQL with a distinct instance id and
one key-encryption key for all), on a database created for that run and dropped
after (tests/postgres.py's, on the server scripts/ensure-postgres starts). Then, in turn:

- HTTP: single POST /v1/messages, ``--concurrency`` in flight to each instance, the
  messages shared out between the instances, until all are accepted and the
  instances' /metrics together count them delivered (bench.http_batch's client);
- SMPP: one bench.smpp_load transceiver bound to each instance, window ``--window``,
  receipts requested, until every submit_sm is answered and every receipt is back
  (a receipt may come back on any of the tenant's sessions, on any instance).

Each row prints messages/s end to end and the CPU time per message of the gateway
processes together and, on PostgreSQL, of the server processes serving the run's
database (the server's shared background writers are left out). The single SQLite
instance is the reference, measured in the same run.

    .venv/bin/python -m bench.scale_out [--instances 1 2 3] [--messages 10000]
        [--http-messages 5000] [--markdown scale-out.md]

(from the repository root, as a module, so that it imports bench.smpp_load.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.curves import Curve, Row
from bench.http_batch import delivered, post_all
from bench.smpp_load import CONFIG, Receipts, cpu_seconds, gateway_process, load
from tests.conftest import make_kek_file
from tests.postgres import fresh_database

SQLITE_STORAGE = '[storage]\npath = "{dir}/bench.sqlite3"\n'
HTTP_CONCURRENCY = 16
SMPP_WINDOW = 256
COLUMNS = (
    "store",
    "instances",
    "messages",
    "msg/s",
    "gateways CPU µs/msg",
    "PostgreSQL CPU µs/msg",
    "refused",
)


@dataclass(frozen=True)
class Cluster:
    """The running instances: their processes, HTTP URLs and SMPP ports."""

    pids: list[int]
    urls: list[str]
    smpp_ports: list[int]
    dsn: str | None  # None: the SQLite reference


def postgres_config(dsn: str, instance: str, kek_file: Path) -> str:
    """bench.smpp_load's CONFIG with the store on ``dsn``, as instance ``instance``."""
    text = CONFIG.replace(
        SQLITE_STORAGE, f'[storage]\nbackend = "postgres"\ndsn = "{dsn}"\n'
    ).replace(
        'key_file = "{dir}/keys.json"', f'key_file = "{{dir}}/keys.json"\nkek_file = "{kek_file}"'
    )
    assert text.count(dsn) == 1 and text.count("kek_file") == 1, "CONFIG changed shape"
    return text + f'\n[instance]\nid = "{instance}"\n'


@contextlib.asynccontextmanager
async def cluster(instances: int, postgres: bool) -> AsyncIterator[Cluster]:
    """``instances`` gateways on a fresh PostgreSQL database, or one on SQLite."""
    async with contextlib.AsyncExitStack() as stack:
        if not postgres:
            process, url, port = await stack.enter_async_context(gateway_process())
            yield Cluster([process.pid], [url], [port], None)
            return
        dsn = await stack.enter_async_context(fresh_database())
        kek_file = make_kek_file(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "kek")
        started = []
        for n in range(1, instances + 1):  # one after another: each migrates, then listens
            config = postgres_config(dsn, f"bench-{n}", kek_file)
            started.append(await stack.enter_async_context(gateway_process(config_text=config)))
        yield Cluster(
            [process.pid for process, _, _ in started],
            [url for _, url, _ in started],
            [port for _, _, port in started],
            dsn,
        )


async def backend_pids(dsn: str) -> list[int]:
    """The server processes connected to the run's database, but the one asking."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    return [row["pid"] for row in rows]


class CpuMeter:
    """CPU seconds the gateways, and their database's server processes, spend from now on."""

    def __init__(self, running: Cluster) -> None:
        self.running = running
        self.before: dict[int, float] = {}

    async def start(self) -> None:
        servers = await backend_pids(self.running.dsn) if self.running.dsn else []
        self.before = {pid: cpu_seconds(pid) for pid in self.running.pids + servers}

    async def seconds(self) -> tuple[float, float]:
        """The gateways' and the database's, since start; a server process that connected
        later counts from its start."""
        servers = await backend_pids(self.running.dsn) if self.running.dsn else []
        return self._since(self.running.pids), self._since(servers)

    def _since(self, pids: list[int]) -> float:
        total = 0.0
        for pid in pids:
            with contextlib.suppress(FileNotFoundError):  # a server process just ended
                total += cpu_seconds(pid) - self.before.get(pid, 0.0)
        return total


async def all_delivered(urls: list[str], count: int) -> None:
    """Poll every instance's /metrics: they are other processes, and that is their signal."""
    while True:
        if sum([await delivered(url) for url in urls]) >= count:
            return
        await asyncio.sleep(0.05)


def figures(running: Cluster, messages: int, seconds: float, cpu: tuple[float, float]) -> Row:
    """A row's store, instances, messages, msg/s and CPU µs/msg (gateways, database)."""
    gateways, database = (f"{seconds * 1e6 / messages:.0f}" for seconds in cpu)
    return (
        "postgres" if running.dsn else "sqlite",
        str(len(running.urls)),
        f"{messages:,}",
        f"{messages / seconds:,.0f}",
        gateways,
        database if running.dsn else "-",
    )


async def http_point(instances: int, postgres: bool, messages: int, concurrency: int) -> Row:
    async with cluster(instances, postgres) as running:
        shares = [
            [
                json.dumps(
                    {"to": f"+4670{i:07d}", "from": "Bench", "body": "benchmark message"}
                ).encode()
                for i in range(n, messages, instances)
            ]
            for n in range(instances)
        ]
        meter = CpuMeter(running)
        await meter.start()
        started = time.perf_counter()
        await asyncio.gather(
            *(
                post_all(url, "/v1/messages", bodies, concurrency)
                for url, bodies in zip(running.urls, shares, strict=True)
            )
        )
        await asyncio.wait_for(all_delivered(running.urls, messages), 600)
        seconds = time.perf_counter() - started
        cpu = await meter.seconds()
    return figures(running, messages, seconds, cpu)


async def smpp_point(instances: int, postgres: bool, messages: int, window: int) -> Row:
    share = max(1, messages // instances)
    async with cluster(instances, postgres) as running:
        meter = CpuMeter(running)
        await meter.start()
        receipts = Receipts(share * instances)
        clients = await asyncio.gather(
            *(
                load(port, share, window, receipts, first=n * share)
                for n, port in enumerate(running.smpp_ports)
            )
        )
        cpu = await meter.seconds()
    started = min(client.started for client in clients)
    refused = sum(client.failed for client in clients)
    total = share * instances
    return (*figures(running, total, receipts.finished - started, cpu), str(refused))


async def scale_out(
    instances: list[int], messages: int, http_messages: int, concurrency: int, window: int
) -> list[Curve]:
    """Both tables, each configuration one at a time (each has the machine to itself)."""
    configurations = [(1, False)] + [(n, True) for n in instances]
    results = []
    for title, columns, points in (
        (
            f"HTTP single submits, {concurrency} in flight per instance, until delivered",
            COLUMNS[:-1],
            [http_point(n, pg, http_messages, concurrency) for n, pg in configurations],
        ),
        (
            f"SMPP, one transceiver per instance (window {window}), until every receipt is back",
            COLUMNS,
            [smpp_point(n, pg, messages, window) for n, pg in configurations],
        ),
    ):
        rows = [await point for point in points]
        results.append(Curve(title, columns, rows))
        print(results[-1].text() + "\n", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--messages", type=int, default=10_000, help="SMPP messages a row")
    parser.add_argument("--http-messages", type=int, default=5_000, help="HTTP messages a row")
    parser.add_argument("--concurrency", type=int, default=HTTP_CONCURRENCY)
    parser.add_argument("--window", type=int, default=SMPP_WINDOW)
    parser.add_argument("--markdown", type=Path, help="also write the tables here as Markdown")
    args = parser.parse_args()
    if min(args.messages, args.http_messages, *args.instances) < 1:
        parser.error("message and instance counts must be positive")
    results = asyncio.run(
        scale_out(args.instances, args.messages, args.http_messages, args.concurrency, args.window)
    )
    if args.markdown:
        args.markdown.write_text("\n\n".join(curve.markdown() for curve in results) + "\n")


if __name__ == "__main__":
    main()
