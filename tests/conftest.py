"""Shared fixtures: a real gateway on real sockets, real clients, SQLite under tmp_path.

``SMSGW_TEST_BACKEND=postgres`` runs every gateway of `running_gateway` on PostgreSQL
instead: a fresh database per store path (a gateway restarted on the same config
finds its data again), dropped when the test ends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from gateway.config import Config, InstanceConfig, StorageBackend, config_from_dict
from gateway.domain import Message
from gateway.server.app import announce, create_app
from gateway.server.appkeys import NETWORK, SMPP_SERVER
from gateway.server.http_server import GatewayRunner
from gateway.storage.dialect import POSTGRES, SQLITE
from gateway.storage.pg_engine import pg_sql
from gateway.testing.harness import merged as merged  # the plugin's, shared by the tests
from privacy.key_wrap import read_kek, unwrap
from tests.postgres import database_for, drop_stand_ins, off_loop

API_KEY = "acme-test-key"
OTHER_KEY = "other-test-key"
ADMIN_TOKEN = "operator-test-token"
EVENT_TIMEOUT = 10.0
BACKEND = StorageBackend(os.environ.get("SMSGW_TEST_BACKEND", "sqlite"))
# What the tests that read the store beside the gateway write SQL in.
TEST_DIALECT = POSTGRES if BACKEND is StorageBackend.POSTGRES else SQLITE


def storage_table(path: Path) -> dict[str, Any]:
    """The ``[storage]`` table of a test's config: the file, or its stand-in database."""
    if BACKEND is StorageBackend.SQLITE:
        return {"path": str(path)}
    return {"path": str(path), "backend": "postgres", "dsn": database_for(path)}


def privacy_table(directory: Path) -> dict[str, Any]:
    """The ``[privacy]`` table of a test's config: the key file, and on PostgreSQL a KEK."""
    table = {"key_file": str(directory / "keys.json")}
    if BACKEND is StorageBackend.POSTGRES:
        kek = directory / "kek"
        table["kek_file"] = str(kek if kek.exists() else make_kek_file(kek))
    return table


def instance_table(directory: Path) -> dict[str, Any]:
    """The ``[instance]`` table of a test's config: on PostgreSQL, `fixed_instance_id`."""
    return (
        {}
        if BACKEND is StorageBackend.SQLITE
        else {"instance": {"id": fixed_instance_id(directory)}}
    )


def fixed_instance_id(directory: Path) -> str:
    """An instance id fixed by the test's directory, as a configured port would fix it, so a
    gateway restarted there (after a SIGKILL too) is the same instance and takes back at
    once what its last run held."""
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in directory.name)
    return f"test-{name}"[:64]


def base_config(tmp_path: Path) -> dict[str, Any]:
    """A small config with short latencies; tests override what they need."""
    return {
        **instance_table(tmp_path),
        "http": {"host": "127.0.0.1", "port": 0},
        "smpp": {"host": "127.0.0.1", "port": 0},
        "storage": storage_table(tmp_path / "smsgw.sqlite3"),
        "privacy": privacy_table(tmp_path),
        "simulator": {
            "latency": ["1ms", "5ms"],
            "rules": [{"prefix": "+4670999", "outcome": "undeliverable"}],
        },
        "callbacks": {"first_retry": "10ms", "max_retry": "50ms"},
        "admin": {"tokens": [ADMIN_TOKEN]},
        "tenants": [
            {
                "id": "acme",
                "api_keys": [API_KEY],
                "senders": ["Acme", "+46700000001"],
                "default_country": "SE",
                "smpp": {"system_id": "acme", "password": "acme-pw"},
            },
            {
                "id": "other",
                "api_keys": [OTHER_KEY],
                "senders": ["Other"],
                "smpp": {"system_id": "other", "password": "other-pw"},
            },
        ],
    }


@dataclass
class RunningGateway:
    app: web.Application
    url: str
    http: aiohttp.ClientSession
    smpp_port: int
    headers: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {API_KEY}"})

    async def send(self, **message: Any) -> aiohttp.ClientResponse:
        document = {"to": "+46701234567", "from": "Acme", "body": "hello", **message}
        return await self.http.post(f"{self.url}/v1/messages", json=document, headers=self.headers)

    def finals(self) -> asyncio.Queue[Message]:
        """Every message that reaches a final state from now on (committed, as listeners hear)."""
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self.app[NETWORK].subscribe(queue.put_nowait)
        return queue

    async def get_json(self, path: str, key: str = API_KEY) -> tuple[int, Any]:
        async with self.http.get(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {key}"}
        ) as response:
            return response.status, await response.json(content_type=None)


class ManualClock:
    """A clock the test moves, so retention across months runs in milliseconds."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def on_test_backend(config: Config) -> Config:
    """``config`` on the backend the suite runs on (``SMSGW_TEST_BACKEND``)."""
    if BACKEND is StorageBackend.SQLITE or config.storage.backend is not StorageBackend.SQLITE:
        return config
    storage = dataclasses.replace(
        config.storage, backend=StorageBackend.POSTGRES, dsn=database_for(config.storage.path)
    )
    privacy = config.privacy
    if not privacy.kek_file:  # keys in the database need one: beside the store, like the key file
        kek = Path(config.storage.path).with_name("kek")
        if not kek.exists():
            make_kek_file(kek)
        privacy = dataclasses.replace(privacy, kek_file=str(kek))
    instance = config.instance
    if not instance.id:
        instance = InstanceConfig(id=fixed_instance_id(Path(config.storage.path).parent))
    return dataclasses.replace(config, storage=storage, privacy=privacy, instance=instance)


def make_kek_file(path: Path) -> Path:
    """A fresh key-encryption key in a 0600 file, as an operator would make one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return path


def stored_rows(database: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows read straight from the store at ``database``, beside the gateway (``?`` marks)."""
    if BACKEND is StorageBackend.SQLITE:
        db = sqlite3.connect(database)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    async def read() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(database_for(database))
        try:
            return [tuple(row) for row in await conn.fetch(pg_sql(sql), *params)]
        finally:
            await conn.close()

    return off_loop(read())


@dataclass(frozen=True)
class StoredKeys:
    """A tenant's keys as the gateway keeps them at rest: its registry key (None if it has
    none) and the labels of its epoch keys."""

    registry: bytes | None
    epochs: frozenset[str]


def stored_keys(directory: Path) -> dict[str, StoredKeys]:
    """Every tenant's `StoredKeys` of the gateway of `base_config` (directory): read from its
    key file, or on PostgreSQL from the ``wrapped_keys`` rows, opened with its KEK."""
    if BACKEND is StorageBackend.SQLITE:
        document = json.loads((directory / "keys.json").read_text())
        return {
            tenant: StoredKeys(
                base64.b64decode(entry["registry_key"]) if "registry_key" in entry else None,
                frozenset(entry.get("epochs", {})),
            )
            for tenant, entry in document["tenants"].items()
        }
    kek = read_kek(directory / "kek")
    registry: dict[str, bytes] = {}
    epochs: dict[str, set[str]] = {}
    for tenant, kind, epoch, nonce, sealed in stored_rows(
        directory / "smsgw.sqlite3", "SELECT tenant, kind, epoch, nonce, sealed FROM wrapped_keys"
    ):
        epochs.setdefault(tenant, set())
        if kind == "registry":
            registry[tenant] = unwrap(kek, tenant, kind, epoch, nonce, sealed)
        else:
            epochs[tenant].add(epoch)
    return {
        tenant: StoredKeys(registry.get(tenant), frozenset(epochs[tenant])) for tenant in epochs
    }


def stored_execute(database: Path, *statements: str) -> None:
    """Change the store at ``database`` behind the gateway's back, in one transaction."""
    if BACKEND is StorageBackend.SQLITE:
        db = sqlite3.connect(database)
        with db:
            for sql in statements:
                db.execute(sql)
        db.close()
        return

    async def execute() -> None:
        conn = await asyncpg.connect(database_for(database))
        try:
            async with conn.transaction():
                for sql in statements:
                    await conn.execute(sql)
        finally:
            await conn.close()

    off_loop(execute())


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """Drop the databases this test's gateways ran on (with SMSGW_TEST_BACKEND=postgres)."""
    yield
    drop_stand_ins()


@contextlib.asynccontextmanager
async def running_gateway(
    config: Config, clock: Callable[[], float] = time.time
) -> AsyncIterator[RunningGateway]:
    config = on_test_backend(config)
    runner = GatewayRunner(create_app(config, clock))
    await runner.setup()
    site = web.TCPSite(runner, config.http.host, 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    await announce(runner.app, f"http://{host}:{port}")  # as `smsgw serve` does
    try:
        async with aiohttp.ClientSession() as http:
            yield RunningGateway(
                runner.app, f"http://{host}:{port}", http, runner.app[SMPP_SERVER].port
            )
    finally:
        await runner.cleanup()


@pytest.fixture
def config_dict(tmp_path: Path) -> dict[str, Any]:
    return base_config(tmp_path)


@pytest.fixture
async def gateway(config_dict: dict[str, Any]) -> AsyncIterator[RunningGateway]:
    async with running_gateway(config_from_dict(config_dict)) as running:
        yield running


@dataclass
class CallbackReceiver:
    """A real local web server that records delivery callbacks."""

    url: str
    received: asyncio.Queue[dict[str, Any]]
    fail_first: list[int]

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.received.get(), EVENT_TIMEOUT)


@pytest.fixture
async def callback_receiver() -> AsyncIterator[CallbackReceiver]:
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    fail_first = [0]

    async def hook(request: web.Request) -> web.Response:
        if fail_first[0] > 0:
            fail_first[0] -= 1
            return web.Response(status=500)
        await received.put(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serve_locally(app) as url:
        yield CallbackReceiver(f"{url}/hook", received, fail_first)


@contextlib.asynccontextmanager
async def serve_locally(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` (a test's stand-in for a user's web app) on loopback; yields its URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
