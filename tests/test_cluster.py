"""Several gateway instances on one PostgreSQL database: the instance list, tenant-wide
session and rate limits, retention on one instance at a time, the CLI finding an instance.

Each test has a database of its own (`tests.postgres`); the instances are in-process
apps on real sockets (`tests.conftest.running_gateway`) or real `smsgw serve` processes
when one must be killed. Heartbeats are timers, not events: what waits for one (an
instance seen dead) re-checks every few tens of milliseconds until its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import config_from_dict
from gateway.server.appkeys import RETENTION
from smpp.pdu import CommandStatus
from tests.conftest import (
    ADMIN_TOKEN,
    API_KEY,
    EVENT_TIMEOUT,
    ManualClock,
    RunningGateway,
    base_config,
    make_kek_file,
    merged,
    running_gateway,
)
from tests.postgres import postgres_dsn
from tests.smpp_clients import RawEsme, smpplib_esme
from tests.test_admin import smsgw
from tests.test_process import gateway_process, write_toml

__all__ = ["postgres_dsn"]

pytestmark = pytest.mark.postgres

S = CommandStatus
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HEARTBEAT, DEAD_AFTER = 0.1, 1.0
RATE = 20  # acme's max_submit_rate in the rate test
LEASE = 0.1  # [cluster] rate_lease: a chunk is ceil(RATE * LEASE) tokens
RUNS = "smsgw_retention_runs_total"


def instance_config(
    tmp_path: Path, dsn: str, name: str, tenant: dict[str, Any] | None = None
) -> dict[str, Any]:
    """conftest's config as instance ``name`` on the database ``dsn``, with fast heartbeats;
    ``tenant`` is merged into the first tenant's (acme's) table."""
    config = base_config(tmp_path / name)
    config["storage"].update({"backend": "postgres", "dsn": dsn})
    kek = tmp_path / "kek"  # one key-encryption key for every instance on the database
    config["privacy"]["kek_file"] = str(kek if kek.exists() else make_kek_file(kek))
    config["instance"] = {"id": name}
    config["cluster"] = {
        "heartbeat_interval": f"{HEARTBEAT * 1000:.0f}ms",
        "dead_after": f"{DEAD_AFTER * 1000:.0f}ms",
        "rate_lease": f"{LEASE * 1000:.0f}ms",
    }
    config["tenants"][0] = merged(config["tenants"][0], tenant or {})
    return config


@contextlib.asynccontextmanager
async def instances(
    tmp_path: Path, dsn: str, *names: str, tenant: dict[str, Any] | None = None
) -> AsyncIterator[list[RunningGateway]]:
    """In-process gateways named ``names`` on one database, started in that order."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                running_gateway(config_from_dict(instance_config(tmp_path, dsn, name, tenant)))
            )
            for name in names
        ]


ONE_SESSION = {"smpp": {"max_sessions": 1}}


async def admin_get(gateway: RunningGateway, path: str) -> tuple[int, Any]:
    async with gateway.http.get(f"{gateway.url}/admin/v1{path}", headers=ADMIN) as response:
        return response.status, await response.json(content_type=None)


async def admin_post(gateway: RunningGateway, path: str) -> tuple[int, Any]:
    async with gateway.http.post(f"{gateway.url}/admin/v1{path}", headers=ADMIN) as response:
        return response.status, await response.json(content_type=None)


async def samples(gateway: RunningGateway, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of metric ``name`` on ``gateway``'s /metrics, by their labels."""
    async with gateway.http.get(f"{gateway.url}/metrics") as response:
        text = await response.text()
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Re-run ``check`` every 50 ms until it is true; fail naming ``what`` after the timeout."""
    deadline = time.monotonic() + EVENT_TIMEOUT
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def bind_status(port: int) -> int:
    """The command_status a transceiver bind of acme gets on ``port`` (then disconnect)."""
    esme = await RawEsme.connect(port)
    try:
        return (await esme.bind()).command_status
    finally:
        await esme.close()


async def test_two_instances_list_each_other_in_the_admin_api_and_metrics(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with instances(tmp_path, postgres_dsn, "a", "b") as (a, b):
        status, listing = await admin_get(a, "/instances")
        assert status == 200 and listing["this"] == "a"
        seen = {entry["id"]: entry for entry in listing["instances"]}
        assert seen.keys() == {"a", "b"}
        assert all(entry["alive"] for entry in seen.values())
        assert seen["b"]["http_url"] == b.url and seen["b"]["smpp_port"] == b.smpp_port
        assert seen["a"]["admin_url"] == a.url  # where the CLI reaches it
        # b started second: its first look at the list already had a in it.
        info = await samples(b, "smsgw_instance_info")
        assert {dict(labels)["instance"] for labels in info} == {"a", "b"}

        async def a_shows_both() -> bool:
            info = await samples(a, "smsgw_instance_info")
            return {dict(labels)["instance"] for labels in info} == {"a", "b"}

        await eventually(a_shows_both, "a's next heartbeat to list b")
    async with instances(tmp_path, postgres_dsn, "c") as (c,):
        # a and b left the list as they stopped.
        status, listing = await admin_get(c, "/instances")
        assert [entry["id"] for entry in listing["instances"]] == ["c"]


async def test_sqlite_gateway_lists_itself_alone(gateway: RunningGateway) -> None:
    status, listing = await admin_get(gateway, "/instances")
    assert status == 200
    (only,) = listing["instances"]
    assert (only["id"], only["alive"], only["http_url"]) == (listing["this"], True, gateway.url)
    assert only["smpp_port"] == gateway.smpp_port
    async with smpplib_esme(gateway.smpp_port):
        status, listing = await admin_get(gateway, "/instances")
        assert listing["instances"][0]["sessions"] == 1
    info = await samples(gateway, "smsgw_instance_info")
    assert [dict(labels)["instance"] for labels in info] == [listing["this"]]


async def test_max_sessions_holds_across_instances(tmp_path: Path, postgres_dsn: str) -> None:
    async with (
        instances(tmp_path, postgres_dsn, "a", "b", tenant=ONE_SESSION) as (a, b),
        contextlib.AsyncExitStack() as stack,
    ):
        esme = await stack.enter_async_context(smpplib_esme(a.smpp_port))
        # The tenant's one session is on a: b refuses as a full instance would.
        assert await bind_status(b.smpp_port) == S.ESME_RBINDFAIL
        assert await bind_status(a.smpp_port) == S.ESME_RBINDFAIL
        # Another tenant's sessions are not limited by acme's.
        other = await RawEsme.connect(b.smpp_port)
        assert (await other.bind("other", "other-pw")).command_status == S.ESME_ROK
        await other.close()
        # The unbind is answered once the slot is free everywhere: b binds at once.
        await esme.unbind()
        assert await bind_status(b.smpp_port) == S.ESME_ROK


async def test_two_binds_racing_for_the_last_slot_get_one_each(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with instances(tmp_path, postgres_dsn, "a", "b", tenant=ONE_SESSION) as (a, b):
        esmes = [await RawEsme.connect(port) for port in (a.smpp_port, b.smpp_port)]
        try:
            answers = await asyncio.gather(*(esme.bind() for esme in esmes))
        finally:
            for esme in esmes:
                await esme.close()
    assert sorted(answer.command_status for answer in answers) == [S.ESME_ROK, S.ESME_RBINDFAIL]


@pytest.mark.slow
async def test_a_killed_instance_stops_holding_its_sessions(
    tmp_path: Path, postgres_dsn: str
) -> None:
    configs = {
        name: instance_config(tmp_path, postgres_dsn, name, ONE_SESSION) for name in ("a", "b")
    }
    del configs["a"]["instance"]  # named on its command line
    write_toml(tmp_path / "a.toml", configs["a"])
    async with (
        gateway_process(tmp_path / "a.toml", "--instance-id", "killed") as killed,
        running_gateway(config_from_dict(configs["b"])) as b,
    ):
        status, listing = await admin_get(b, "/instances")
        assert {entry["id"] for entry in listing["instances"]} == {"killed", "b"}
        held = await RawEsme.connect(killed.smpp_port)
        assert (await held.bind()).command_status == S.ESME_ROK
        assert await bind_status(b.smpp_port) == S.ESME_RBINDFAIL
        await killed.stop(signal.SIGKILL)  # no unbind, no clean-up: its rows stay
        await held.close()

        async def bound_on_b() -> bool:
            return await bind_status(b.smpp_port) == S.ESME_ROK

        await eventually(bound_on_b, "the killed instance's session to stop counting")
        status, listing = await admin_get(b, "/instances")
        assert status == 200
        alive = {entry["id"]: entry["alive"] for entry in listing["instances"]}
        assert alive == {"b": True, "killed": False}


@pytest.mark.slow
async def test_a_restarted_instance_takes_back_at_once_what_its_killed_run_held(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Messages on their way are held under a lease far longer than the test: another
    instance must wait for it, but a restart of the same instance id knows the run it
    replaces is dead and plays them out at once (as a single gateway on SQLite does)."""
    configs = {name: instance_config(tmp_path, postgres_dsn, name) for name in ("a", "b")}
    for config in configs.values():
        config["cluster"]["notice_lease"] = "1h"
    slow = merged(configs["a"], {"simulator": {"latency": ["1h", "1h"]}})
    write_toml(tmp_path / "slow.toml", slow)
    write_toml(tmp_path / "a.toml", configs["a"])
    write_toml(tmp_path / "b.toml", configs["b"])
    message = {"to": "+46701234567", "from": "Acme", "body": "on its way"}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        async with gateway_process(tmp_path / "slow.toml") as killed:
            async with http.post(f"{killed.url}/v1/messages", json=message) as response:
                assert response.status == 202
                message_id = (await response.json())["id"]
            await killed.stop(signal.SIGKILL)
        async with gateway_process(tmp_path / "b.toml") as other:
            await other.line_with("network.resumed count=0")  # still a's, under its lease
        async with gateway_process(tmp_path / "a.toml") as restarted:
            await restarted.line_with("network.resumed count=1")

            async def delivered() -> bool:
                async with http.get(f"{restarted.url}/v1/messages/{message_id}") as response:
                    return bool((await response.json())["status"] == "delivered")

            await eventually(delivered, "the killed run's message to be delivered")


async def test_the_rate_limit_holds_for_the_tenant_across_instances(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Four batches of 30, alternating between the instances, as fast as they answer.

    Each instance alone would admit its own burst of RATE; together they admit the
    tenant's one burst plus what the bucket refills meanwhile, within the tolerance
    `gateway.cluster.leases` documents (a chunk per instance).
    """
    batch = {
        "messages": [{"to": f"+4670123{i:04d}", "from": "Acme", "body": "rate"} for i in range(30)]
    }
    tenant = {"max_submit_rate": RATE}
    async with instances(tmp_path, postgres_dsn, "a", "b", tenant=tenant) as (a, b):
        results = []
        started = time.monotonic()
        for gateway in (a, b, a, b):
            async with gateway.http.post(
                f"{gateway.url}/v1/messages/batch", json=batch, headers=gateway.headers
            ) as response:
                assert response.status == 200
                results.append(await response.json())
        elapsed = time.monotonic() - started
    accepted = sum(result["accepted"] for result in results)
    refused = [
        item["problem"] for result in results for item in result["results"] if "problem" in item
    ]
    assert accepted + len(refused) == 4 * 30
    assert {problem["code"] for problem in refused} == {"throttled"}
    chunk = math.ceil(RATE * LEASE)
    assert RATE <= accepted <= RATE + math.ceil(RATE * elapsed) + 2 * chunk
    assert results[0]["accepted"] == RATE  # the first lease took the whole, full bucket


COUNT_LEASES = """
CREATE TABLE test_leases (n INTEGER NOT NULL);
INSERT INTO test_leases VALUES (0);
CREATE FUNCTION test_count_lease() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN UPDATE test_leases SET n = n + 1; RETURN NEW; END $$;
CREATE TRIGGER test_counted AFTER UPDATE ON rate_buckets
    FOR EACH ROW EXECUTE FUNCTION test_count_lease();
"""


async def test_submits_far_over_the_rate_cost_a_lease_per_period_not_one_each(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """200 submits one by one, far faster than RATE: most are throttled, and the shared
    bucket is asked about a few times a lease period, not once a submit (a trigger
    counts the leases): a lease that is granted whole brings a chunk of tokens, one that
    comes back short makes the instance wait until a chunk could be there again."""
    async with instances(tmp_path, postgres_dsn, "a", tenant={"max_submit_rate": RATE}) as (a,):
        connection = await asyncpg.connect(postgres_dsn)
        try:
            await connection.execute(COUNT_LEASES)
            started = time.monotonic()
            statuses = [(await a.send(to=f"+4670123{i:04d}")).status for i in range(200)]
            elapsed = time.monotonic() - started
            leases = await connection.fetchval("SELECT n FROM test_leases")
        finally:
            await connection.close()
    accepted = statuses.count(202)
    assert accepted + statuses.count(429) == 200
    assert RATE <= accepted <= RATE + math.ceil(RATE * elapsed) + math.ceil(RATE * LEASE)
    chunk = math.ceil(RATE * LEASE)
    # Whole grants: one per chunk admitted. Short ones: at most one per (chunk - 1) / RATE.
    bound = math.ceil(accepted / chunk) + 1 + math.ceil(elapsed * RATE / (chunk - 1)) + 1
    assert 1 <= leases <= bound < 200 - accepted


async def test_an_instance_finding_the_retention_lock_held_skips_its_run(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with instances(tmp_path, postgres_dsn, "a", "b") as (a, b):
        async with a.app[RETENTION].exclusive() as held:  # as a's run would hold it
            assert held
            status, problem = await admin_post(b, "/retention/run")
            assert (status, problem["code"]) == (409, "retention_running")
        status, report = await admin_post(b, "/retention/run")
        assert status == 200 and report["pseudonymised"] == 0
        runs = await samples(b, RUNS)
    assert runs == {
        (("instance", "b"), ("outcome", "skipped")): 1.0,
        (("instance", "b"), ("outcome", "ran")): 1.0,
    }


@pytest.mark.slow
async def test_retention_started_on_two_instances_together_runs_on_one(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Each instance has traffic old enough to pseudonymise, so a run lasts (its worker
    process starts): the other instance's request, sent at the same moment, finds the
    lock held."""
    clock = ManualClock(time.time())
    async with contextlib.AsyncExitStack() as stack:
        a, b = [
            await stack.enter_async_context(
                running_gateway(
                    config_from_dict(instance_config(tmp_path, postgres_dsn, name)), clock
                )
            )
            for name in ("a", "b")
        ]
        for gateway in (a, b):
            finals = gateway.finals()
            assert (await gateway.send()).status == 202
            await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
        clock.advance(31 * 86400)
        answers = await asyncio.gather(*(admin_post(g, "/retention/run") for g in (a, b)))
        counts = {**await samples(a, RUNS), **await samples(b, RUNS)}
    assert sorted(status for status, _ in answers) == [200, 409]
    outcomes = {dict(labels)["instance"]: dict(labels)["outcome"] for labels in counts}
    assert sorted(outcomes.items()) in (
        [("a", "ran"), ("b", "skipped")],
        [("a", "skipped"), ("b", "ran")],
    )
    assert set(counts.values()) == {1.0}


@pytest.mark.slow
async def test_the_cli_acts_through_a_live_instance_found_in_the_database(
    tmp_path: Path, postgres_dsn: str
) -> None:
    config = tmp_path / "cli.toml"
    write_toml(config, instance_config(tmp_path, postgres_dsn, "cli"))
    code, out, err = await smsgw(config, "retention", "run")  # none live: on the store itself
    assert code == 0 and '"pseudonymised": 0' in out, err
    async with instances(tmp_path, postgres_dsn, "a") as (a,):
        code, out, err = await smsgw(config, "retention", "run")
        assert code == 0, err
        assert '"pseudonymised": 0' in out
        runs = await samples(a, RUNS)
    assert runs == {(("instance", "a"), ("outcome", "ran")): 1.0}
