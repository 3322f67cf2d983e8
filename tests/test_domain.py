"""Domain objects that cannot drift from their columns, their copies and their wire forms."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path
from typing import Any

from gateway.config import StorageConfig
from gateway.domain import (
    Interface,
    Message,
    Notice,
    NoticeKind,
    Outgoing,
    ReceiptRequest,
    RejectCode,
    Status,
)
from gateway.encoding import Encoding
from gateway.metrics import Metrics
from gateway.server.appkeys import SMPP_SERVER
from gateway.server.http_api import REJECT_STATUS as HTTP_STATUS
from gateway.storage.notices import CLAIM_COLUMNS, NOTICE_ROWS
from gateway.storage.schema import migrate
from gateway.storage.traffic import MESSAGE_ROWS, ON_ITS_WAY
from gateway.store import Store
from tests.conftest import RunningGateway

# Only these change when a message moves to another state.
MOVING = {"status", "enroute_at", "final_at", "error"}


def every_field_set() -> Message:
    """A message with no field at its default, each value told apart from the others."""
    return Message(
        id="0123456789abcdef0123",
        tenant="acme",
        interface=Interface.SMPP,
        sender="+46700000001",
        recipient="+46701234567",
        purpose="marketing",
        segments=3,
        encoding=Encoding.UCS2,
        status=Status.ACCEPTED,
        submitted_at=1000.5,
        client_ref="ref-1",
        callback_url="https://example.com/cb",
        enroute_at=1001.5,
        final_at=1002.5,
        error="earlier",
        receipt=ReceiptRequest.FAILURE,
        pseudonym_epoch="2026-01",
        message_class=2,
        submission="0123456789abcdef0000",
        send_at=1_700_000_500.0,
        expires_at=1_700_172_800.0,
    )


def table_columns(path: Path, table: str) -> set[str]:
    with sqlite3.connect(path) as db:
        migrate(db)
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    db.close()
    return columns


def test_message_columns_are_its_fields_and_its_table(tmp_path: Path) -> None:
    fields = tuple(f.name for f in dataclasses.fields(Message))
    assert MESSAGE_ROWS.columns == fields
    assert set(fields) | set(ON_ITS_WAY) == table_columns(tmp_path / "schema.sqlite3", "messages")
    notice_columns = {"id" if c == "queue_id" else c for c in NOTICE_ROWS.columns}
    assert notice_columns | set(CLAIM_COLUMNS) == table_columns(
        tmp_path / "schema.sqlite3", "notices"
    )


def test_every_default_is_overridden_by_the_sample() -> None:
    """The tests below see a dropped field only if the sample differs from its default."""
    sample = every_field_set()
    for f in dataclasses.fields(Message):
        assert getattr(sample, f.name) != f.default, f.name


def test_a_status_change_keeps_every_other_field() -> None:
    before = every_field_set()
    for status, at, error in (
        (Status.ENROUTE, 2000.0, None),
        (Status.DELIVERED, 3000.0, None),
        (Status.UNDELIVERABLE, 3000.0, "no_route"),
    ):
        after = before.moved_to(status, at, error)
        for name in {f.name for f in dataclasses.fields(Message)} - MOVING:
            assert getattr(after, name) == getattr(before, name), name
        assert (after.status, after.error) == (status, error)
        if status is Status.ENROUTE:
            assert (after.enroute_at, after.final_at) == (at, before.final_at)
        else:
            assert (after.enroute_at, after.final_at) == (before.enroute_at, at)


async def test_every_field_survives_the_store(tmp_path: Path) -> None:
    store = await Store.open(StorageConfig(str(tmp_path / "store.sqlite3")), Metrics())
    try:
        message = every_field_set()
        await store.traffic.add_messages([Outgoing(message, "hello")])
        assert await store.traffic.get_message("acme", message.id) == message
        now = time.time()
        notice = Notice(
            tenant="acme",
            kind=NoticeKind.MO,
            message_id=message.id,
            handset="+46701234567",
            address="+46700000001",
            created_at=now,
            expires_at=now + 60,
            status=Status.DELIVERED,
            error="none",
            submitted_at=now - 1,
            body="STOP",
            keyword="stop",
        )
        store.notices.keep(notice)
        await store.flush()
        assert await store.notices.kept("acme", now, 10) == [notice]
        unset: dict[str, Any] = {"status": None, "error": None, "submitted_at": None}
        bare = dataclasses.replace(notice, message_id="m2", keyword=None, **unset)
        store.notices.keep(bare)
        await store.flush()
        assert (await store.notices.kept("acme", now, 10))[1] == bare
    finally:
        await store.close()


async def test_every_reject_code_has_an_http_status_and_an_smpp_status(
    gateway: RunningGateway,
) -> None:
    assert set(HTTP_STATUS) == set(RejectCode)
    assert set(gateway.app[SMPP_SERVER].translator.reject_status) == set(RejectCode)
