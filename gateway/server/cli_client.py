"""``smsgw send``, ``smsgw inbox`` and ``smsgw watch``: the tenant API at a terminal.

They call a running gateway's HTTP API as any client would (`GatewayClient`): by
default the URL of the config's ``[http]`` listener and the first API key in clear
of the config's first tenant (``--tenant`` picks another; ``--url``, ``--key`` and
``$SMSGW_API_KEY`` override). A refused request is one line on stderr with the
problem's ``code`` and exit status 1; a usage or config problem exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
from typing import Any, TextIO

from gateway.config import Config, TenantConfig
from gateway.server.client import ApiError, GatewayClient, client_tls, reachable_url

KEY_VARIABLE = "SMSGW_API_KEY"
EXIT_REFUSED = 1
EXIT_USAGE = 2

# ANSI colours for `watch` on a terminal: green for arrivals, red for failures.
_RESET = "\033[0m"
_DIM = "\033[2m"
_COLOURS = {
    "accepted": "\033[36m",
    "enroute": "\033[33m",
    "scheduled": "\033[33m",
    "delivered": "\033[32m",
    "undeliverable": "\033[31m",
    "expired": "\033[31m",
    "rejected": "\033[31m",
    "deleted": "\033[35m",
    "handset.received": "\033[32m",
    "mo.received": "\033[34m",
    "consent.changed": "\033[35m",
    "chaos.changed": "\033[33m",
    "gap": "\033[1;31m",
}


class UsageError(Exception):
    """A problem with the command line or the config; the message is the line to print."""


def add_commands(commands: Any) -> list[argparse.ArgumentParser]:
    """The client commands on ``commands`` (the subparsers); those that read the config."""
    send = commands.add_parser("send", help="submit a message through the running gateway")
    send.add_argument("--to", required=True, help="the recipient's number")
    send.add_argument("--body", required=True, help="the text")
    send.add_argument(
        "--from", dest="sender", help="one of the tenant's senders (default: its first)"
    )
    inbox = commands.add_parser("inbox", help="what a simulated handset received, newest first")
    inbox.add_argument("msisdn", help="the handset's number")
    watch = commands.add_parser("watch", help="follow the tenant's live events")
    watch.add_argument("--after", help="start after this event id (default: new events only)")
    for command in (inbox, watch):
        command.add_argument("--json", action="store_true", help="the raw JSON documents")
    for command in (send, inbox, watch):
        command.add_argument("--tenant", help="the tenant's id (default: the config's first)")
        command.add_argument(
            "--key", help=f"the tenant's API key (default: ${KEY_VARIABLE}, else the config's)"
        )
        command.add_argument("--url", help="the gateway's base URL (default: from [http])")
    return [send, inbox, watch]


def run(config: Config, args: argparse.Namespace) -> int:
    """Run ``send``, ``inbox`` or ``watch``; the exit status."""
    try:
        tenant = _tenant(config, args.tenant)
        client = GatewayClient(*_target(config, tenant, args))
    except UsageError as exc:
        print(f"smsgw: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "send":
            sender = args.sender or tenant.senders[0]
            document = asyncio.run(_closing(client, client.send(args.to, args.body, sender)))
            print(json.dumps(document, indent=2, ensure_ascii=False))
        elif args.command == "inbox":
            document = asyncio.run(_closing(client, client.inbox(args.msisdn)))
            print_inbox(document, args.json, sys.stdout)
        else:
            asyncio.run(_closing(client, watch(client, args.after, args.json, sys.stdout)))
    except ApiError as exc:
        print(f"smsgw: {exc.detail} ({exc.code})", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 0
    return 0


async def _closing(client: GatewayClient, work: Any) -> Any:
    async with client:
        return await work


def _tenant(config: Config, tenant_id: str | None) -> TenantConfig:
    if tenant_id is None:
        return config.tenants[0]
    for tenant in config.tenants:
        if tenant.id == tenant_id:
            return tenant
    known = ", ".join(t.id for t in config.tenants)
    raise UsageError(f"no tenant {tenant_id!r} in the config (it has {known})")


def _target(
    config: Config, tenant: TenantConfig, args: argparse.Namespace
) -> tuple[str, str, ssl.SSLContext | bool]:
    """The gateway's URL, the API key and the TLS setting for this command."""
    scheme = "https" if config.http.tls is not None else "http"
    url = args.url or reachable_url(scheme, config.http.host, config.http.port)
    key = args.key or os.environ.get(KEY_VARIABLE) or _clear_key(tenant)
    # True is aiohttp's default (verify as usual); a plain http URL does not use it.
    context = client_tls(config.http.tls) if url.startswith("https:") else True
    return url, key, context


def _clear_key(tenant: TenantConfig) -> str:
    for key in tenant.api_keys:
        if not key.startswith("sha256:"):
            return key
    raise UsageError(
        f"tenant {tenant.id!r} has no API key in clear in the config:"
        f" give one with --key or ${KEY_VARIABLE}"
    )


def print_inbox(document: dict[str, Any], raw: bool, out: TextIO) -> None:
    """One line per message, newest first: time, sender, completeness, body."""
    if raw:
        print(json.dumps(document, indent=2, ensure_ascii=False), file=out)
        return
    if not document["messages"]:
        print(f"{document['msisdn']}: no messages", file=out)
    for entry in document["messages"]:
        state = (
            f"partial ({entry['parts_missing']} missing)" if entry["parts_missing"] else "received"
        )
        body = entry["body"].replace("\n", "\\n")
        print(f"{entry['received_at']}  {entry['from']}  {state}  {body}", file=out)


async def watch(client: GatewayClient, after: str | None, raw: bool, out: TextIO) -> None:
    """Print each event as it comes, until interrupted; coloured on a terminal."""
    colour = out.isatty() and "NO_COLOR" not in os.environ
    async for event in client.events(after):
        line = json.dumps(event, ensure_ascii=False) if raw else event_line(event, colour)
        print(line, file=out, flush=True)


def event_line(event: dict[str, Any], colour: bool) -> str:
    """``time type field=value ...``: the fields the event has, nulls left out."""
    kind = str(event.get("type"))
    at = str(event.get("at") or "")
    fields = []
    for name, value in event.items():
        if name in ("id", "type", "at") or value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        shown = f"{name}={text}"
        if colour and name == "status" and text in _COLOURS:
            shown = f"{name}={_COLOURS[text]}{text}{_RESET}"
        fields.append(shown)
    time_of_day = at.partition("T")[2].removesuffix("Z") or at
    if colour:
        paint = _COLOURS.get(kind, "")
        time_of_day = f"{_DIM}{time_of_day}{_RESET}" if time_of_day else ""
        kind = f"{paint}{kind}{_RESET}" if paint else kind
    return " ".join(part for part in [time_of_day, kind, *fields] if part)
