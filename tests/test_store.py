"""The store: a write SQLite refuses fails alone, and subject queries use their indexes."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.config import StorageBackend, StorageConfig, config_from_dict
from gateway.domain import (
    Interface,
    Message,
    Notice,
    NoticeKind,
    Outgoing,
    Status,
    StatusChange,
)
from gateway.encoding import Encoding
from gateway.metrics import Metrics
from gateway.server.appkeys import STORE
from gateway.storage.engine import _write_rows
from gateway.store import Store, StoreError
from smpp.pdu import CommandId, CommandStatus, Pdu, Tag
from tests.conftest import (
    BACKEND,
    EVENT_TIMEOUT,
    OTHER_KEY,
    CallbackReceiver,
    RunningGateway,
    running_gateway,
)
from tests.smpp_clients import RawEsme
from tests.test_consent import call

C = CommandId
S = CommandStatus
# A lone surrogate: Python holds it in a str, SQLite's binding refuses to encode it.
POISON = "\ud800"


def message(message_id: str, tenant: str = "other", client_ref: str | None = None) -> Outgoing:
    return Outgoing(
        Message(
            id=message_id,
            tenant=tenant,
            interface=Interface.HTTP,
            sender="Other",
            recipient="+46701234567",
            purpose="transactional",
            segments=1,
            encoding=Encoding.GSM7,
            status=Status.ACCEPTED,
            submitted_at=time.time(),
            client_ref=client_ref,
        ),
        "hello",
    )


def notice(message_id: str) -> Notice:
    now = time.time()
    return Notice("other", NoticeKind.RECEIPT, message_id, "+46701234567", "Other", now, now + 3600)


def commits(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("smsgw_store_batch_rows_count") or 0.0


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def store(tmp_path: Path, metrics: Metrics) -> Any:
    store = await Store.open(StorageConfig(str(tmp_path / "store.sqlite3")), metrics)
    yield store
    await store.close()


async def test_a_refused_write_fails_alone_in_its_group_commit(
    store: Store, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    traffic = store.traffic
    await traffic.add_messages([message("m1"), message("m2")])
    store.notices.keep(notice("m1"))
    await store.flush()
    [kept] = await store.notices.kept("other", time.time(), 10)
    ran: list[str] = []
    before = commits(metrics)

    # Everything below is queued before the writer wakes: tasks run in creation order,
    # and the writer, woken by the first write, only after them. One group commit.
    poisoned = asyncio.ensure_future(
        traffic.add_messages([message("a1", tenant="acme", client_ref=POISON)])
    )
    violating = asyncio.ensure_future(
        store.commit(
            "execute",
            [("INSERT INTO messages (id) VALUES (?)", [("a2",)])],  # NOT NULL columns
            after_commit=lambda: ran.append("violating"),
        )
    )
    added = asyncio.ensure_future(traffic.add_messages([message("m3")]))
    executed = asyncio.ensure_future(
        store.commit(
            "execute",
            [
                (
                    "INSERT INTO daily_counts VALUES (?, ?, ?, ?, ?)",
                    [("2026-01-01", "other", "smpp", "delivered", 1)],
                )
            ],
            after_commit=lambda: ran.append("executed"),
        )
    )
    now = time.time()
    traffic.record_status(StatusChange("m1", Status.ENROUTE, now))
    store.queue("delivery", store.inbox.delivery_steps(message("m1"), now))
    traffic.record_status(
        StatusChange("m1", Status.DELIVERED, now + 1), after_commit=lambda: ran.append("final")
    )
    traffic.replace_body("m2", "replaced")
    store.notices.forget(kept.queue_id or 0)
    store.notices.keep(notice("m2"))

    with caplog.at_level(logging.ERROR, logger="gateway.store"):
        with pytest.raises(StoreError, match="UnicodeEncodeError"):
            await asyncio.wait_for(poisoned, EVENT_TIMEOUT)
        with pytest.raises(StoreError, match="IntegrityError"):
            await asyncio.wait_for(violating, EVENT_TIMEOUT)
        await asyncio.wait_for(asyncio.gather(added, executed), EVENT_TIMEOUT)

    assert commits(metrics) == before + 1, "the writes were not in one group commit"
    assert ran == ["final", "executed"]
    assert metrics.registry.get_sample_value("smsgw_store_errors_total") == 2
    refused = [r for r in caplog.records if r.msg == "store.unit_refused"]
    assert [(r.smsgw_fields["kind"], r.smsgw_fields["error"]) for r in refused] == [  # type: ignore[attr-defined]
        ("add_messages", "UnicodeEncodeError"),
        ("execute", "IntegrityError"),
    ]
    assert POISON not in caplog.text and "a1" not in caplog.text

    assert await traffic.get_message("acme", "a1") is None
    assert await traffic.get_message("other", "m3") is not None
    delivered = await traffic.get_message("other", "m1")
    assert delivered is not None and delivered.status is Status.DELIVERED
    assert delivered.enroute_at == now and delivered.final_at == now + 1
    assert [e.message_ids for e in await store.inbox.received("other", "+46701234567")] == [("m1",)]
    unfinished = {item.message.id: item.body for item in await traffic.unfinished()}
    assert unfinished == {"m2": "replaced", "m3": "hello"}
    assert [n.message_id for n in await store.notices.kept("other", time.time(), 10)] == ["m2"]
    assert (await traffic.tenant_rows("other"))["daily_counts"] == 1

    # The next batch takes the fast path again.
    await traffic.add_messages([message("m4")])
    assert await traffic.get_message("other", "m4") is not None


def poison_beside(store: Store, owner: object, method: str) -> asyncio.Future[None]:
    """Make the next call of ``owner.<method>`` share its group commit with a poisoned write.

    The poisoned write (tenant acme's, with a value SQLite's binding refuses) is queued
    just before the call, in the same turn of the event loop, so the writer takes both.
    """
    original: Callable[..., Awaitable[None]] = getattr(owner, method)
    poisoned: asyncio.Future[asyncio.Future[None]] = asyncio.get_running_loop().create_future()

    async def beside(*args: Any, **kwargs: Any) -> None:
        setattr(owner, method, original)
        poisoned.set_result(
            asyncio.ensure_future(
                store.traffic.add_messages([message("poison", tenant="acme", client_ref=POISON)])
            )
        )
        await original(*args, **kwargs)

    setattr(owner, method, beside)

    async def outcome() -> None:
        await (await poisoned)

    return asyncio.ensure_future(outcome())


async def test_another_tenants_poisoned_write_fails_only_itself(gateway: RunningGateway) -> None:
    store = gateway.app[STORE]
    raw = await RawEsme.connect(gateway.smpp_port)
    assert (await raw.bind("other", "other-pw")).command_status == S.ESME_ROK
    poisoned = poison_beside(store, store.traffic, "add_messages")
    count = 5
    for sequence in range(2, 2 + count):
        await raw.send(
            Pdu.make(
                C.submit_sm,
                sequence,
                source_addr_ton=5,
                source_addr="Other",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr=f"4670123000{sequence}",
                registered_delivery=1,
                short_message=b"hello",
            )
        )
    answers: list[Pdu] = []
    receipts: list[Pdu] = []
    while len(answers) < count or len(receipts) < count:
        pdu = await raw.next()
        if pdu.command_id == C.submit_sm_resp:
            answers.append(pdu)
        elif pdu.command_id == C.deliver_sm:
            receipts.append(pdu)
            await raw.send(Pdu.make(C.deliver_sm_resp, pdu.sequence_number))
    with pytest.raises(StoreError):
        await asyncio.wait_for(poisoned, EVENT_TIMEOUT)
    assert [a.command_status for a in answers] == [S.ESME_ROK] * count
    ids = {a.params["message_id"] for a in answers}
    assert {r.tlvs[Tag.receipted_message_id] for r in receipts} == ids
    for message_id in ids:
        status, document = await gateway.get_json(f"/v1/messages/{message_id}", OTHER_KEY)
        assert (status, document["status"]) == (200, "delivered")
    await raw.close()

    # A consent change in the same commit as a poisoned write: recorded, answered 200.
    poisoned = poison_beside(store, store, "commit")
    status, _ = await call(
        gateway,
        "PUT",
        "/v1/consents/+46701230002",
        key=OTHER_KEY,
        json={"purpose": "marketing", "evidence": "form"},
    )
    with pytest.raises(StoreError):
        await asyncio.wait_for(poisoned, EVENT_TIMEOUT)
    assert status == 200
    status, state = await call(gateway, "GET", "/v1/consents/+46701230002", key=OTHER_KEY)
    assert [c["purpose"] for c in state["consents"]] == ["marketing"]


# Tables a subject's data lies in; each must be reached through an index on the subject.
SUBJECT_TABLES = {"messages", "inbox", "notices", "consent_events", "audit_log"}
PLAN_STEP = re.compile(r"^(SCAN|SEARCH) (\w+)(?: USING .*?\((.*)\))?")


def unindexed_steps(database: Path, statements: list[tuple[str, Sequence[object]]]) -> list[str]:
    """The plan steps of ``statements`` that read a subject table by more than the subject."""
    found = []
    with sqlite3.connect(database) as db:
        for sql, params in statements:
            for *_, detail in db.execute(f"EXPLAIN QUERY PLAN {sql}", params):
                step = PLAN_STEP.match(detail)
                if step is None or step[2] not in SUBJECT_TABLES:
                    continue
                if step[1] == "SCAN" or step[3] in (None, "tenant=?"):
                    found.append(f"{detail} in {sql[:60]}")
    db.close()
    return found


@pytest.mark.skipif(
    BACKEND is StorageBackend.POSTGRES,
    reason="reads SQLite's query plans; PostgreSQL plans a table this small by cost alone",
)
async def test_subject_requests_use_indexes_on_the_bulk_reader(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    store = gateway.app[STORE]
    sender, handset = "+46700000001", "+46701231234"
    finals = gateway.finals()
    for source in (sender, "Acme"):
        response = await gateway.send(to=handset, **{"from": source})
        assert response.status == 202
    await gateway.send(to="+46701239999", **{"from": sender})
    for _ in range(3):
        await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)

    bulk: list[tuple[str, Sequence[object]]] = []
    traffic: list[tuple[str, Sequence[object]]] = []
    engine = store.engine

    def watched(name: str, seen: list[tuple[str, Sequence[object]]]) -> None:
        read = getattr(engine, name)

        async def watching(sql: str, params: Sequence[object] = ()) -> Any:
            seen.append((sql, params))
            return await read(sql, params)

        setattr(engine, name, watching)

    async def on_writer(kind: str, steps: Any, after_commit: Any = None) -> None:
        bulk.extend((sql, params) for sql, rows in steps for params in rows)
        await commit(kind, steps, after_commit)

    commit = engine.commit
    watched("fetch_one", traffic)
    watched("fetch", traffic)
    watched("fetch_bulk", bulk)
    watched("count", bulk)
    engine.commit = on_writer  # type: ignore[method-assign]
    status, export = await gateway.get_json(f"/v1/subjects/{sender}/export")
    assert status == 200
    assert len(export["messages"]) == 2, "messages from the number are part of its export"
    status, export = await gateway.get_json(f"/v1/subjects/{handset}/export")
    assert status == 200
    assert sorted(m["from"] for m in export["messages"]) == ["+46700000001", "Acme"]
    assert [m["body"] for m in export["handset_inbox"]] == ["hello", "hello"]
    async with gateway.http.post(
        f"{gateway.url}/v1/subjects/{handset}/erase", headers=gateway.headers
    ) as response:
        assert response.status == 200
        assert (await response.json())["erased"]["messages"] == 2
    for name in ("fetch_one", "fetch", "fetch_bulk", "count", "commit"):
        delattr(engine, name)

    traffic_tables = re.compile(r"\b(messages|inbox|notices)\b")
    assert [sql for sql, _ in traffic if traffic_tables.search(sql)] == []
    assert unindexed_steps(tmp_path / "smsgw.sqlite3", traffic + bulk) == []


async def test_a_failing_commit_hook_does_not_stop_the_writer(
    store: Store, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise TypeError("a hook's own bug")

    await store.commit("hook", [], after_commit=broken)
    # The writer still commits what comes next.
    await asyncio.wait_for(store.traffic.add_messages([message("after")]), EVENT_TIMEOUT)
    assert await store.traffic.get_message("other", "after") is not None
    assert metrics.registry.get_sample_value("smsgw_store_hook_errors_total") == 1
    assert any(r.getMessage() == "store.hook_failed" for r in caplog.records)


async def test_a_message_an_earlier_version_left_accepted_resumes_enroute(
    config_dict: dict[str, Any], metrics: Metrics, callback_receiver: CallbackReceiver
) -> None:
    """New messages are committed enroute; one committed accepted is moved on when resumed."""
    store = await Store.open(config_from_dict(config_dict).storage, metrics)
    old = message("m-old")
    old.message.callback_url = callback_receiver.url
    await store.traffic.add_messages([old])
    await store.close()
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        final = await callback_receiver.next()
        resumed = await gateway.app[STORE].traffic.get_message("other", "m-old")
    assert (final["id"], final["status"]) == ("m-old", "delivered")
    assert resumed is not None and resumed.enroute_at is not None
    assert resumed.final_at is not None and resumed.final_at >= resumed.enroute_at


@pytest.mark.parametrize("count", [1, 15, 16, 17, 63, 64, 65, 337, 1000])
def test_a_batch_of_any_size_is_written_once_in_statements_of_a_few_shapes(count: int) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    shapes: set[int] = set()
    db.set_trace_callback(lambda sql: shapes.add(sql.count("),(") + 1) if "INSERT" in sql else None)
    rows = [(n, f"v{n}") for n in range(count)]
    _write_rows(db, "INSERT INTO t (id, v) VALUES {values}", rows)
    assert db.execute("SELECT id, v FROM t ORDER BY id").fetchall() == rows
    # Full statements of 256, 64 and 16 rows, then one for what is left (under 16).
    assert shapes <= {256, 64, 16, count % 16}, shapes
    db.close()
