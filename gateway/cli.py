"""``smsgw`` command line: serve, audit verify, retention run, subject ..., tenant purge."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
import time

from aiohttp import web

from gateway.app import create_app
from gateway.config import Config, ConfigError, load_config
from gateway.http_server import GatewayRunner
from gateway.logs import configure as configure_logging
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.numbers import InvalidNumber, normalise_msisdn
from gateway.store import Store
from privacy.audit import AuditLog, verify
from privacy.keys import KeyFileError, KeyRing
from privacy.registry import ConsentRegistry
from privacy.retention import Retention, purge_tenant
from privacy.subjects import SubjectRights

log = logging.getLogger("gateway")

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smsgw", description="SMS gateway simulator")
    commands = parser.add_subparsers(dest="command", required=True)
    configured = [commands.add_parser("serve", help="run the gateway")]
    audit = commands.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True
    )
    configured.append(audit.add_parser("verify", help="check every tenant's hash chain"))
    retention = commands.add_parser("retention", help="pseudonymise and delete old data")
    retention_actions = retention.add_subparsers(dest="action", required=True)
    configured.append(retention_actions.add_parser("run", help="one retention run, now"))
    subject = commands.add_parser("subject", help="data-subject rights").add_subparsers(
        dest="action", required=True
    )
    for action, text in SUBJECT_ACTIONS.items():
        command = subject.add_parser(action, help=text)
        command.add_argument("--tenant", required=True, help="the tenant (controller) id")
        command.add_argument("msisdn", help="the subject's number, any accepted form")
        configured.append(command)
    tenant = commands.add_parser("tenant", help="tenants").add_subparsers(
        dest="action", required=True
    )
    purge = tenant.add_parser("purge", help="delete a tenant's data and destroy its keys")
    purge.add_argument("tenant_id")
    configured.append(purge)
    for command in configured:
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
    configure_logging(config.log)
    try:
        if args.command == "serve":
            asyncio.run(serve_until_signalled(config))
            return 0
        if args.command == "audit":
            return asyncio.run(verify_audit(config))
        return asyncio.run(offline_command(config, args))
    except KeyFileError as exc:
        print(f"{config.privacy.key_file}: {exc}", file=sys.stderr)
        return EXIT_CONFIG


SUBJECT_ACTIONS = {
    "export": "print everything held about the number as JSON",
    "erase": "erase the number's data (a suppression entry stays if it opted out)",
    "restrict": "restrict processing: every submit to the number is refused",
    "unrestrict": "lift a restriction",
    "object": "an objection: opt the number out of every purpose",
}


async def offline_command(config: Config, args: argparse.Namespace) -> int:
    """Retention, subject and tenant commands, on the store and key file directly.

    The key file has one owner at a time: run these while the gateway is stopped (a
    running gateway does retention itself, and offers the subject routes over HTTP).
    """
    metrics = Metrics()
    store = await Store.open(config.storage, metrics)
    try:
        keys = KeyRing.open(config.privacy.key_file)
        if args.command == "tenant":
            print(json.dumps(await purge_tenant(store, keys, args.tenant_id)))
            return 0
        if args.command == "retention":
            report = await Retention(config, store, keys, metrics, time.time).run()
            print(json.dumps(dataclasses.asdict(report)))
            return 0
        tenants = {t.id: t for t in config.tenants}
        if args.tenant not in tenants:
            print(f"no tenant {args.tenant!r} in {args.config}", file=sys.stderr)
            return EXIT_CONFIG
        tenant = tenants[args.tenant]
        try:
            e164 = normalise_msisdn(args.msisdn, tenant.default_country or None)
        except InvalidNumber as exc:
            print(f"not a phone number: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        audit = await AuditLog.open(store)
        registry = ConsentRegistry(config, store, keys, audit, metrics, time.time)
        rights = SubjectRights(store, keys, registry, audit, metrics, time.time)
        actor = "cli"
        if args.action == "export":
            print(json.dumps(await rights.export(tenant, e164, actor), indent=2))
        elif args.action == "erase":
            print(json.dumps(await rights.erase(tenant, e164, actor)))
        elif args.action in ("restrict", "unrestrict"):
            await rights.restrict(tenant, e164, actor, on=args.action == "restrict")
        else:
            await rights.object(tenant, e164, actor)
        return 0
    finally:
        await store.close()


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
    runner = GatewayRunner(create_app(config))
    await runner.setup()
    site = web.TCPSite(runner, config.http.host, config.http.port)
    await site.start()
    for host, port, *_ in runner.addresses:
        log_event(log, "http.listening", host=host, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log_event(log, "shutdown.started")
    await runner.cleanup()
    log_event(log, "shutdown.finished")
