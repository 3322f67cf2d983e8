"""``smsgw`` command line: ``smsgw serve``, ``smsgw audit verify`` (each ``[--config PATH]``)."""

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
from gateway.metrics import Metrics
from gateway.store import Store
from privacy.audit import verify
from privacy.keys import KeyFileError

log = logging.getLogger("gateway")

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smsgw", description="SMS gateway simulator")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    audit = commands.add_parser("audit", help="the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify_command = audit_commands.add_parser("verify", help="check every tenant's hash chain")
    for command in (serve, verify_command):
        command.add_argument(
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
    if args.command == "audit":
        return asyncio.run(verify_audit(config))
    try:
        asyncio.run(serve_until_signalled(config))
    except KeyFileError as exc:
        print(f"{config.privacy.key_file}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


async def verify_audit(config: Config) -> int:
    """Print one line per tenant; exit status 1 if any chain is broken."""
    store = await Store.open(config.storage, Metrics())
    try:
        verdicts = await verify(store)
    finally:
        await store.close()
    for verdict in verdicts:
        if verdict.ok:
            print(f"{verdict.tenant}: ok ({verdict.entries} entries)")
        elif verdict.broken_at is not None:
            print(f"{verdict.tenant}: BROKEN at seq {verdict.broken_at} (edited or deleted)")
        else:
            print(f"{verdict.tenant}: BROKEN: {verdict.problem}")
    return 0 if all(v.ok for v in verdicts) else 1


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
