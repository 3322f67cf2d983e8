"""``smsgw`` command line: serve, send/inbox/watch, audit, retention, subject, tenant purge, keys.

Operator commands act through the owner of the files: while a gateway runs (its lock
file names its admin URL, or ``--url`` does) they call its admin API, so its caches and
in-memory keys change with its store; only when none runs do they open the store and key
file themselves, holding the same lock meanwhile. A PostgreSQL store has no file to
lock beside it and is shared by design: there they act through the live instance found
in the database's instance list (or ``--url``), and on the store themselves only when
the list has none. Every failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from gateway.cluster.base import ClusterError
from gateway.cluster.instance import instance_id
from gateway.cluster.postgres import live_admin_urls
from gateway.config import Config, ConfigError, InstanceConfig, StorageBackend, load_config
from gateway.lock import StorageBusy, StorageLock
from gateway.logs import configure as configure_logging
from gateway.logs import log_event
from gateway.metrics import Metrics, smsgw_version
from gateway.server import cli_client
from gateway.server.app import StartupError, announce, create_app, server_tls
from gateway.server.appkeys import SMPP_SERVER, STORAGE_LOCK
from gateway.server.client import client_tls, reachable_url
from gateway.server.http_server import GatewayRunner
from gateway.server.operator import Operator, OperatorError
from gateway.server.privacy_services import open_privacy, open_privacy_core
from gateway.store import Store
from privacy.key_wrap import read_kek
from privacy.keys import KeyFileError, KeyRing
from privacy.shared_keys import SharedKeyRing, rotate_kek

log = logging.getLogger("gateway")

EXIT_CONFIG = 2
TOKEN_VARIABLE = "SMSGW_ADMIN_TOKEN"
DEMO_TENANT, DEMO_KEY = "demo", "demo-key"  # as config.toml ships them
DOCS_URL = "README.md and docs/ in the smsgw source"


@dataclass(frozen=True, slots=True)
class Action:
    """One operator command: its admin API call, and the same on an offline Operator."""

    method: str
    path: str  # under /admin/v1, with {tenant} and {msisdn} filled from the arguments
    call: Callable[[Operator, argparse.Namespace], Awaitable[Any]]


_SUBJECT = "tenants/{tenant}/subjects/{msisdn}"
ACTIONS: dict[tuple[str, str], Action] = {
    ("subject", "export"): Action(
        "GET", f"{_SUBJECT}/export", lambda op, a: op.export(a.tenant, a.msisdn)
    ),
    ("subject", "erase"): Action(
        "POST", f"{_SUBJECT}/erase", lambda op, a: op.erase(a.tenant, a.msisdn)
    ),
    ("subject", "restrict"): Action(
        "PUT", f"{_SUBJECT}/restriction", lambda op, a: op.restrict(a.tenant, a.msisdn, on=True)
    ),
    ("subject", "unrestrict"): Action(
        "DELETE",
        f"{_SUBJECT}/restriction",
        lambda op, a: op.restrict(a.tenant, a.msisdn, on=False),
    ),
    ("subject", "object"): Action(
        "POST", f"{_SUBJECT}/objection", lambda op, a: op.record_objection(a.tenant, a.msisdn)
    ),
    ("tenant", "purge"): Action(
        "POST", "tenants/{tenant_id}/purge", lambda op, a: op.purge(a.tenant_id)
    ),
    ("retention", "run"): Action("POST", "retention/run", lambda op, a: op.run_retention()),
    ("audit", "verify"): Action("GET", "audit/verify", lambda op, a: op.verify_audit()),
}

SUBJECT_ACTIONS = {
    "export": "print everything held about the number as JSON",
    "erase": "erase the number's data (a suppression entry stays if it opted out)",
    "restrict": "restrict processing: every submit to the number is refused",
    "unrestrict": "lift a restriction",
    "object": "an objection: opt the number out of every purpose",
}


CLIENT_COMMANDS = ("send", "inbox", "watch")


class CommandFailed(Exception):
    """An operator command failed; the message is the one line to print."""


class GatewayUnreachable(CommandFailed):
    """No connection to the gateway's admin API: nothing was sent to it."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsgw", description="SMS gateway simulator")
    parser.add_argument("--version", action="version", version=f"smsgw {smsgw_version()}")
    config_help = "config file (default: $SMSGW_CONFIG or ./config.toml)"
    parser.add_argument(
        "--config", default=os.environ.get("SMSGW_CONFIG", "config.toml"), help=config_help
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--instance-id",
        help="this instance's id among those sharing a PostgreSQL store"
        " (default: [instance] id, else host name:HTTP port)",
    )
    audit = commands.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True
    )
    operated = [audit.add_parser("verify", help="check every tenant's hash chain")]
    retention = commands.add_parser("retention", help="pseudonymise and delete old data")
    retention_actions = retention.add_subparsers(dest="action", required=True)
    operated.append(retention_actions.add_parser("run", help="one retention run, now"))
    subject = commands.add_parser("subject", help="data-subject rights").add_subparsers(
        dest="action", required=True
    )
    for action, text in SUBJECT_ACTIONS.items():
        command = subject.add_parser(action, help=text)
        command.add_argument("--tenant", required=True, help="the tenant (controller) id")
        command.add_argument("msisdn", help="the subject's number, any accepted form")
        operated.append(command)
    tenant = commands.add_parser("tenant", help="tenants").add_subparsers(
        dest="action", required=True
    )
    purge = tenant.add_parser("purge", help="delete a tenant's data and destroy its keys")
    purge.add_argument("tenant_id")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    operated.append(purge)
    keys = commands.add_parser("keys", help="the key ring on PostgreSQL").add_subparsers(
        dest="action", required=True
    )
    rotate = keys.add_parser("rotate-kek", help="re-seal every key under a new key-encryption key")
    rotate.add_argument("--new-kek-file", required=True, help="the new KEK file (mode 0600)")
    clients = cli_client.add_commands(commands)
    for command in [serve, rotate, *operated, *clients]:
        # Also after the subcommand; SUPPRESS keeps the one given before it when absent here.
        command.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    for command in operated:
        command.add_argument(
            "--url",
            help="a running gateway's base URL (default: found through its lock file, or"
            " in the instance list of a PostgreSQL store)",
        )
        command.add_argument(
            "--token",
            help=f"operator token (default: ${TOKEN_VARIABLE}, else the first in [admin] tokens)",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.log)
    try:
        if args.command == "serve":
            if args.instance_id is not None:
                try:
                    config = with_instance_id(config, args.instance_id)
                except ConfigError as exc:
                    print(f"--instance-id: {exc}", file=sys.stderr)
                    return EXIT_CONFIG
            asyncio.run(serve_until_signalled(config))
            return 0
        if args.command in CLIENT_COMMANDS:
            return cli_client.run(config, args)
        if args.command == "keys":
            return _rotate_kek(config, args.new_kek_file)
        return operate(config, args)
    except KeyFileError as exc:
        print(f"{config.privacy.key_file}: {exc}", file=sys.stderr)
    except (StorageBusy, StartupError, CommandFailed) as exc:
        print(f"smsgw: {exc}", file=sys.stderr)
    return EXIT_CONFIG


# --- operator commands ----------------------------------------------------------------------


def operate(config: Config, args: argparse.Namespace) -> int:
    """Through the running gateway if there is one, else on the files, locked."""
    if args.command == "tenant" and not args.yes:
        _confirm_purge(args.tenant_id)
    action = ACTIONS[(args.command, args.action)]
    if args.url:
        return _report(args, asyncio.run(_call_gateway(config, args, action, args.url)))
    if config.storage.backend is StorageBackend.POSTGRES:
        # An instance killed moments ago is still listed until dead_after: try the next.
        for url in _live_instances(config):
            with contextlib.suppress(GatewayUnreachable):
                return _report(args, asyncio.run(_call_gateway(config, args, action, url)))
    try:
        lock = StorageLock.acquire(config)
    except StorageBusy as busy:
        if busy.owner is None or not busy.owner.admin_url:
            raise CommandFailed(
                f"{busy.path} is held by a gateway that is not listening (yet); try again"
            ) from None
        url = busy.owner.admin_url
        return _report(args, asyncio.run(_call_gateway(config, args, action, url)))
    try:
        return _report(args, asyncio.run(_call_offline(config, args, action)))
    finally:
        lock.release()


def _live_instances(config: Config) -> list[str]:
    """The admin URLs of the live instances, freshest heartbeat first."""
    try:
        return asyncio.run(live_admin_urls(config))
    except ClusterError as exc:
        raise CommandFailed(f"storage.dsn: {exc}") from None


def _confirm_purge(tenant_id: str) -> None:
    if not sys.stdin.isatty():
        raise CommandFailed(
            f"tenant purge destroys every row and key of {tenant_id!r}:"
            " confirm on a terminal, or pass --yes"
        )
    print(
        f"Purge tenant {tenant_id!r}: delete all its data and destroy its keys for good?"
        " Type the tenant id to confirm: ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    if sys.stdin.readline().strip() != tenant_id:
        raise CommandFailed("not confirmed; nothing was purged")


def _report(args: argparse.Namespace, result: Any) -> int:
    """Print a command's result; exit status 1 for a broken audit chain."""
    if (args.command, args.action) != ("audit", "verify"):
        indent = 2 if args.action == "export" else None
        print(json.dumps(result, indent=indent, ensure_ascii=False))
        return 0
    if not result["tenants"]:
        print("no audit entries yet")
    for verdict in result["tenants"]:
        name = verdict["tenant"]
        if verdict["ok"]:
            print(f"{name}: ok ({verdict['entries']} entries)")
        elif verdict["broken_at"] is not None:
            print(f"{name}: BROKEN at seq {verdict['broken_at']} (edited or deleted)")
        else:
            print(f"{name}: BROKEN: {verdict['problem']}")
    return 0 if result["ok"] else 1


async def _call_offline(config: Config, args: argparse.Namespace, action: Action) -> Any:
    """The action on the files themselves, with the parts a gateway would use."""
    metrics = Metrics()
    store = await Store.open(config.storage, metrics)
    shared: SharedKeyRing | None = None
    try:
        if config.storage.backend is StorageBackend.POSTGRES:
            shared = await _shared_keys(config)
        keys = shared or KeyRing.open(config.privacy.key_file)
        core = await open_privacy_core(config, store, keys, metrics, time.time)
        services = open_privacy(core, config, store, keys, metrics, time.time)
        try:
            return await action.call(services.operator, args)
        except OperatorError as exc:
            raise CommandFailed(exc.detail) from None
    finally:
        if shared is not None:
            await shared.close()
        await store.close()


async def _shared_keys(config: Config) -> SharedKeyRing:
    """The key ring every instance shares, as a gateway on PostgreSQL opens it."""
    try:
        return await SharedKeyRing.connect(
            config.storage.dsn, config.privacy.kek_file, import_from=config.privacy.key_file
        )
    except KeyFileError as exc:
        raise CommandFailed(f"privacy.kek_file: {exc}") from None


def _rotate_kek(config: Config, new_kek_file: str) -> int:
    """Re-seal every key in the database under ``new_kek_file`` and say what to do next."""
    if config.storage.backend is not StorageBackend.POSTGRES:
        raise CommandFailed("keys rotate-kek is for backend 'postgres'; the key file has no KEK")
    try:
        resealed = asyncio.run(
            rotate_kek(config.storage.dsn, config.privacy.kek_file, new_kek_file)
        )
        new_id = read_kek(new_kek_file).id
    except KeyFileError as exc:
        raise CommandFailed(str(exc)) from None
    print(
        json.dumps(
            {
                "resealed": resealed,
                "kek_id": new_id,
                "next": f"point privacy.kek_file at {new_kek_file} on every instance, restart"
                f" them, then destroy {config.privacy.kek_file} and every copy of it",
            }
        )
    )
    return 0


async def _call_gateway(config: Config, args: argparse.Namespace, action: Action, url: str) -> Any:
    """The action through the admin API of the gateway at ``url``."""
    token = args.token or os.environ.get(TOKEN_VARIABLE) or _token_in(config)
    values = {name: quote(str(value), safe="+") for name, value in vars(args).items()}
    target = f"{url.rstrip('/')}/admin/v1/{action.path.format(**values)}"
    # True is aiohttp's default (verify as usual); a plain http target does not use it.
    context = client_tls(config.http.tls) if target.startswith("https:") else True
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http,
            http.request(action.method, target, headers=headers, ssl=context) as response,
        ):
            document = await response.json(content_type=None)
    except aiohttp.ClientConnectorError as exc:
        raise GatewayUnreachable(f"cannot reach the gateway at {url}: {exc}") from None
    except (aiohttp.ClientError, ValueError) as exc:
        raise CommandFailed(f"cannot reach the gateway at {url}: {exc}") from None
    if response.status >= 400:
        raise CommandFailed(f"{document.get('detail')} ({document.get('code')})")
    return document


def _token_in(config: Config) -> str:
    for token in config.admin.tokens:
        if not token.startswith("sha256:"):
            return token
    raise CommandFailed(
        f"a gateway is running: give its operator token with --token or ${TOKEN_VARIABLE}"
        " ([admin] tokens holds none in clear)"
    )


# --- serve ----------------------------------------------------------------------------------


def _listen(host: str, port: int) -> socket.socket:
    """The HTTP socket, bound before anything else starts, so a taken port fails first."""
    try:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=1024)
    except OSError as exc:
        # The bare cause ("Address already in use"); getaddrinfo's codes are negative.
        cause = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else str(exc)
        raise StartupError(f"http.port {port}: cannot listen on {host}:{port}: {cause}") from None


@dataclass(frozen=True, slots=True)
class StartedGateway:
    """A gateway listening as its config says; ``runner.cleanup()`` stops it."""

    runner: GatewayRunner
    url: str  # where a client on this host reaches the HTTP listener
    smpp_host: str
    smpp_port: int


def with_instance_id(config: Config, instance: str) -> Config:
    """``config`` with ``[instance] id`` set (ConfigError naming the problem if it is no id)."""
    chosen = InstanceConfig(id=instance)
    chosen.check("instance")
    return dataclasses.replace(config, instance=chosen)


async def start_gateway(config: Config, clock: Callable[[], float] = time.time) -> StartedGateway:
    """Start every listener, and name the HTTP one for the operator CLI (`announce`).

    The HTTP socket is bound first, so that an instance id left to default names the
    port it really has (``http.port = 0`` picks one). A start-up failure undoes whatever
    had started (listeners, store, lock) before it is raised, so the process ends at once
    instead of lingering half up.
    """
    tls = config.http.tls
    ssl_context = server_tls("http.tls", tls.cert_file, tls.key_file) if tls else None
    sock = _listen(config.http.host, config.http.port)
    if not config.instance.id:
        derived = InstanceConfig(id=instance_id(config, sock.getsockname()[1]))
        config = dataclasses.replace(config, instance=derived)
    try:
        app = create_app(config, clock)
    except BaseException:
        sock.close()
        raise
    runner = GatewayRunner(app)
    try:
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        sock.close()
        app[STORAGE_LOCK].release()
        raise
    for host, port, *_ in runner.addresses:
        log_event(log, "http.listening", host=host, port=port)
    host, port = runner.addresses[0][:2]
    url = reachable_url("https" if ssl_context else "http", host, port)
    await announce(app, url)
    return StartedGateway(runner, url, config.smpp.host, app[SMPP_SERVER].port)


def is_demo_config(config: Config) -> bool:
    """The shipped config.toml's tenant, whose key is public anyway."""
    return any(t.id == DEMO_TENANT and DEMO_KEY in t.api_keys for t in config.tenants)


def log_banner(config: Config, gateway: StartedGateway) -> None:
    """Where everything is, one line each; no API key but the shipped demo one."""
    log_event(log, "banner.http", url=gateway.url, inbox=f"{gateway.url}/ui/")
    log_event(log, "banner.smpp", address=f"{gateway.smpp_host}:{gateway.smpp_port}")
    if config.admin.tokens:
        log_event(log, "banner.admin", url=f"{gateway.url}/admin/v1")
    if is_demo_config(config):
        log_event(log, "banner.demo", tenant=DEMO_TENANT, api_key=DEMO_KEY)
    log_event(log, "banner.docs", openapi=f"{gateway.url}/openapi.json", guides=DOCS_URL)


def settle_collector() -> None:
    """Take what start-up made out of the cyclic collector's sight.

    Modules, classes, functions and the app's long-lived objects, about 57,500 of the
    58,400 objects the collector tracked after a minute of the soak, never become
    garbage, yet every full collection walked them with the event loop stopped:
    42-65 ms of CPU each (`bench.soak`, 1,200 submit_sm/s, `gc.callbacks` timing),
    4.6-16 ms after `gc.freeze`. Frozen objects are still freed by reference counting.
    """
    gc.collect()
    gc.freeze()


async def serve_until_signalled(config: Config) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting and flush the store."""
    gateway = await start_gateway(config)
    settle_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):  # before the banner says we are up
        loop.add_signal_handler(signum, stop.set)
    log_banner(config, gateway)
    await stop.wait()
    log_event(log, "shutdown.started")
    await gateway.runner.cleanup()
    log_event(log, "shutdown.finished")
