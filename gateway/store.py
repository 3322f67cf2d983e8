"""Durable storage on SQLite (WAL) with group commit.

Every write is queued; one writer task commits whatever accumulated while the
previous commit ran, in one transaction. A submit is acknowledged only after
the commit that holds its row returns, so an acknowledged message survives a
crash, and under load thousands of messages share one commit instead of each
paying for its own. Reads use a second connection: WAL lets them run beside
the writer.

The traffic log (``messages``) has no body column. Bodies live in ``outbox``
while the simulated network still needs them and in ``inbox`` once a handset
received them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import aiosqlite

from gateway.config import StorageConfig
from gateway.domain import InboxEntry, Interface, Message, Status, StatusChange
from gateway.encoding import Encoding
from gateway.metrics import Metrics

log = logging.getLogger(__name__)

# Each entry upgrades the schema by one version; PRAGMA user_version records how far we are.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        interface TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        purpose TEXT NOT NULL,
        segments INTEGER NOT NULL,
        encoding TEXT NOT NULL,
        status TEXT NOT NULL,
        client_ref TEXT,
        callback_url TEXT,
        submitted_at REAL NOT NULL,
        enroute_at REAL,
        final_at REAL,
        error TEXT
    ) WITHOUT ROWID;
    CREATE INDEX messages_by_tenant ON messages (tenant, id);
    CREATE INDEX messages_by_recipient ON messages (tenant, recipient, id);
    CREATE TABLE outbox (
        message_id TEXT PRIMARY KEY,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE inbox (
        seq INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        msisdn TEXT NOT NULL,
        message_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        body TEXT NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE INDEX inbox_by_handset ON inbox (tenant, msisdn, seq);
    """,
)

# In the order of `Message`'s fields, so a row maps onto it positionally.
_MESSAGE_COLUMNS = (
    "id, tenant, interface, sender, recipient, purpose, segments, encoding, status,"
    " submitted_at, client_ref, callback_url, enroute_at, final_at, error"
)
_INSERT_MESSAGE = f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES ({', '.join('?' * 15)})"
_INSERT_BODY = "INSERT INTO outbox (message_id, body) VALUES (?, ?)"
# One statement for every transition keeps a message's changes in the order they happened.
_UPDATE_STATUS = """
    UPDATE messages SET
        status = ?1,
        enroute_at = CASE WHEN ?1 = 'enroute' THEN ?2 ELSE enroute_at END,
        final_at = CASE WHEN ?1 = 'enroute' THEN final_at ELSE ?2 END,
        error = ?3
    WHERE id = ?4
"""
_DELETE_BODY = "DELETE FROM outbox WHERE message_id = ?"
_INSERT_INBOX = (
    "INSERT INTO inbox (tenant, msisdn, message_id, sender, body, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


class StoreError(Exception):
    """The store could not commit; nothing in the failed batch was acknowledged."""


class _Batch:
    """Writes queued since the last commit."""

    __slots__ = ("after_commit", "bodies", "done_bodies", "inbox", "messages", "updates", "waiters")

    def __init__(self) -> None:
        self.messages: list[tuple[object, ...]] = []
        self.bodies: list[tuple[str, str]] = []
        self.updates: list[tuple[object, ...]] = []
        self.inbox: list[tuple[object, ...]] = []
        self.done_bodies: list[tuple[str]] = []
        self.waiters: list[asyncio.Future[None]] = []
        self.after_commit: list[Callable[[], None]] = []

    def rows(self) -> int:
        return len(self.messages) + len(self.updates) + len(self.inbox)


class Store:
    def __init__(
        self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, metrics: Metrics
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._metrics = metrics
        self._batch = _Batch()
        self._wake = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._write_loop(), name="store-writer")

    @classmethod
    async def open(cls, config: StorageConfig, metrics: Metrics) -> Store:
        path = Path(config.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await aiosqlite.connect(path, isolation_level=None)
        await writer.execute("PRAGMA journal_mode=WAL")
        await writer.execute(f"PRAGMA synchronous={config.synchronous.upper()}")
        await writer.execute("PRAGMA foreign_keys=ON")
        await _migrate(writer)
        reader = await aiosqlite.connect(path)
        await reader.execute("PRAGMA query_only=ON")
        return cls(writer, reader, metrics)

    @property
    def healthy(self) -> bool:
        return not self._task.done()

    # --- writes -------------------------------------------------------------------------

    async def add_messages(self, items: Sequence[tuple[Message, str]]) -> None:
        """Persist new messages with their bodies; returns once they are committed."""
        if self._closing:
            raise StoreError("store is closing")
        batch = self._batch
        for message, body in items:
            batch.messages.append(_message_row(message))
            batch.bodies.append((message.id, body))
        waiter = asyncio.get_running_loop().create_future()
        batch.waiters.append(waiter)
        self._wake.set()
        await waiter

    def record_status(
        self, change: StatusChange, after_commit: Callable[[], None] | None = None
    ) -> None:
        """Queue a transition; ``after_commit`` runs once it is durable."""
        batch = self._batch
        batch.updates.append((change.status.value, change.at, change.error, change.message_id))
        if change.status.is_final:
            batch.done_bodies.append((change.message_id,))
        if after_commit is not None:
            batch.after_commit.append(after_commit)
        self._wake.set()

    def record_delivery(self, entry: InboxEntry) -> None:
        """Queue a body for the handset's inbox (committed with the final status)."""
        self._batch.inbox.append(
            (
                entry.tenant,
                entry.msisdn,
                entry.message_id,
                entry.sender,
                entry.body,
                entry.received_at,
            )
        )
        self._wake.set()

    async def close(self) -> None:
        """Flush everything queued, then close both connections."""
        self._closing = True
        self._wake.set()
        await self._task
        await self._reader.close()
        await self._writer.close()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._batch.rows() or self._batch.waiters:
                batch, self._batch = self._batch, _Batch()
                await self._commit(batch)
            if self._closing:
                return

    async def _commit(self, batch: _Batch) -> None:
        started = time.perf_counter()
        db = self._writer
        try:
            await db.execute("BEGIN")
            if batch.messages:
                await db.executemany(_INSERT_MESSAGE, batch.messages)
                await db.executemany(_INSERT_BODY, batch.bodies)
            if batch.updates:
                await db.executemany(_UPDATE_STATUS, batch.updates)
            if batch.inbox:
                await db.executemany(_INSERT_INBOX, batch.inbox)
            if batch.done_bodies:
                await db.executemany(_DELETE_BODY, batch.done_bodies)
            await db.execute("COMMIT")
        except Exception as exc:
            log.error("store.commit_failed error=%s", type(exc).__name__)
            self._metrics.store_errors.inc()
            if db.in_transaction:
                await db.execute("ROLLBACK")
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(StoreError(type(exc).__name__))
            return
        self._metrics.store_commit.observe(time.perf_counter() - started)
        self._metrics.store_batch.observe(batch.rows())
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(None)
        for callback in batch.after_commit:
            callback()

    # --- reads --------------------------------------------------------------------------

    async def get_message(self, tenant: str, message_id: str) -> Message | None:
        async with self._reader.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ? AND tenant = ?",
            (message_id, tenant),
        ) as cursor:
            row = await cursor.fetchone()
        return _message_from_row(row) if row else None

    async def list_messages(
        self,
        tenant: str,
        *,
        recipient: str | None = None,
        status: Status | None = None,
        since_id: str | None = None,
        before_id: str | None = None,
        limit: int = 100,
    ) -> list[Message]:
        """Newest first; ids are time-ordered, so id bounds express ``since`` and cursors."""
        clauses = ["tenant = ?"]
        params: list[object] = [tenant]
        for clause, value in (
            ("recipient = ?", recipient),
            ("status = ?", status.value if status else None),
            ("id >= ?", since_id),
            ("id < ?", before_id),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        params.append(limit)
        sql = (
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(clauses)}"
            " ORDER BY id DESC LIMIT ?"
        )
        async with self._reader.execute(sql, params) as cursor:
            rows = await cursor.fetchall()
        return [_message_from_row(row) for row in rows]

    async def inbox(self, tenant: str, msisdn: str, limit: int = 100) -> list[InboxEntry]:
        async with self._reader.execute(
            "SELECT message_id, tenant, msisdn, sender, body, received_at FROM inbox"
            " WHERE tenant = ? AND msisdn = ? ORDER BY seq DESC LIMIT ?",
            (tenant, msisdn, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [InboxEntry(*row) for row in rows]

    async def unfinished(self) -> list[tuple[Message, str]]:
        """Messages accepted but not final (their bodies are still in the outbox)."""
        columns = ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
        async with self._reader.execute(
            f"SELECT {columns}, o.body FROM outbox o JOIN messages m ON m.id = o.message_id"
        ) as cursor:
            rows = await cursor.fetchall()
        return [(_message_from_row(row[:-1]), row[-1]) for row in rows]


async def _migrate(db: aiosqlite.Connection) -> None:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    version = row[0] if row else 0
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        await db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")


def _message_row(m: Message) -> tuple[object, ...]:
    return (
        m.id,
        m.tenant,
        m.interface.value,
        m.sender,
        m.recipient,
        m.purpose,
        m.segments,
        m.encoding.value,
        m.status.value,
        m.submitted_at,
        m.client_ref,
        m.callback_url,
        m.enroute_at,
        m.final_at,
        m.error,
    )


def _message_from_row(row: Sequence[object]) -> Message:
    values = list(row)
    values[2] = Interface(values[2])
    values[7] = Encoding(values[7])
    values[8] = Status(values[8])
    return Message(*values)  # type: ignore[arg-type]
