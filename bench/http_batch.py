"""HTTP batches: messages per second through the real gateway, against a bare aiohttp app.

Starts `smsgw serve` as its own process (bench/smpp_load.py's settings and start-up)
and a bare aiohttp app that parses each batch and answers 200, in another
process; one client in this process keeps ``--concurrency`` POST
/v1/messages/batch requests of ``--batch`` messages in flight against each until
``--messages`` are answered, then, for the gateway, waits until /metrics counts
every message delivered.

    .venv/bin/python -m bench.http_batch [--messages 100000] [--batch 1000]

(from the repository root, as a module, so that it imports bench.smpp_load.)

Prints messages/s for both and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import time

import aiohttp
from aiohttp import web

from bench.smpp_load import gateway_process

HEADERS = {"Authorization": "Bearer bench-key"}
BATCH_PATH = "/v1/messages/batch"
DELIVERED = re.compile(
    r'^smsgw_delivery_outcomes_total\{[^}]*status="delivered"[^}]*\} (\S+)$', re.M
)


def batches(total: int, size: int) -> list[bytes]:
    bodies = []
    for first in range(0, total, size):
        messages = [
            {"to": f"+4670{i:07d}", "from": "Bench", "body": "benchmark message"}
            for i in range(first, min(total, first + size))
        ]
        bodies.append(json.dumps({"messages": messages}).encode())
    return bodies


async def post_all(url: str, path: str, bodies: list[bytes], concurrency: int) -> float:
    """Seconds to have every body answered at ``path``; each must be accepted whole.

    A batch's answer is 200 with nothing rejected; a single message's is 202
    (bench.curves posts those).
    """
    queue = list(reversed(bodies))
    headers = {**HEADERS, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                async with http.post(f"{url}{path}", data=body, headers=headers) as r:
                    document = await r.json()
                    if r.status not in (200, 202) or document.get("rejected"):
                        raise SystemExit(f"refused: {r.status} {str(document)[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


async def delivered(url: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        text = await response.text()
    return sum(float(value) for value in DELIVERED.findall(text))


async def wait_delivered(url: str, count: int) -> None:
    """Poll /metrics: the gateway is another process, and that is its only signal."""
    while True:
        if await delivered(url) >= count:
            return
        await asyncio.sleep(0.05)


def run_bare(ports: multiprocessing.Queue[int]) -> None:
    async def batch(request: web.Request) -> web.Response:
        messages = (await request.json())["messages"]
        results = [{"index": i, "message": {"id": str(i)}} for i in range(len(messages))]
        return web.json_response({"accepted": len(messages), "rejected": 0, "results": results})

    async def serve() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages/batch", batch)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(serve())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    bodies = batches(args.messages, args.batch)

    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    bare = multiprocessing.Process(target=run_bare, args=(ports,), daemon=True)
    bare.start()
    bare_url = f"http://127.0.0.1:{ports.get(timeout=10)}"
    bare_seconds = await post_all(bare_url, BATCH_PATH, bodies, 4)
    bare.terminate()

    async with gateway_process() as (_, url, _):
        started = time.perf_counter()
        accepted_seconds = await post_all(url, BATCH_PATH, bodies, args.concurrency)
        await wait_delivered(url, args.messages)
        delivered_seconds = time.perf_counter() - started

    bare_rate = args.messages / bare_seconds
    print(f"messages: {args.messages}, batch: {args.batch}, concurrency: {args.concurrency}")
    for what, rate in (
        ("bare aiohttp app, answered", bare_rate),
        ("gateway, accepted (202 per item)", args.messages / accepted_seconds),
        ("gateway, all delivered", args.messages / delivered_seconds),
    ):
        print(f"{what:34} {rate:10,.0f} messages/s  {rate / bare_rate:.3f}x bare")


if __name__ == "__main__":
    asyncio.run(main())
