"""Every repository method on both backends: the same calls, the same answers.

Each test runs once on a SQLite file and once on a fresh PostgreSQL database (marked
``postgres``), through `Store.open` as the gateway opens it, so a statement one
server refuses or answers differently fails here first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.config import StorageBackend, StorageConfig, config_from_dict
from gateway.domain import (
    InboundMessage,
    Interface,
    Message,
    MessageFilter,
    Notice,
    NoticeKind,
    Outgoing,
    Part,
    Status,
    StatusChange,
)
from gateway.encoding import Encoding
from gateway.ids import MessageIds
from gateway.metrics import Metrics
from gateway.server.app import StartupError
from gateway.storage import pg_schema, schema
from gateway.storage.base import Pseudonymised
from gateway.storage.pg_engine import pg_sql
from gateway.storage.pg_migrations import migrate as pg_migrate
from gateway.storage.traffic import MESSAGE_ROWS
from gateway.store import Store, StoreError
from privacy.retention_worker import pseudonymise_batch
from tests.conftest import EVENT_TIMEOUT, base_config, make_kek_file, merged, running_gateway
from tests.postgres import admin_execute, database_of, fresh_database, postgres_dsn

__all__ = ["postgres_dsn"]

HANDSET, OTHER_HANDSET = "+46701234567", "+46701239999"
SENDER_NUMBER = "+46700000001"
T0 = 1_780_000_000.0  # a fixed time, so ids, days and cutoffs are the same on every run


class Backend:
    """An open store and a raw connection beside it, to look at what was committed."""

    def __init__(self, name: str, store: Store, metrics: Metrics, where: str) -> None:
        self.name = name
        self.store = store
        self.metrics = metrics
        self.where = where  # the SQLite file, or the DSN

    async def scalar(self, sql: str, *params: object) -> Any:
        """One value through a connection of the test's own (``?`` placeholders)."""
        if self.name == "postgres":
            conn = await asyncpg.connect(self.where)
            try:
                return await conn.fetchval(pg_sql(sql), *params)
            finally:
                await conn.close()
        with sqlite3.connect(self.where) as db:
            value = db.execute(sql, params).fetchone()[0]
        db.close()
        return value


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    metrics = Metrics()
    if request.param == "sqlite":
        path = str(tmp_path / "store.sqlite3")
        opened = Backend("sqlite", await Store.open(StorageConfig(path), metrics), metrics, path)
        yield opened
        await opened.store.close()  # the test may have reopened it
        return
    async with fresh_database() as dsn:
        config = StorageConfig(backend=StorageBackend.POSTGRES, dsn=dsn)
        store = await Store.open(config, metrics)
        try:
            yield Backend("postgres", store, metrics, dsn)
        finally:
            await store.close()


def outgoing(
    tenant: str = "acme",
    recipient: str = HANDSET,
    sender: str = "Acme",
    body: str = "hello",
    *,
    at: float = T0,
    part: Part | None = None,
    submission: str | None = None,
    client_ref: str | None = None,
    encoding: Encoding = Encoding.GSM7,
) -> Outgoing:
    message = Message(
        id=MessageIds(lambda: at).next(),
        tenant=tenant,
        interface=Interface.SMPP,
        sender=sender,
        recipient=recipient,
        purpose="transactional",
        segments=2 if part else 1,
        encoding=encoding,
        status=Status.ENROUTE,
        submitted_at=at,
        client_ref=client_ref,
        callback_url="http://127.0.0.1:9/hook",
        submission=submission,
    )
    return Outgoing(message, body, part)


def notice(message_id: str, handset: str = HANDSET, *, at: float = T0, ttl: float = 60) -> Notice:
    return Notice(
        "acme", NoticeKind.RECEIPT, message_id, handset, "Acme", at, at + ttl, Status.DELIVERED
    )


def inbound(handset: str, body: str, at: float, keyword: str | None = None) -> InboundMessage:
    return InboundMessage(
        MessageIds(lambda: at).next(), "acme", handset, SENDER_NUMBER, body, keyword, at
    )


async def settle(store: Store, *calls: Awaitable[Any]) -> None:
    for call in calls:
        await asyncio.wait_for(call, EVENT_TIMEOUT)
    await asyncio.wait_for(store.flush(), EVENT_TIMEOUT)


async def test_traffic_writes_and_reads(backend: Backend) -> None:
    store = backend.store
    traffic = store.traffic
    first = outgoing(client_ref="ref-1", submission="sub-1")
    second = outgoing(recipient=OTHER_HANDSET, sender=SENDER_NUMBER, at=T0 + 1)
    part = outgoing(body="part one", at=T0 + 2, part=Part(7, 1, 2), submission="sub-1")
    theirs = outgoing(tenant="other", at=T0 + 3)
    await traffic.add_messages([first, second, part, theirs])

    got = await traffic.get_message("acme", first.message.id)
    assert got == first.message
    assert await traffic.get_message("other", first.message.id) is None, "another tenant's id"
    assert [m.id for m in await traffic.submission("acme", "sub-1")] == [
        first.message.id,
        part.message.id,
    ]

    pending = await traffic.pending_bodies("acme", [first.message.id, part.message.id, "nope"])
    assert pending == {
        first.message.id: ("hello", None),
        part.message.id: ("part one", Part(7, 1, 2)),
    }
    assert await traffic.pending_bodies("acme", []) == {}
    assert await traffic.pending_with_text("acme", "PART", 10) == [part.message.id]
    assert {o.message.id: o.body for o in await traffic.unfinished()} == {
        first.message.id: "hello",
        second.message.id: "hello",
        part.message.id: "part one",
        theirs.message.id: "hello",
    }

    traffic.replace_body(first.message.id, "replaced once")
    traffic.replace_body(first.message.id, "replaced twice")  # the last replace_sm wins
    traffic.reschedule(second.message.id, T0 + 100, T0 + 200)
    traffic.record_status(StatusChange(part.message.id, Status.ENROUTE, T0 + 5))
    hooked: list[str] = []
    traffic.record_status(
        StatusChange(part.message.id, Status.UNDELIVERABLE, T0 + 6, "unknown_subscriber"),
        after_commit=lambda: hooked.append("final"),
    )
    await settle(store)
    assert hooked == ["final"]
    assert (await traffic.pending_bodies("acme", [first.message.id]))[first.message.id][0] == (
        "replaced twice"
    )
    moved = await traffic.get_message("acme", second.message.id)
    assert moved is not None and (moved.send_at, moved.expires_at) == (T0 + 100, T0 + 200)
    ended = await traffic.get_message("acme", part.message.id)
    assert ended is not None
    assert (ended.status, ended.enroute_at, ended.final_at, ended.error) == (
        Status.UNDELIVERABLE,
        T0 + 5,
        T0 + 6,
        "unknown_subscriber",
    )
    assert await traffic.pending_bodies("acme", [part.message.id]) == {}, "a final body is gone"
    traffic.replace_body(part.message.id, "too late")  # a replace_sm that lost the race
    await settle(store)
    cleared = "SELECT count(*) FROM messages WHERE id = ? AND {} IS NULL"
    for column in ("body", "part_ref", "part_seq", "part_total", "owner", "owned_until"):
        assert await backend.scalar(cleared.format(column), part.message.id) == 1, column

    listed = await traffic.list_messages("acme")
    assert [m.id for m in listed] == [part.message.id, second.message.id, first.message.id]
    assert [m.id for m in await traffic.list_messages("acme", recipient=OTHER_HANDSET)] == [
        second.message.id
    ]
    assert [m.id for m in await traffic.list_messages("acme", sender=SENDER_NUMBER)] == [
        second.message.id
    ]
    assert [m.id for m in await traffic.list_messages("acme", status=Status.UNDELIVERABLE)] == [
        part.message.id
    ]
    assert [
        m.id
        for m in await traffic.list_messages(
            "acme", since_id=second.message.id, before_id=part.message.id
        )
    ] == [second.message.id]
    assert [m.id for m in await traffic.list_messages("acme", limit=1)] == [part.message.id]
    narrowed = MessageFilter(
        interface="smpp", encoding="gsm7", multipart=True, errors=("unknown_subscriber",)
    )
    assert [m.id for m in await traffic.list_messages("acme", narrow=narrowed)] == [part.message.id]
    assert await traffic.list_messages("acme", narrow=MessageFilter(ids=())) == []
    assert [
        m.id
        for m in await traffic.list_messages(
            "acme", narrow=MessageFilter(ids=(first.message.id,), until_id=part.message.id)
        )
    ] == [first.message.id]

    assert await traffic.recipients("acme", "", 10) == [
        (HANDSET, 2, T0 + 2),
        (OTHER_HANDSET, 1, T0 + 1),
    ]
    assert await traffic.recipient_counts("acme", "", [HANDSET, OTHER_HANDSET, "+4670"]) == {
        HANDSET: 2,
        OTHER_HANDSET: 1,
    }

    # A Twilio DELETE of a final message: counted into the day's anonymous counts, then gone.
    await store.commit("forget", traffic.forget_message("acme", part.message.id))
    assert await traffic.get_message("acme", part.message.id) is None
    assert (
        await backend.scalar(
            "SELECT count FROM daily_counts WHERE tenant = ? AND status = ?",
            "acme",
            "undeliverable",
        )
        == 1
    )


@pytest.mark.parametrize("name", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_an_earlier_releases_outbox_moves_onto_the_message_rows(
    name: str, tmp_path: Path
) -> None:
    """A database from before the body moved onto the message row upgrades: what was on
    its way resumes with its body and part; nothing of a final message is copied."""
    on_its_way = outgoing(body="still on its way", part=Part(3, 1, 2))
    sent = outgoing(at=T0 + 1, body="left behind")
    final = Outgoing(sent.message.moved_to(Status.DELIVERED, T0 + 2), sent.body)
    messages = [MESSAGE_ROWS.to_row(item.message) for item in (on_its_way, final)]
    outbox = [(item.message.id, item.body, 3, 1, 2) for item in (on_its_way, final)]
    insert_message = (
        f"INSERT INTO messages ({', '.join(MESSAGE_ROWS.columns)})"
        f" VALUES ({', '.join('?' * len(MESSAGE_ROWS.columns))})"
    )
    insert_body = (
        "INSERT INTO outbox (message_id, body, part_ref, part_seq, part_total)"
        " VALUES (?, ?, ?, ?, ?)"
    )
    if name == "sqlite":
        path = tmp_path / "old.sqlite3"
        db = sqlite3.connect(path)
        for number, script in enumerate(schema.MIGRATIONS[:-1], start=1):
            db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
        db.executemany(insert_message, messages)
        db.executemany(insert_body, outbox)
        db.commit()
        db.close()
        config = StorageConfig(str(path))
    async with contextlib.AsyncExitStack() as stack:
        if name == "postgres":
            dsn = await stack.enter_async_context(fresh_database())
            conn = await asyncpg.connect(dsn)
            await pg_migrate(conn, "store", pg_schema.MIGRATIONS[:-1])
            await conn.executemany(pg_sql(insert_message), messages)
            await conn.executemany(pg_sql(insert_body), outbox)
            await conn.close()
            config = StorageConfig(backend=StorageBackend.POSTGRES, dsn=dsn)
        store = await Store.open(config, Metrics())
        try:
            resumed = await store.traffic.unfinished()
            assert [(o.message.id, o.body, o.part) for o in resumed] == [
                (on_its_way.message.id, "still on its way", Part(3, 1, 2))
            ]
            assert await store.traffic.get_message("acme", final.message.id) == final.message
            assert await store.traffic.pending_bodies("acme", [final.message.id]) == {}
        finally:
            await store.close()


async def test_subject_requests_on_traffic(backend: Backend) -> None:
    store, traffic = backend.store, backend.store.traffic
    to_it = outgoing(recipient=HANDSET)
    from_it = outgoing(recipient=OTHER_HANDSET, sender=HANDSET, at=T0 + 1)
    unrelated = outgoing(recipient=OTHER_HANDSET, at=T0 + 2)
    await traffic.add_messages([to_it, from_it, unrelated, outgoing("other", at=T0 + 3)])
    names = [HANDSET, "pseudonym-of-it"]
    found = await traffic.subject_messages("acme", names)
    assert [m.id for m in found] == [to_it.message.id, from_it.message.id]
    assert await traffic.count_subject("acme", names) == 2
    await store.commit("erase", traffic.erase_subject("acme", names))
    assert await traffic.count_subject("acme", names) == 0
    assert await traffic.count_subject("other", names) == 1, "another tenant's rows stay"
    assert [m.id for m in await traffic.list_messages("acme")] == [unrelated.message.id]
    assert [o.message.id for o in await traffic.unfinished() if o.message.tenant == "acme"] == [
        unrelated.message.id
    ]


async def test_retention_on_traffic(backend: Backend) -> None:
    store, traffic = backend.store, backend.store.traffic
    old = [outgoing(at=T0 + n, client_ref=f"ref-{n}") for n in range(3)]
    still_open = outgoing(at=T0 + 3)
    await traffic.add_messages([*old, still_open])
    for item in old:
        traffic.record_status(StatusChange(item.message.id, Status.DELIVERED, T0 + 10))
    await settle(store)
    assert await traffic.oldest_identifiable() == T0

    rows = [
        Pseudonymised(f"pseudo-{n}", "Acme", None, T0 - 60, None, T0, "2026-05", item.message.id)
        for n, item in enumerate(old[:2])
    ]
    await traffic.pseudonymise(rows)
    await traffic.pseudonymise([rows[0]._replace(recipient="twice")])  # a second run skips it
    await traffic.pseudonymise([])
    first = await traffic.get_message("acme", old[0].message.id)
    assert first is not None
    assert (first.recipient, first.client_ref, first.callback_url, first.pseudonym_epoch) == (
        "pseudo-0",
        None,
        None,
        "2026-05",
    )
    assert (first.submitted_at, first.final_at) == (T0 - 60, T0)
    assert await traffic.oldest_identifiable() == T0 + 2
    assert await traffic.epoch_in_use("acme", "2026-05")
    assert not await traffic.epoch_in_use("other", "2026-05")

    assert await traffic.delete_submitted_before(T0 + 1.5, 1) == 1
    assert await traffic.delete_submitted_before(T0 + 1.5, 10) == 1
    assert await traffic.delete_submitted_before(T0 + 1.5, 10) == 0
    day = time.strftime("%Y-%m-%d", time.gmtime(T0 - 60))
    assert (
        await backend.scalar(
            "SELECT count FROM daily_counts WHERE day = ? AND tenant = ? AND status = ?",
            day,
            "acme",
            "delivered",
        )
        == 2
    )
    assert await traffic.epoch_in_use("acme", "2026-05") is False

    # A simulator reset: what is still on its way ends deleted, then the log goes.
    await store.commit("end", traffic.end_unfinished("acme", T0 + 20, "simulator_reset"))
    ended = await traffic.get_message("acme", still_open.message.id)
    assert ended is not None and (ended.status, ended.error) == (Status.DELETED, "simulator_reset")
    assert await traffic.unfinished() == []
    await store.commit("erase", traffic.erase_messages("acme"))
    assert await traffic.list_messages("acme") == []
    assert (await traffic.tenant_rows("acme"))["daily_counts"] == 1, "counts outlive the rows"


async def test_retentions_worker_reads_either_backend_in_a_process_of_its_own(
    backend: Backend,
) -> None:
    """The spawned worker reads the rows itself (SQLite read-only, PostgreSQL by DSN)."""
    traffic = backend.store.traffic
    items = [outgoing(at=T0 + n, sender=SENDER_NUMBER, client_ref="ref") for n in range(3)]
    await traffic.add_messages(items)
    for item in items:
        traffic.record_status(StatusChange(item.message.id, Status.DELIVERED, T0 + 10))
    await settle(backend.store)
    database = backend.where if backend.name == "postgres" else Path(backend.where).as_uri()
    loop = asyncio.get_running_loop()
    worker = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        args = (database, T0 + 60, "", 2)
        asked = await loop.run_in_executor(worker, pseudonymise_batch, *args, {}, 1, 60.0)
        assert (asked.rows, asked.last, asked.missing) == ([], "", [("acme", "2026-05")])
        keys = {("acme", "2026-05"): b"k" * 32}
        batch = await loop.run_in_executor(worker, pseudonymise_batch, *args, keys, 1, 60.0)
    finally:
        worker.shutdown(wait=True)
    assert [row.id for row in batch.rows] == [item.message.id for item in items[:2]]
    assert batch.last == items[1].message.id
    assert all(row.recipient != HANDSET and row.sender != SENDER_NUMBER for row in batch.rows)
    assert {row.client_ref for row in batch.rows} != {"ref"}
    assert all(row.submitted_at % 60 == 0 for row in batch.rows), "times coarsened"
    await traffic.pseudonymise(batch.rows)
    assert await traffic.oldest_identifiable() == T0 + 2


async def test_inbox(backend: Backend) -> None:
    store, inbox = backend.store, backend.store.inbox
    whole = outgoing(body="Your code is 1234")
    first = outgoing(body="Hello ", at=T0 + 1, part=Part(9, 1, 2))
    second = outgoing(body="world", at=T0 + 2, part=Part(9, 2, 2))
    binary = outgoing(recipient=OTHER_HANDSET, body="0a0b", at=T0 + 3, encoding=Encoding.BINARY)
    hooked: list[str] = []
    store.queue("delivery", inbox.delivery_steps(whole, T0 + 10))
    store.queue("delivery", inbox.delivery_steps(first, T0 + 11))
    store.queue(
        "delivery", inbox.delivery_steps(second, T0 + 12), lambda: hooked.append("delivered")
    )
    store.queue("delivery", inbox.delivery_steps(binary, T0 + 13))
    store.queue("delivery", inbox.delivery_steps(outgoing("other"), T0 + 14))
    await settle(store)
    assert hooked == ["delivered"]

    received = await inbox.received("acme", HANDSET)
    assert [(e.message_ids, e.body, e.parts_missing) for e in received] == [
        ((first.message.id, second.message.id), "Hello world", 0),
        ((whole.message.id,), "Your code is 1234", 0),
    ]
    assert received[0].received_at == T0 + 12
    [entry] = await inbox.received("acme", OTHER_HANDSET)
    assert entry.binary and entry.body == "0a0b"
    assert await inbox.delivered("acme", HANDSET, first.message.id) == ("Hello ", Part(9, 1, 2))
    assert await inbox.delivered("other", HANDSET, first.message.id) is None
    assert await inbox.parts("acme", [whole.message.id, binary.message.id]) == {
        whole.message.id: (HANDSET, "Your code is 1234", None),
        binary.message.id: (OTHER_HANDSET, "0a0b", None),
    }
    assert await inbox.parts("acme", []) == {}
    assert await inbox.with_text("acme", "CODE", 10) == [whole.message.id]
    exported = await inbox.for_handset("acme", HANDSET)
    assert [e.body for e in exported] == ["Your code is 1234", "Hello ", "world"]
    assert await inbox.count_handset("acme", HANDSET) == 3
    assert await inbox.handsets("acme", 10) == [(OTHER_HANDSET, 1, T0 + 13), (HANDSET, 3, T0 + 12)]
    assert await inbox.handset_counts("acme", [HANDSET, "+4670"]) == {HANDSET: 3}

    await store.commit("redact", inbox.redact_message("acme", whole.message.id))
    assert await inbox.delivered("acme", HANDSET, whole.message.id) == ("", None)
    await store.commit("erase", inbox.erase_handset("acme", OTHER_HANDSET))
    assert await inbox.count_handset("acme", OTHER_HANDSET) == 0
    assert await inbox.delete_received_before(T0 + 11.5, 1) == 1
    assert await inbox.delete_received_before(T0 + 11.5, 10) == 1
    assert await inbox.delete_received_before(T0 + 11.5, 10) == 0
    assert await inbox.tenant_rows("acme") == {"inbox": 1}
    await store.commit("purge", inbox.purge_tenant("acme"))
    assert await inbox.tenant_rows("acme") == {"inbox": 0}
    assert await inbox.tenant_rows("other") == {"inbox": 1}


async def test_inbound(backend: Backend) -> None:
    store, mo = backend.store, backend.store.inbound
    older = inbound(HANDSET, "Yes please", T0)
    newer = inbound(HANDSET, "STOP", T0 + 1, keyword="stop")
    elsewhere = inbound(OTHER_HANDSET, "Hi", T0 + 2)
    for item in (older, newer, elsewhere):
        mo.record(item)
    await settle(store)
    assert await mo.received("acme") == [elsewhere, newer, older]
    assert await mo.received("acme", before_id=newer.message_id, limit=5) == [older]
    assert await mo.received("other") == []
    assert await mo.for_handset("acme", HANDSET) == [older, newer]
    assert await mo.count_handset("acme", HANDSET) == 2
    assert await mo.handsets("acme", 10) == [(OTHER_HANDSET, 1, T0 + 2), (HANDSET, 2, T0 + 1)]
    assert await mo.latest("acme", [HANDSET, OTHER_HANDSET, "+4670"]) == {
        HANDSET: newer,
        OTHER_HANDSET: elsewhere,
    }
    assert await mo.handset_counts("acme", [HANDSET, OTHER_HANDSET]) == {
        HANDSET: 2,
        OTHER_HANDSET: 1,
    }
    await store.commit("erase", mo.erase_handset("acme", OTHER_HANDSET))
    assert await mo.count_handset("acme", OTHER_HANDSET) == 0
    assert await mo.delete_received_before(T0 + 0.5, 10) == 1
    assert await mo.delete_received_before(T0 + 0.5, 10) == 0
    assert await mo.tenant_rows("acme") == {"inbound": 1}
    await store.commit("purge", mo.purge_tenant("acme"))
    assert await mo.tenant_rows("acme") == {"inbound": 0}


async def test_notices(backend: Backend) -> None:
    store, notices = backend.store, backend.store.notices
    kept = [notice("m1"), notice("m2", OTHER_HANDSET), notice("m3", ttl=1)]
    hooked: list[str] = []
    for item in kept:
        notices.keep(item, after_commit=functools.partial(hooked.append, item.message_id))
    await settle(store)
    ids = [item.queue_id or 0 for item in kept]
    assert 0 not in ids and ids == sorted(ids) and len(set(ids)) == 3
    assert hooked == ["m1", "m2", "m3"]
    assert [n.message_id for n in await notices.kept("acme", T0 + 2, 10)] == ["m1", "m2"]
    assert await notices.kept("acme", T0 + 2, 10) == kept[:2]
    assert await notices.kept("other", T0, 10) == []
    assert await notices.expired(T0 + 2) == [(ids[2], "acme")]
    assert await notices.count_by_tenant() == {"acme": 3}
    assert [n.message_id for n in await notices.for_handset("acme", HANDSET)] == ["m1", "m3"]
    assert await notices.count_handset("acme", HANDSET) == 2

    notices.forget(ids[0])
    await settle(store)
    assert [n.message_id for n in await notices.kept("acme", T0, 10)] == ["m2", "m3"]
    await store.commit("erase", notices.erase_handset("acme", OTHER_HANDSET))
    assert await notices.count_handset("acme", OTHER_HANDSET) == 0
    assert await notices.delete_stale(T0 - 1, T0 + 2, 10) == 1, "m3 expired"
    assert await notices.delete_stale(T0 - 1, T0 + 2, 10) == 0
    notices.keep(notice("m4"))
    await settle(store)
    assert await notices.tenant_rows("acme") == {"notices": 1}
    await store.commit("purge", notices.purge_tenant("acme"))
    assert await notices.tenant_rows("acme") == {"notices": 0}


async def test_notice_ids_stay_unique_across_a_reopen(backend: Backend, tmp_path: Path) -> None:
    """Ids continue after a restart; on PostgreSQL two stores at once never collide."""
    first = notice("m1")
    backend.store.notices.keep(first)
    await settle(backend.store)
    if backend.name == "postgres":
        config = StorageConfig(backend=StorageBackend.POSTGRES, dsn=backend.where)
        beside = await Store.open(config, Metrics())  # a second instance on the same database
        try:
            second = notice("m2")
            beside.notices.keep(second)
            third = notice("m3")
            backend.store.notices.keep(third)
            await settle(beside)
            await settle(backend.store)
        finally:
            await beside.close()
        queued = [first.queue_id, second.queue_id, third.queue_id]
        assert len(set(queued)) == 3
        assert await backend.store.notices.count_by_tenant() == {"acme": 3}
    else:
        await backend.store.close()
        backend.store = await Store.open(StorageConfig(backend.where), backend.metrics)
        second = notice("m2")
        backend.store.notices.keep(second)
        await settle(backend.store)
        assert (second.queue_id or 0) > (first.queue_id or 0)


async def test_consent(backend: Backend) -> None:
    store, consent = backend.store, backend.store.consent
    rows = [
        ("acme", "subject-b", "opt_out", None, None, "sms", "STOP", T0),
        ("acme", "subject-a", "consent", "marketing", "Acme", "api", "form", T0 + 1),
        ("acme", "subject-b", "opt_in", None, None, "sms", "START", T0 + 2),
        ("other", "subject-a", "opt_out", None, None, "api", "call", T0 + 3),
    ]
    await store.commit("consent", consent.append(rows))
    events = await consent.events("acme", ["subject-b", "subject-a"])
    assert [row[1:] for row in events] == rows[:3]
    assert [row[0] for row in events] == sorted(row[0] for row in events)
    many = [f"subject-{n:04d}" for n in range(1200)] + ["subject-a"]  # more than one chunk
    assert [row[2] for row in await consent.events("acme", many)] == ["subject-a"]
    assert [row[3] for row in await consent.history("acme", "subject-b")] == ["opt_out", "opt_in"]
    assert await consent.subjects_after("acme", "", 10) == ["subject-a", "subject-b"]
    assert await consent.subjects_after("acme", "subject-a", 10) == ["subject-b"]
    assert [page async for page in consent.subject_pages("acme", 1)] == [
        ["subject-a"],
        ["subject-b"],
    ]
    assert await consent.count_subject("acme", "subject-b") == 2
    await store.commit("erase", consent.erase_subject("acme", "subject-b"))
    assert await consent.count_subject("acme", "subject-b") == 0
    assert await consent.tenant_rows("acme") == {"consent_events": 1}
    await store.commit("purge", consent.purge_tenant("acme"))
    assert await consent.tenant_rows("acme") == {"consent_events": 0}
    assert await consent.tenant_rows("other") == {"consent_events": 1}


async def test_audit(backend: Backend) -> None:
    store, audit = backend.store, backend.store.audit

    def entry(tenant: str, n: int, subject: str | None) -> tuple[Any, ...]:
        salt = None if subject is None else f"salt-{n}"
        return (tenant, T0 + n, "api", "erase", subject, salt, f"c{n}", "{}", f"h{n - 1}", f"h{n}")

    await store.commit(
        "audit", audit.append([entry("acme", 1, "subject-a"), entry("acme", 2, None)])
    )
    await store.commit("audit", audit.append([entry("other", 3, "subject-a")]))
    assert await audit.heads() == {"acme": "h2", "other": "h3"}
    assert await audit.head("acme") == (1, "h2"), "the head's seq counts from 0"
    assert await audit.head("nobody") is None
    assert await audit.tenants() == {"acme", "other"}
    listed = await audit.entries("acme", None, 10)
    assert [(row[1], row[4], row[5], row[7]) for row in listed] == [
        ("acme", "erase", None, "h2"),
        ("acme", "erase", "subject-a", "h1"),
    ]
    assert [row[7] for row in await audit.entries("acme", listed[0][0], 10)] == ["h1"]
    chain = await audit.chain_after("acme", 0)
    assert [row[1:] for row in chain] == [
        entry("acme", n, s)[1:] for n, s in ((1, "subject-a"), (2, None))
    ]
    assert [row[9] for row in await audit.chain_after("acme", chain[0][0])] == ["h2"]

    await store.commit("redact", audit.redact("acme", "subject-a"))
    assert [row[4:6] for row in await audit.chain_after("acme", 0)] == [(None, None), (None, None)]
    assert [row[4] for row in await audit.chain_after("other", 0)] == ["subject-a"]
    assert await audit.tenant_rows("acme") == {"audit_log": 2, "audit_heads": 1}
    await store.commit("purge", audit.purge_tenant("acme"))
    assert await audit.tenant_rows("acme") == {"audit_log": 0, "audit_heads": 0}
    assert await audit.heads() == {"other": "h3"}


async def test_an_erasure_across_repositories_commits_as_one_unit(backend: Backend) -> None:
    """Steps of several repositories in one Store.commit: all of them, or none."""
    store = backend.store
    item = outgoing()
    await store.traffic.add_messages([item])
    store.queue("delivery", store.inbox.delivery_steps(item, T0 + 1))
    store.notices.keep(notice(item.message.id))
    store.inbound.record(inbound(HANDSET, "hi", T0))
    await store.commit(
        "consent",
        store.consent.append([("acme", "subject", "opt_out", None, None, "sms", "STOP", T0)]),
    )
    await settle(store)

    def erasure(*extra: Any) -> list[Any]:
        return [
            *store.traffic.erase_subject("acme", [HANDSET]),
            *store.inbox.erase_handset("acme", HANDSET),
            *store.inbound.erase_handset("acme", HANDSET),
            *store.notices.erase_handset("acme", HANDSET),
            *store.consent.erase_subject("acme", "subject"),
            *extra,
        ]

    # One step the server refuses (a NOT NULL column) takes the whole erasure with it.
    with pytest.raises(StoreError):
        await store.commit("erase", erasure(("INSERT INTO messages (id) VALUES (?)", [("x",)])))
    assert await store.traffic.count_subject("acme", [HANDSET]) == 1
    assert await store.inbox.count_handset("acme", HANDSET) == 1
    assert await store.consent.count_subject("acme", "subject") == 1

    await store.commit("erase", erasure())
    assert await store.traffic.count_subject("acme", [HANDSET]) == 0
    assert await store.inbox.count_handset("acme", HANDSET) == 0
    assert await store.inbound.count_handset("acme", HANDSET) == 0
    assert await store.notices.count_handset("acme", HANDSET) == 0
    assert await store.consent.count_subject("acme", "subject") == 0


async def test_purge_tenant_deletes_every_row_of_the_tenant_only(backend: Backend) -> None:
    store = backend.store
    for n, tenant in enumerate(("acme", "other")):
        item = outgoing(tenant, at=T0 + n)
        await store.traffic.add_messages([item])
        store.traffic.record_status(StatusChange(item.message.id, Status.DELIVERED, T0 + 1))
        store.queue("delivery", store.inbox.delivery_steps(item, T0 + 1))
        await store.commit(
            "audit",
            store.audit.append([(tenant, T0, "api", "x", None, None, "c", "{}", "", "h")]),
        )
    await settle(store)
    await store.commit("purge", [s for r in store.repositories for s in r.purge_tenant("acme")])
    await store.checkpoint()  # VACUUM on PostgreSQL, the WAL truncated on SQLite
    if backend.name == "postgres":
        vacuumed = "SELECT count(*) FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL"
        assert await backend.scalar(vacuumed) == len(pg_schema.TABLES)
    else:
        assert await asyncio.to_thread(os.path.getsize, f"{backend.where}-wal") == 0
    counts: dict[str, int] = {}
    for repository in store.repositories:
        counts.update(await repository.tenant_rows("acme"))
    assert set(counts.values()) == {0}
    assert (await store.traffic.tenant_rows("other"))["messages"] == 1
    assert await store.audit.heads() == {"other": "h"}


async def test_a_refused_unit_fails_alone_in_its_group_commit(backend: Backend) -> None:
    store, traffic = backend.store, backend.store.traffic
    good, also_good = outgoing(), outgoing(at=T0 + 1)
    before = backend.metrics.registry.get_sample_value("smsgw_store_batch_rows_count") or 0
    ran: list[str] = []
    # Queued in one turn of the event loop: the writer takes all of them in one commit.
    added = asyncio.ensure_future(traffic.add_messages([good]))
    refused = asyncio.ensure_future(
        store.commit(
            "bad",
            [("INSERT INTO messages (id) VALUES (?)", [("bad",)])],
            after_commit=lambda: ran.append("bad"),
        )
    )
    duplicate = asyncio.ensure_future(traffic.add_messages([good]))  # the same primary key
    also = asyncio.ensure_future(store.commit("also", [], after_commit=lambda: ran.append("also")))
    also_added = asyncio.ensure_future(traffic.add_messages([also_good]))
    with pytest.raises(StoreError):
        await asyncio.wait_for(refused, EVENT_TIMEOUT)
    with pytest.raises(StoreError):
        await asyncio.wait_for(duplicate, EVENT_TIMEOUT)
    await asyncio.wait_for(asyncio.gather(added, also, also_added), EVENT_TIMEOUT)
    after = backend.metrics.registry.get_sample_value("smsgw_store_batch_rows_count")
    assert after == before + 1, "one group commit"
    assert ran == ["also"]
    assert backend.metrics.registry.get_sample_value("smsgw_store_errors_total") == 2
    assert [m.id for m in await traffic.list_messages("acme")] == [
        also_good.message.id,
        good.message.id,
    ]
    # The next batch takes the fast path again.
    await traffic.add_messages([outgoing(at=T0 + 2)])
    assert len(await traffic.list_messages("acme")) == 3


async def test_a_write_is_acknowledged_only_after_its_commit(backend: Backend) -> None:
    """While another session holds the table, the commit, its answer and its hook wait."""
    store, item = backend.store, outgoing()
    hooked = asyncio.Event()
    if backend.name == "postgres":
        blocker: Any = await asyncpg.connect(backend.where)
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE messages IN EXCLUSIVE MODE")
    else:
        blocker = sqlite3.connect(backend.where, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
    try:
        adding = asyncio.ensure_future(store.traffic.add_messages([item]))
        store.engine.queue("hook", [], after_commit=hooked.set)
        done, _ = await asyncio.wait([adding], timeout=0.5)
        assert not done, "acknowledged while the commit could not have happened"
        assert not hooked.is_set()
        assert await backend.scalar("SELECT count(*) FROM messages") == 0
    finally:
        if backend.name == "postgres":
            await transaction.rollback()
            await blocker.close()
        else:
            blocker.execute("ROLLBACK")
            blocker.close()
    await asyncio.wait_for(adding, EVENT_TIMEOUT)
    await asyncio.wait_for(hooked.wait(), EVENT_TIMEOUT)
    assert await backend.scalar("SELECT count(*) FROM messages") == 1


@pytest.mark.postgres
async def test_readyz_says_whether_the_database_answers(tmp_path: Path, postgres_dsn: str) -> None:
    """Ready once migrated; 503 while the database refuses connections; ready again after."""
    storage = {"backend": "postgres", "dsn": postgres_dsn}
    privacy = {"kek_file": str(make_kek_file(tmp_path / "kek"))}
    config = config_from_dict(
        merged(base_config(tmp_path), {"storage": storage, "privacy": privacy})
    )
    name = database_of(postgres_dsn)
    async with running_gateway(config) as gateway:
        assert await gateway.get_json("/readyz") == (200, {"status": "ready"})
        assert (await gateway.send()).status == 202
        await admin_execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        await admin_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        assert await gateway.get_json("/readyz") == (503, {"status": "store_unavailable"})
        refused = await gateway.send()
        assert refused.status >= 500, "nothing acknowledged that was not committed"
        await admin_execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        assert await gateway.get_json("/readyz") == (200, {"status": "ready"})
        response = await gateway.send()
        assert response.status == 202
        message_id = (await response.json())["id"]
        assert (await gateway.get_json(f"/v1/messages/{message_id}"))[0] == 200


async def test_a_database_that_cannot_be_reached_stops_the_start_naming_it(
    tmp_path: Path,
) -> None:
    """One line naming host, port and database; never the password in the DSN."""
    storage = {"backend": "postgres", "dsn": "postgresql://smsgw:s3cret@127.0.0.1:1/smsgw"}
    privacy = {"kek_file": str(make_kek_file(tmp_path / "kek"))}
    config = config_from_dict(
        merged(base_config(tmp_path), {"storage": storage, "privacy": privacy})
    )
    with pytest.raises(StartupError, match=r"^storage\.dsn 127\.0\.0\.1:1/smsgw: cannot open") as e:
        async with running_gateway(config):
            pass
    assert "s3cret" not in str(e.value)
