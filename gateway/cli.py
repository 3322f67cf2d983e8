"""``smsgw`` command line: ``smsgw serve [--config PATH]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from aiohttp import web

from gateway.app import create_app
from gateway.config import Config, ConfigError, load_config

log = logging.getLogger("gateway")

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smsgw", description="SMS gateway simulator")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--config",
        default=os.environ.get("SMSGW_CONFIG", "config.toml"),
        help="config file (default: $SMSGW_CONFIG or ./config.toml)",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve_until_signalled(config))
    return 0


async def serve_until_signalled(config: Config) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting and flush the store."""
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.http.host, config.http.port)
    await site.start()
    for host, port, *_ in runner.addresses:
        log.info("http.listening host=%s port=%d", host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutdown.started")
    await runner.cleanup()
    log.info("shutdown.finished")
