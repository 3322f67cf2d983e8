"""One tenant's audit chain written through two instances on one PostgreSQL database.

Each instance used to link entries to the head it cached, so entries appended through both
forked the chain and verification reported a tamper that never happened. The entries are
linked in the commit now; these tests append through both at once and verify on each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from gateway.config import StorageBackend, StorageConfig
from gateway.metrics import Metrics
from gateway.store import Store
from privacy.audit import AuditEntry, AuditLog, chain_hash, verify
from tests.conftest import ADMIN_TOKEN, RunningGateway
from tests.postgres import postgres_dsn
from tests.test_admin import admin_call
from tests.test_cluster_fanout import pair
from tests.test_consent import call

__all__ = ["pair", "postgres_dsn"]

pytestmark = pytest.mark.postgres

# Per instance: opt-outs, consent grants and a data-subject export, each one entry.
ROUNDS = 6


async def actions(gateway: RunningGateway, instance: int) -> int:
    """Audit-producing requests through ``gateway``, several in flight at once; how many."""
    calls = []
    for n in range(ROUNDS):
        number = f"+4670{instance}{n:06d}"
        calls.append(call(gateway, "POST", "/v1/opt-outs", json={"msisdns": [number]}))
        calls.append(call(gateway, "PUT", f"/v1/consents/{number}", json={"purpose": "marketing"}))
        calls.append(call(gateway, "GET", f"/v1/subjects/{number}/export"))
    answers = await asyncio.gather(*calls)
    assert [status for status, _ in answers] == [200] * len(calls), answers
    return len(calls)


async def verdict(gateway: RunningGateway) -> dict[str, Any]:
    status, document = await admin_call(
        gateway.http, "GET", f"{gateway.url}/admin/v1/audit/verify", ADMIN_TOKEN
    )
    assert status == 200
    assert isinstance(document, dict)
    return document


async def test_entries_appended_through_two_instances_at_once_make_one_chain(
    pair: tuple[RunningGateway, RunningGateway], postgres_dsn: str
) -> None:
    a, b = pair
    counts = await asyncio.gather(actions(a, 1), actions(b, 2), actions(a, 3), actions(b, 4))
    for gateway in (a, b):
        document = await verdict(gateway)
        assert document["ok"] is True, document
        [acme] = [t for t in document["tenants"] if t["tenant"] == "acme"]
        assert acme["entries"] == sum(counts)

    db = await asyncpg.connect(postgres_dsn)
    try:
        middle = await db.fetchval(
            "SELECT seq FROM audit_log WHERE tenant = 'acme' ORDER BY seq OFFSET $1 LIMIT 1",
            sum(counts) // 2,
        )
        await db.execute("UPDATE audit_log SET actor = 'someone else' WHERE seq = $1", middle)
    finally:
        await db.close()
    for gateway in (a, b):
        document = await verdict(gateway)
        assert document["ok"] is False
        [acme] = [t for t in document["tenants"] if t["tenant"] == "acme"]
        assert (acme["ok"], acme["broken_at"]) == (False, middle)


@pytest.fixture
async def two_stores(postgres_dsn: str) -> AsyncIterator[tuple[Store, Store]]:
    config = StorageConfig(backend=StorageBackend.POSTGRES, dsn=postgres_dsn)
    first = await Store.open(config, Metrics())
    second = await Store.open(config, Metrics())
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_the_database_links_with_the_verifiers_formula(
    two_stores: tuple[Store, Store],
) -> None:
    """Text JSON escapes, numbers Python and PostgreSQL print differently: the same hash."""
    first, second = two_stores
    logs = [await AuditLog.open(first), await AuditLog.open(second)]
    details = ['quote " backslash \\ newline \n tab \t', "\x01\x1f\x7f", "åäö ☃ 😀 \u2028", ""]
    moments = [1000.0, 0.1, 1e16, 1764612345.123456, -0.0]
    entries = [
        AuditEntry("acme", at, "actor ✓", "opt_out", f"subject-{i}" if i % 2 else None, detail)
        for i, (at, detail) in enumerate((at, d) for at in moments for d in details)
    ]
    for i in range(0, len(entries), 3):
        log = logs[(i // 3) % 2]
        await asyncio.gather(*(log.append([entry]) for entry in entries[i : i + 3]))
    [verdict_] = await verify(first)
    assert (verdict_.ok, verdict_.entries) == (True, len(entries))
    chain = await first.audit.chain_after("acme", 0)
    prev = "0" * 64
    for seq, at, actor, action, subject, _salt, commitment, detail, prev_hash, digest in chain:
        entry = AuditEntry("acme", at, actor, action, subject, detail)
        assert (prev_hash, digest) == (prev, chain_hash(prev, entry, commitment)), seq
        prev = digest
    assert await first.audit.head("acme") == (len(entries) - 1, prev)


async def test_a_purge_meeting_another_instances_appends_leaves_a_chain_that_verifies(
    two_stores: tuple[Store, Store],
) -> None:
    """A purge takes the chain's lock: an entry linked meanwhile never points at a lost head."""
    first, second = two_stores
    log = await AuditLog.open(second)
    for round_ in range(10):
        entries = [
            AuditEntry("acme", float(round_), "a", "opt_out", None, str(n)) for n in range(4)
        ]
        await log.append(entries[:2])
        await asyncio.gather(
            first.commit("purge", first.audit.purge_tenant("acme")),
            *(log.append([entry]) for entry in entries[2:]),
        )
        verdicts = await verify(first)
        assert all(v.ok for v in verdicts), verdicts
