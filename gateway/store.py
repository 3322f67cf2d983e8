"""Durable storage on SQLite (WAL) with group commit.

Every write is queued; one writer task commits whatever accumulated while the
previous commit ran, in one transaction. A submit is acknowledged only after
the commit that holds its row returns, so an acknowledged message survives a
crash, and under load thousands of messages share one commit instead of each
paying for its own. Each call's writes are a unit of their own (`_Unit`): if the
batch fails, it is replayed unit by unit, so a value SQLite refuses fails only
the call that brought it, never another tenant's traffic in the same commit.
Reads use connections of their own (aiosqlite), WAL lets them run beside the
writer: one for the short reads on the path of traffic, one for long scans.

The writer is a plain sqlite3 connection on a thread of its own, and a whole
group commit is one call to that thread. With aiosqlite each statement is a
round trip whose answer waits for a turn of the busy event loop: a commit of
nine statements took 225 ms under SMPP load, and submits waited for it.

The traffic log (``messages``) has no body column. Bodies live in ``outbox``
while the simulated network still needs them and in ``inbox`` once a handset
received them.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.config import StorageConfig
from gateway.domain import (
    InboxEntry,
    Interface,
    Message,
    Notice,
    NoticeKind,
    Outgoing,
    Part,
    ReceiptRequest,
    Status,
    StatusChange,
)
from gateway.encoding import Encoding
from gateway.logs import log_event
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
    # SMPP: receipts on request, concatenated parts, notices kept for unbound receivers.
    """
    ALTER TABLE messages ADD COLUMN receipt INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN part_ref INTEGER;
    ALTER TABLE outbox ADD COLUMN part_seq INTEGER;
    ALTER TABLE outbox ADD COLUMN part_total INTEGER;
    ALTER TABLE inbox ADD COLUMN part_ref INTEGER;
    ALTER TABLE inbox ADD COLUMN part_seq INTEGER;
    ALTER TABLE inbox ADD COLUMN part_total INTEGER;
    CREATE TABLE notices (
        id INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        kind TEXT NOT NULL,
        message_id TEXT NOT NULL,
        handset TEXT NOT NULL,
        address TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        status TEXT,
        error TEXT,
        submitted_at REAL,
        body TEXT NOT NULL
    );
    CREATE INDEX notices_by_tenant ON notices (tenant, id);
    """,
    # Privacy: the consent / opt-out registry (append-only events, subjects as keyed
    # pseudonyms) and the hash-chained audit log with one head per tenant.
    """
    CREATE TABLE consent_events (
        seq INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        subject TEXT NOT NULL,
        kind TEXT NOT NULL,
        purpose TEXT,
        sender TEXT,
        source TEXT NOT NULL,
        evidence TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX consent_by_subject ON consent_events (tenant, subject, seq);
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT,
        salt TEXT,
        commitment TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_by_subject ON audit_log (tenant, subject) WHERE subject IS NOT NULL;
    CREATE INDEX audit_by_tenant ON audit_log (tenant, seq);
    CREATE TABLE audit_heads (
        tenant TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # Retention: pseudonymised rows name their key epoch; identifiable rows are found
    # through a partial index; anonymous daily counts outlive deleted rows.
    """
    ALTER TABLE messages ADD COLUMN pseudonym_epoch TEXT;
    CREATE INDEX messages_identifiable ON messages (id) WHERE pseudonym_epoch IS NULL;
    CREATE INDEX messages_by_epoch ON messages (tenant, pseudonym_epoch)
        WHERE pseudonym_epoch IS NOT NULL;
    CREATE INDEX inbox_by_time ON inbox (received_at);
    CREATE TABLE daily_counts (
        day TEXT NOT NULL,
        tenant TEXT NOT NULL,
        interface TEXT NOT NULL,
        status TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (day, tenant, interface, status)
    ) WITHOUT ROWID;
    """,
    # A kept mobile-originated notice remembers the keyword it matched (for its TLV).
    """
    ALTER TABLE notices ADD COLUMN keyword TEXT;
    """,
    # Data-subject requests find a number as sender too, and kept notices by handset,
    # through an index each instead of a scan of the tenant's rows.
    """
    CREATE INDEX messages_by_sender ON messages (tenant, sender, id);
    CREATE INDEX notices_by_handset ON notices (tenant, handset, id);
    """,
)

# In the order of `Message`'s fields, so a row maps onto it positionally.
MESSAGE_COLUMNS = (
    "id, tenant, interface, sender, recipient, purpose, segments, encoding, status,"
    " submitted_at, client_ref, callback_url, enroute_at, final_at, error, receipt,"
    " pseudonym_epoch"
)
# The group commit's statements write many rows each: ``{values}`` becomes up to
# `_MAX_PARAMETERS` worth of "(?, ...)" groups (see `_write_rows` for why).
_INSERT_MESSAGE = f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES {{values}}"
_INSERT_BODY = (
    "INSERT INTO outbox (message_id, body, part_ref, part_seq, part_total) VALUES {values}"
)
_REPLACE_BODY = (
    "UPDATE outbox SET body = v.column1 FROM (VALUES {values}) AS v"
    " WHERE outbox.message_id = v.column2"
)
# A message's transitions within one batch are folded into one row (see record_status).
_UPDATE_STATUS = """
    UPDATE messages SET
        status = v.column1,
        enroute_at = coalesce(v.column2, enroute_at),
        final_at = coalesce(v.column3, final_at),
        error = v.column4
    FROM (VALUES {values}) AS v
    WHERE messages.id = v.column5
"""
_DELETE_BODY = "DELETE FROM outbox WHERE message_id IN (VALUES {values})"
_INSERT_INBOX = (
    "INSERT INTO inbox (tenant, msisdn, message_id, sender, body, received_at,"
    " part_ref, part_seq, part_total) VALUES {values}"
)
_NOTICE_COLUMNS = (
    "tenant, kind, message_id, handset, address, created_at, expires_at, status, error,"
    " submitted_at, body, keyword"
)
_INSERT_NOTICE = f"INSERT INTO notices (id, {_NOTICE_COLUMNS}) VALUES {{values}}"
_DELETE_NOTICE = "DELETE FROM notices WHERE id IN (VALUES {values})"
# SQLite's default limit on host parameters in one statement (SQLITE_MAX_VARIABLE_NUMBER).
_MAX_PARAMETERS = 32766


class StoreError(Exception):
    """The store could not commit this write; nothing of it was acknowledged."""


# One unit's writes: (statement, rows) pairs. A statement in `_PHASES` is a template
# whose ``{values}`` stands for many rows; any other is run once per row.
Steps = Sequence[tuple[str, Sequence[Sequence[object]]]]


class _Unit:
    """One call's writes (one add_messages, one execute, one record_status...).

    The unit is what commits or is refused as a whole: a batch whose statements fail
    together is replayed unit by unit, so one caller's bad value refuses only its own
    write. ``kind`` names the call in logs; ``error`` is why it was refused, if it was.
    A new kind of write is a Store method that queues one, with steps on the
    templates of `_PHASES` (a new template goes there, where the fast path runs it).
    """

    __slots__ = ("after_commit", "error", "kind", "steps", "waiter")

    def __init__(
        self,
        kind: str,
        steps: Steps,
        waiter: asyncio.Future[None] | None = None,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.kind = kind
        self.steps = steps
        self.waiter = waiter
        self.after_commit = after_commit
        self.error: str | None = None

    def rows(self) -> int:
        return sum(len(rows) for _, rows in self.steps)


class _Batch:
    """Units queued since the last commit, in the order they were queued."""

    __slots__ = ("checkpoint", "units")

    def __init__(self) -> None:
        self.units: list[_Unit] = []
        self.checkpoint = False


class Store:
    def __init__(
        self,
        writer: _Writer,
        reader: aiosqlite.Connection,
        bulk: aiosqlite.Connection,
        metrics: Metrics,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._bulk = bulk
        self._metrics = metrics
        self._batch = _Batch()
        self._wake = asyncio.Event()
        self._closing = False
        # Notice ids are assigned here when a notice is queued, so the SMPP queue knows
        # each notice's row before it is committed; `open` starts after the highest.
        self._last_notice_id = 0
        self._task = asyncio.create_task(self._write_loop(), name="store-writer")

    @classmethod
    async def open(cls, config: StorageConfig, metrics: Metrics) -> Store:
        path = Path(config.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _Writer.open(path, config.synchronous)
        readers = [await aiosqlite.connect(path) for _ in range(2)]
        for reader in readers:
            await reader.execute("PRAGMA query_only=ON")
        store = cls(writer, *readers, metrics)
        async with readers[0].execute("SELECT coalesce(max(id), 0) FROM notices") as cursor:
            row = await cursor.fetchone()
        store._last_notice_id = int(row[0]) if row else 0
        return store

    @property
    def healthy(self) -> bool:
        return not self._task.done()

    # --- writes -------------------------------------------------------------------------

    def _queue(self, unit: _Unit) -> None:
        self._batch.units.append(unit)
        self._wake.set()

    async def _commit_unit(
        self, kind: str, steps: Steps, after_commit: Callable[[], None] | None = None
    ) -> None:
        """Queue a unit and return once it is committed (StoreError if it was refused)."""
        if self._closing:
            raise StoreError("store is closing")
        waiter = asyncio.get_running_loop().create_future()
        self._queue(_Unit(kind, steps, waiter, after_commit))
        await waiter

    async def add_messages(self, items: Sequence[Outgoing]) -> None:
        """Persist new messages with their bodies; returns once they are committed."""
        messages = [_message_row(item.message) for item in items]
        bodies = [(item.message.id, item.body, *_part_columns(item.part)) for item in items]
        await self._commit_unit(
            "add_messages", ((_INSERT_MESSAGE, messages), (_INSERT_BODY, bodies))
        )

    async def execute(
        self,
        statements: Sequence[tuple[str, Sequence[Sequence[object]]]],
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        """Run ``(sql, rows)`` pairs in the next group commit; returns once committed.

        For tables the store does not know itself (the privacy registry, the audit log):
        they share the one writer and its transactions. The statements commit or fail
        together, apart from the rest of the batch.
        """
        await self._commit_unit("execute", tuple(statements), after_commit)

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Rows of a read-only query on the reader connection."""
        async with self._reader.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def fetch_bulk(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Rows of a long read-only query on a connection of its own.

        For data-subject requests and retention scans, so the short reads that submits
        wait for (consent lookups, get_message) never queue behind them.
        """
        async with self._bulk.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it, so replaced content is gone.

        Runs on the writer between two group commits, never inside one.
        """
        self._batch.checkpoint = True
        await self.flush()

    async def flush(self) -> None:
        """Wait until every write queued so far is committed (a read-your-writes barrier)."""
        waiter = asyncio.get_running_loop().create_future()
        self._queue(_Unit("flush", (), waiter))
        await waiter

    def record_status(
        self, change: StatusChange, after_commit: Callable[[], None] | None = None
    ) -> None:
        """Queue a transition; ``after_commit`` runs once it is durable."""
        enroute = change.status is Status.ENROUTE
        row = (
            change.status.value,
            change.at if enroute else None,
            None if enroute else change.at,
            change.error,
            change.message_id,
        )
        if change.status.is_final:
            steps: Steps = ((_UPDATE_STATUS, (row,)), (_DELETE_BODY, ((change.message_id,),)))
        else:
            steps = ((_UPDATE_STATUS, (row,)),)
        self._queue(_Unit("record_status", steps, None, after_commit))

    def record_delivery(self, item: Outgoing, at: float) -> None:
        """Queue a body for the handset's inbox (committed with the final status)."""
        message, part = item.message, item.part
        row = (
            message.tenant,
            message.recipient,
            message.id,
            message.sender,
            item.body,
            at,
            *_part_columns(part),
        )
        self._queue(_Unit("record_delivery", ((_INSERT_INBOX, (row,)),)))

    def replace_body(self, message_id: str, body: str) -> None:
        self._queue(_Unit("replace_body", ((_REPLACE_BODY, ((body, message_id),)),)))

    def keep_notice(self, notice: Notice, after_commit: Callable[[], None] | None = None) -> None:
        """Queue a notice's row, giving the notice its id; ``after_commit`` runs once durable.

        Queued while a message's final state is, the row joins that state's commit: the
        receipt exists exactly when the state it announces does.
        """
        self._last_notice_id += 1
        notice.queue_id = self._last_notice_id
        row = (notice.queue_id, *_notice_row(notice))
        self._queue(_Unit("keep_notice", ((_INSERT_NOTICE, (row,)),), None, after_commit))

    def forget_notice(self, queue_id: int) -> None:
        """A kept notice was acknowledged by the ESME, given up on, or expired."""
        self._queue(_Unit("forget_notice", ((_DELETE_NOTICE, ((queue_id,),)),)))

    async def close(self) -> None:
        """Flush everything queued, then close every connection."""
        self._closing = True
        self._wake.set()
        await self._task
        await self._reader.close()
        await self._bulk.close()
        await self._writer.close()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._batch.units:
                batch, self._batch = self._batch, _Batch()
                await self._commit(batch)
            if self._closing:
                return

    async def _commit(self, batch: _Batch) -> None:
        started = time.perf_counter()
        try:
            await self._writer.run(_write_batch, batch)
        except Exception as exc:  # the transaction itself failed: nothing in it committed
            log_event(log, "store.commit_failed", logging.ERROR, error=type(exc).__name__)
            for unit in batch.units:
                unit.error = type(exc).__name__
        else:
            self._metrics.store_commit.observe(time.perf_counter() - started)
            self._metrics.store_batch.observe(sum(unit.rows() for unit in batch.units))
            for unit in batch.units:
                if unit.error is not None:
                    log_event(
                        log, "store.unit_refused", logging.ERROR, kind=unit.kind, error=unit.error
                    )
        for unit in batch.units:
            if unit.error is not None:
                self._metrics.store_errors.inc()
            waiter = unit.waiter
            if waiter is None or waiter.done():
                continue
            if unit.error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(StoreError(unit.error))
        for unit in batch.units:
            if unit.after_commit is not None and unit.error is None:
                unit.after_commit()

    # --- reads --------------------------------------------------------------------------

    async def get_message(self, tenant: str, message_id: str) -> Message | None:
        async with self._reader.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ? AND tenant = ?",
            (message_id, tenant),
        ) as cursor:
            row = await cursor.fetchone()
        return message_from_row(row) if row else None

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
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(clauses)}"
            " ORDER BY id DESC LIMIT ?"
        )
        async with self._reader.execute(sql, params) as cursor:
            rows = await cursor.fetchall()
        return [message_from_row(row) for row in rows]

    async def inbox(self, tenant: str, msisdn: str, limit: int = 100) -> list[InboxEntry]:
        """What a handset received, newest first, with concatenated parts joined."""
        async with self._reader.execute(
            "SELECT message_id, sender, body, received_at, part_ref, part_seq, part_total"
            " FROM inbox WHERE tenant = ? AND msisdn = ? ORDER BY seq DESC LIMIT ?",
            (tenant, msisdn, limit * 8),
        ) as cursor:
            rows = await cursor.fetchall()
        return _join_parts(tenant, msisdn, reversed(list(rows)))[::-1][:limit]

    async def unfinished(self) -> list[Outgoing]:
        """Messages accepted but not final (their bodies are still in the outbox)."""
        columns = ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))
        async with self._reader.execute(
            f"SELECT {columns}, o.body, o.part_ref, o.part_seq, o.part_total"
            " FROM outbox o JOIN messages m ON m.id = o.message_id"
        ) as cursor:
            rows = await cursor.fetchall()
        return [Outgoing(message_from_row(row[:-4]), row[-4], _part(*row[-3:])) for row in rows]

    async def kept_notices(self, tenant: str, now: float, limit: int) -> list[Notice]:
        """Notices kept for this tenant that have not expired, oldest first."""
        async with self._reader.execute(
            f"SELECT id, {_NOTICE_COLUMNS} FROM notices"
            " WHERE tenant = ? AND expires_at > ? ORDER BY id LIMIT ?",
            (tenant, now, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_notice_from_row(row) for row in rows]

    async def expired_notices(self, now: float, limit: int = 1000) -> list[tuple[int, str]]:
        """``(id, tenant)`` of notices past their ``expires_at``."""
        async with self._reader.execute(
            "SELECT id, tenant FROM notices WHERE expires_at <= ? LIMIT ?", (now, limit)
        ) as cursor:
            return [(row[0], row[1]) for row in await cursor.fetchall()]

    async def count_notices(self) -> dict[str, int]:
        """Kept notices per tenant."""
        async with self._reader.execute(
            "SELECT tenant, count(*) FROM notices GROUP BY tenant"
        ) as cursor:
            return {tenant: int(count) for tenant, count in await cursor.fetchall()}


class _Writer:
    """The one write connection, used only from its own thread."""

    def __init__(self, executor: ThreadPoolExecutor, db: sqlite3.Connection) -> None:
        self._executor = executor
        self._db = db

    @classmethod
    async def open(cls, path: Path, synchronous: str) -> _Writer:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        connect = _connect_writer
        db = await asyncio.get_running_loop().run_in_executor(executor, connect, path, synchronous)
        return cls(executor, db)

    async def run(self, work: Callable[[sqlite3.Connection, _Batch], None], batch: _Batch) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, work, self._db, batch)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
        self._executor.shutdown()


# Prepared statements the writer keeps. Group commits write a different number of rows
# each time, so most of their statements are used once, yet a cached multi-row statement
# holds about 1.3 MB at a thousand rows: sqlite3's default of 128 grew the process by
# that much per new batch size, up to 170 MB, for no hits.
_WRITER_CACHED_STATEMENTS = 8


def _connect_writer(path: Path, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, cached_statements=_WRITER_CACHED_STATEMENTS)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        db.execute("PRAGMA foreign_keys=ON")
        # Deleted and overwritten content is zeroed, not left in free pages for a scan.
        db.execute("PRAGMA secure_delete=ON")
        _migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def _write_batch(db: sqlite3.Connection, batch: _Batch) -> None:
    """One group commit, on the writer's thread; refused units get their ``error`` set.

    The fast path writes the whole batch in one transaction of multi-row statements.
    If any of it fails, that transaction is rolled back and the batch replayed unit
    by unit in a second one, each unit in a savepoint of its own, so the failing
    units alone are refused and everything else (fire-and-forget status updates
    included) still commits. Raises only if the transaction itself cannot go on.
    """
    db.execute("BEGIN")
    try:
        _write_together(db, batch.units)
        db.execute("COMMIT")
    except Exception:
        _roll_back(db)
        _write_apart(db, batch.units)
    except BaseException:
        _roll_back(db)
        raise
    if batch.checkpoint:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _write_together(db: sqlite3.Connection, units: Sequence[_Unit]) -> None:
    """Every unit's rows for one template in one statement, in `_PHASES` order."""
    grouped: dict[str, list[Sequence[object]]] = {template: [] for template in _TEMPLATES}
    statements: list[tuple[str, Sequence[Sequence[object]]]] = []
    for unit in units:
        for sql, rows in unit.steps:
            same = grouped.get(sql)
            if same is None:
                statements.append((sql, rows))
            else:
                same.extend(rows)
    for phase in _PHASES:
        if phase is None:
            for sql, rows in statements:
                db.executemany(sql, rows)
        else:
            fold = _FOLDS.get(phase)
            _write_rows(db, phase, fold(grouped[phase]) if fold else grouped[phase])


def _write_apart(db: sqlite3.Connection, units: Sequence[_Unit]) -> None:
    """Replay ``units`` in the order they were queued, each in a savepoint of one transaction."""
    db.execute("BEGIN")
    try:
        for unit in units:
            db.execute("SAVEPOINT unit")
            try:
                for sql, rows in unit.steps:
                    if sql in _TEMPLATES:
                        _write_rows(db, sql, rows)
                    else:
                        db.executemany(sql, rows)
            except Exception as exc:
                if not db.in_transaction:  # SQLite gave up the whole transaction
                    raise
                db.execute("ROLLBACK TO unit")
                unit.error = type(exc).__name__
            db.execute("RELEASE unit")
        db.execute("COMMIT")
    except BaseException:
        _roll_back(db)
        raise


def _roll_back(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK")


def _latest_status(rows: Sequence[Sequence[object]]) -> list[Sequence[object]]:
    """One UPDATE row per message: its transitions in this batch folded in order.

    Two rows for the same message in one UPDATE ... FROM would apply only one of them.
    """
    folded: dict[object, Sequence[object]] = {}
    for row in rows:
        old = folded.get(row[4])
        if old is not None:  # enroute and final in one batch: keep both times
            row = (
                row[0],
                old[1] if row[1] is None else row[1],
                old[2] if row[2] is None else row[2],
                row[3],
                row[4],
            )
        folded[row[4]] = row
    return list(folded.values())


def _latest_body(rows: Sequence[Sequence[object]]) -> list[Sequence[object]]:
    """The last replace_sm of a message wins."""
    return list({row[1]: row for row in rows}.values())


# The fast path's order of statements; None is where `execute`'s statements run.
_PHASES: tuple[str | None, ...] = (
    _INSERT_MESSAGE,
    _INSERT_BODY,
    _UPDATE_STATUS,
    _REPLACE_BODY,
    _INSERT_INBOX,
    _DELETE_BODY,
    None,
    _INSERT_NOTICE,
    _DELETE_NOTICE,
)
_TEMPLATES = tuple(phase for phase in _PHASES if phase is not None)
_FOLDS: dict[str, Callable[[Sequence[Sequence[object]]], Sequence[Sequence[object]]]] = {
    _UPDATE_STATUS: _latest_status,
    _REPLACE_BODY: _latest_body,
}


def _write_rows(db: sqlite3.Connection, template: str, rows: Sequence[Sequence[object]]) -> None:
    """Run ``template`` with its ``{values}`` standing for as many rows as fit in one statement.

    executemany steps once per row, and sqlite3 releases the GIL around each step and
    must take it back from the event loop after; while the loop is busy every retake
    waits up to a switch interval. One statement per few thousand rows steps once.
    """
    if not rows:
        return
    width = len(rows[0])
    group = "(" + ",".join("?" * width) + ")"
    per_statement = _MAX_PARAMETERS // width
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        sql = template.format(values=",".join([group] * len(chunk)))
        db.execute(sql, [value for row in chunk for value in row])


def _migrate(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")


def _part_columns(part: Part | None) -> tuple[int | None, int | None, int | None]:
    return (part.ref, part.seq, part.total) if part else (None, None, None)


def _part(ref: int | None, seq: int | None, total: int | None) -> Part | None:
    return None if ref is None or seq is None or total is None else Part(ref, seq, total)


def _join_parts(tenant: str, msisdn: str, rows: Iterable[Sequence[Any]]) -> list[InboxEntry]:
    """Join concatenated parts (oldest first in, oldest first out), as a handset shows them.

    A part opens a group keyed by sender and reference; the group is complete once it
    holds every sequence number, and a repeated sequence number starts a new group
    (references are only 8 or 16 bits, so they come round again).
    """
    slots: list[InboxEntry | tuple[str, int, dict[int, tuple[str, str, float]]]] = []
    open_groups: dict[tuple[str, int, int], int] = {}
    for message_id, sender, body, received_at, ref, seq, total in rows:
        if ref is None:
            slots.append(InboxEntry((message_id,), tenant, msisdn, sender, body, received_at))
            continue
        key = (sender, ref, total)
        index = open_groups.get(key)
        if index is None or seq in slots[index][2]:  # type: ignore[index]
            index = open_groups[key] = len(slots)
            slots.append((sender, total, {}))
        parts = slots[index][2]  # type: ignore[index]
        parts[seq] = (message_id, body, received_at)
        if len(parts) == total:
            del open_groups[key]
    entries: list[InboxEntry] = []
    for slot in slots:
        if isinstance(slot, InboxEntry):
            entries.append(slot)
            continue
        sender, total, parts = slot
        ordered = [parts[seq] for seq in sorted(parts)]
        entries.append(
            InboxEntry(
                message_ids=tuple(p[0] for p in ordered),
                tenant=tenant,
                msisdn=msisdn,
                sender=sender,
                body="".join(p[1] for p in ordered),
                received_at=ordered[-1][2],
                parts_missing=total - len(ordered),
            )
        )
    return entries


def _notice_row(n: Notice) -> tuple[object, ...]:
    return (
        n.tenant,
        n.kind.value,
        n.message_id,
        n.handset,
        n.address,
        n.created_at,
        n.expires_at,
        n.status.value if n.status else None,
        n.error,
        n.submitted_at,
        n.body,
        n.keyword,
    )


def _notice_from_row(row: Sequence[Any]) -> Notice:
    queue_id, tenant, kind, message_id, handset, address, created, expires, *rest = row
    status, error, submitted_at, body, keyword = rest
    return Notice(
        tenant=tenant,
        kind=NoticeKind(kind),
        message_id=message_id,
        handset=handset,
        address=address,
        created_at=created,
        expires_at=expires,
        status=Status(status) if status else None,
        error=error,
        submitted_at=submitted_at,
        body=body,
        queue_id=queue_id,
        keyword=keyword,
    )


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
        m.receipt.value,
        m.pseudonym_epoch,
    )


def message_from_row(row: Sequence[object]) -> Message:
    values = list(row)
    values[2] = Interface(values[2])
    values[7] = Encoding(values[7])
    values[8] = Status(values[8])
    values[15] = ReceiptRequest(values[15])
    return Message(*values)  # type: ignore[arg-type]
