"""Group commit, and its SQLite (WAL) engine: what every repository writes through.

Every write is queued as a unit (`Unit`: one call's steps); one writer task commits
whatever accumulated while the previous commit ran, in one transaction. A submit is
acknowledged only after the commit that holds its row returns, so an acknowledged
message survives a crash, and under load thousands of messages share one commit
instead of each paying for its own. If the batch fails, it is replayed unit by unit,
so a value SQLite refuses fails only the call that brought it, never another
tenant's traffic in the same commit. The engine knows no table: repositories bring
their statements, and the store gives the order in which batched ones run.
`GroupCommit` is that part, shared with PostgreSQL's engine (`gateway.storage.pg_engine`);
`SqliteGroupCommit` writes and reads SQLite.

The writer is a plain sqlite3 connection on a thread of its own, and a whole group
commit is one call to that thread. With aiosqlite each statement is a round trip
whose answer waits for a turn of the busy event loop: a commit of nine statements
took 225 ms under SMPP load, and submits waited for it. Reads use connections of
their own (aiosqlite), which WAL lets run beside the writer: one for the short reads
on the path of traffic, one for long scans (data-subject requests, retention, audit
verification), so the reads that submits wait for never queue behind a scan.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import queue
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.storage.base import AfterCommit, Batched, Rows, Statement, Steps, StoreError
from gateway.storage.dialect import SQLITE, Dialect

_T = TypeVar("_T")

# Logged under the name it had before the store was split, for whoever filters on it.
log = logging.getLogger("gateway.store")

# The rows of a batched statement go in statements of these sizes (as many of each as
# fit, largest first), the last few in one of their own exact count. A group commit's
# batch is of any size: written as one statement of its own size, its statements were
# new text to parse at every commit. Cut so, a few shapes a statement repeat and stay
# prepared: the writer's instructions a message 341,000 -> 222,000 (callgrind, a
# message's whole store path in commits of 32 to 96 messages). 256 rows of at most
# 127 values stay within SQLite's limit on host parameters (SQLITE_MAX_VARIABLE_NUMBER,
# 32766).
_STATEMENT_ROWS = (256, 64, 16)
# Prepared statements the writer keeps: every shape of every batched statement (18
# each), and the plain ones. A cached multi-row statement holds about 1.3 MB at a
# thousand rows, so the writer cuts batches into those shapes rather than cache one
# statement per batch size (sqlite3's default cache of 128 grew the process by that
# much per new batch size, up to 170 MB, for no hits).
_WRITER_CACHED_STATEMENTS = 192

# The order of a commit's statements: each batched statement's rows from every unit,
# and None where the plain statements run, unit after unit.
Phases = Sequence[Batched | None]


class Unit:
    """One call's writes (one add_messages, one erasure, one record_status...).

    The unit is what commits or is refused as a whole: a batch whose statements fail
    together is replayed unit by unit, so one caller's bad value refuses only its own
    write. ``kind`` names the call in logs; ``error`` is why it was refused, if it was.
    """

    __slots__ = ("after_commit", "error", "kind", "steps", "waiter")

    def __init__(
        self,
        kind: str,
        steps: Steps,
        waiter: asyncio.Future[None] | None = None,
        after_commit: AfterCommit = None,
    ) -> None:
        self.kind = kind
        self.steps = steps
        self.waiter = waiter
        self.after_commit = after_commit
        self.error: str | None = None


class Batch:
    """Units queued since the last commit, in the order they were queued."""

    __slots__ = ("checkpoint", "units")

    def __init__(self) -> None:
        self.units: list[Unit] = []
        self.checkpoint = False


class GroupCommit(ABC):
    """The writer task and its batch; how a batch is written and how reads run is the backend's."""

    dialect: Dialect

    def __init__(self, phases: Phases, metrics: Metrics) -> None:
        self._phases = tuple(phases)
        self._metrics = metrics
        self._batch = Batch()
        self._wake = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._write_loop(), name="store-writer")

    @property
    def healthy(self) -> bool:
        return not self._task.done()

    async def ready(self) -> bool:
        """Whether the database answers now, with this release's schema."""
        return self.healthy

    # --- writes -------------------------------------------------------------------------

    def queue(self, kind: str, steps: Steps, after_commit: AfterCommit = None) -> None:
        """Queue a unit that nobody waits for; ``after_commit`` runs once it is durable."""
        self._batch.units.append(Unit(kind, steps, None, after_commit))
        self._wake.set()

    async def commit(self, kind: str, steps: Steps, after_commit: AfterCommit = None) -> None:
        """Queue a unit and return once it is committed (StoreError if it was refused).

        The unit is queued before the first await, so what the caller did just before
        (in the same step of the event loop) happens before anything queued after it.
        """
        if self._closing:
            raise StoreError("store is closing")
        waiter = asyncio.get_running_loop().create_future()
        self._batch.units.append(Unit(kind, steps, waiter, after_commit))
        self._wake.set()
        await waiter

    async def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it, so replaced content is gone.

        Runs on the writer between two group commits, never inside one. (PostgreSQL's
        engine overrides it: there it is a VACUUM.)
        """
        self._batch.checkpoint = True
        await self.flush()

    async def flush(self) -> None:
        """Wait until every write queued so far is committed (a read-your-writes barrier)."""
        waiter = asyncio.get_running_loop().create_future()
        self._batch.units.append(Unit("flush", (), waiter))
        self._wake.set()
        await waiter

    async def close(self) -> None:
        """Flush everything queued, then close every connection."""
        self._closing = True
        self._wake.set()
        await self._task
        await self._close()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._batch.units:
                batch, self._batch = self._batch, Batch()
                await self._commit(batch)
            if self._closing:
                return

    async def _commit(self, batch: Batch) -> None:
        started = time.perf_counter()
        try:
            await self._write(batch)
        except Exception as exc:  # the transaction itself failed: nothing in it committed
            log_event(log, "store.commit_failed", logging.ERROR, error=type(exc).__name__)
            for unit in batch.units:
                unit.error = type(exc).__name__
        else:
            self._metrics.store_commit.observe(time.perf_counter() - started)
            # One comprehension over every unit's steps, no generator a unit: four units a
            # message, 0.95 -> 0.23 us each (timeit, a batch of 120 units).
            rows = sum([len(rows) for unit in batch.units for _, rows in unit.steps])
            self._metrics.store_batch.observe(rows)
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
                self._run_hook(unit)

    def _run_hook(self, unit: Unit) -> None:
        """Run what waited for a unit's commit; a hook that fails is logged, never fatal.

        The hooks are other parts' code (announcing a final state, offering a receipt);
        one that raised used to end this writer task, and every later write then
        waited for ever.
        """
        assert unit.after_commit is not None
        try:
            unit.after_commit()
        except Exception:
            self._metrics.store_hook_errors.inc()
            log_event(log, "store.hook_failed", logging.ERROR, kind=unit.kind, exc_info=True)

    # --- the backend's part --------------------------------------------------------------

    @abstractmethod
    async def _write(self, batch: Batch) -> None:
        """Commit ``batch``, setting each refused unit's ``error``; raise if none committed."""

    @abstractmethod
    async def _close(self) -> None:
        """Close every connection (the writer task has ended)."""

    @abstractmethod
    async def fetch_one(self, sql: str, params: Sequence[object] = ()) -> Any:
        """The first row of a short read-only query (None if there is none)."""

    @abstractmethod
    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Rows of a short read-only query, on the reader the path of traffic uses."""

    @abstractmethod
    async def fetch_bulk(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Rows of a long read-only query, on a connection of its own.

        For data-subject requests, retention scans and audit verification, so the short
        reads that submits wait for (consent lookups, get_message) never queue behind them.
        """

    @abstractmethod
    async def count(self, sql: str, params: Sequence[object] = ()) -> int:
        """The number a ``SELECT count(*)`` query returns, on the bulk reader."""


def in_phases(
    units: Sequence[Unit], phases: tuple[Batched | None, ...]
) -> Iterator[tuple[Statement, Rows]]:
    """A fast-path commit's statements in order: each batched one with every unit's rows
    (folded), and the plain ones, unit after unit, where ``phases`` has None."""
    grouped: dict[Batched, list[Sequence[object]]] = {
        phase: [] for phase in phases if phase is not None
    }
    plain: list[tuple[str, Rows]] = []
    for unit in units:
        for statement, rows in unit.steps:
            if isinstance(statement, Batched):
                grouped[statement].extend(rows)
            else:
                plain.append((statement, rows))
    for phase in phases:
        if phase is None:
            yield from plain
        else:
            rows = grouped[phase]
            yield phase, phase.fold(rows) if phase.fold else rows


class SqliteGroupCommit(GroupCommit):
    """Group commit on a SQLite file: the writer on a thread, two aiosqlite readers."""

    dialect = SQLITE

    def __init__(
        self,
        writer: _Writer,
        reader: aiosqlite.Connection,
        bulk: aiosqlite.Connection,
        phases: Phases,
        metrics: Metrics,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._bulk = bulk
        super().__init__(phases, metrics)

    @classmethod
    async def open(
        cls,
        path: Path,
        synchronous: str,
        phases: Phases,
        metrics: Metrics,
        prepare: Callable[[sqlite3.Connection], None],
    ) -> SqliteGroupCommit:
        """Open the writer (running ``prepare``, the migrations, on it first) and readers."""
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _Writer.open(path, synchronous, prepare)
        readers = [await aiosqlite.connect(path) for _ in range(2)]
        for reader in readers:
            await reader.execute("PRAGMA query_only=ON")
        return cls(writer, readers[0], readers[1], phases, metrics)

    async def _write(self, batch: Batch) -> None:
        await self._writer.run(_write_batch, batch, self._phases)

    async def _close(self) -> None:
        await self._reader.close()
        await self._bulk.close()
        await self._writer.close()

    # --- reads --------------------------------------------------------------------------

    async def fetch_one(self, sql: str, params: Sequence[object] = ()) -> Any:
        """The first row of a short read-only query (None if there is none)."""
        async with self._reader.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Rows of a short read-only query, on the reader the path of traffic uses."""
        async with self._reader.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def fetch_bulk(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Rows of a long read-only query, on a connection of its own.

        For data-subject requests, retention scans and audit verification, so the short
        reads that submits wait for (consent lookups, get_message) never queue behind them.
        """
        async with self._bulk.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def count(self, sql: str, params: Sequence[object] = ()) -> int:
        """The number a ``SELECT count(*)`` query returns, on the bulk reader."""
        async with self._bulk.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0


class _Writer:
    """The one write connection, used only from its own thread.

    Work goes to the thread through a queue and its end comes back with one
    call_soon_threadsafe, one loop wake-up a group commit: 42 -> 21 us of event-loop CPU
    a round trip against run_in_executor, whose work item, idle-semaphore check and
    chained futures cost the rest (timeit of 5,000 empty round trips).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=_serve, args=(loop, self._jobs), name="store-writer", daemon=True
        )
        self._thread.start()
        self._db: sqlite3.Connection | None = None

    @classmethod
    async def open(
        cls, path: Path, synchronous: str, prepare: Callable[[sqlite3.Connection], None]
    ) -> _Writer:
        writer = cls(asyncio.get_running_loop())
        try:
            writer._db = await writer._call(_connect_writer, path, synchronous, prepare)
        except BaseException:
            writer._jobs.put(None)
            raise
        return writer

    def _call(self, work: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        future: asyncio.Future[_T] = self._loop.create_future()
        self._jobs.put((future, work, args))
        return future

    async def run(
        self,
        work: Callable[[sqlite3.Connection, Batch, tuple[Batched | None, ...]], None],
        batch: Batch,
        phases: tuple[Batched | None, ...],
    ) -> None:
        assert self._db is not None
        await self._call(work, self._db, batch, phases)

    async def close(self) -> None:
        if self._db is not None:
            await self._call(self._db.close)
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)


# A job for the writer's thread: the future to settle, the function and its arguments.
_Job = tuple["asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _serve(loop: asyncio.AbstractEventLoop, jobs: queue.SimpleQueue[_Job | None]) -> None:
    """The writer thread: run each job in turn, hand its outcome to the loop; None ends it."""
    while (job := jobs.get()) is not None:
        future, work, args = job
        try:
            outcome: tuple[Any, BaseException | None] = (work(*args), None)
        except BaseException as exc:  # the loop's future re-raises it where it is awaited
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(_settle, future, *outcome)
        except RuntimeError:  # the loop is closed: nobody waits any more
            return


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _connect_writer(
    path: Path, synchronous: str, prepare: Callable[[sqlite3.Connection], None]
) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, cached_statements=_WRITER_CACHED_STATEMENTS)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        db.execute("PRAGMA foreign_keys=ON")
        # Deleted and overwritten content is zeroed, not left in free pages for a scan.
        db.execute("PRAGMA secure_delete=ON")
        # Statement journals and temporary tables in memory, not in files under /var/tmp:
        # the multi-row statements opened, wrote and unlinked one every second commit or so
        # (78 per 5,000 messages, strace), each holding page images of traffic rows.
        db.execute("PRAGMA temp_store=MEMORY")
        prepare(db)
    except BaseException:
        db.close()
        raise
    return db


def _write_batch(db: sqlite3.Connection, batch: Batch, phases: tuple[Batched | None, ...]) -> None:
    """One group commit, on the writer's thread; refused units get their ``error`` set.

    The fast path writes the whole batch in one transaction of multi-row statements.
    If any of it fails, that transaction is rolled back and the batch replayed unit
    by unit in a second one, each unit in a savepoint of its own, so the failing
    units alone are refused and everything else (fire-and-forget status updates
    included) still commits. Raises only if the transaction itself cannot go on.
    """
    db.execute("BEGIN")
    try:
        _write_together(db, batch.units, phases)
        db.execute("COMMIT")
    except Exception:
        _roll_back(db)
        _write_apart(db, batch.units)
    except BaseException:
        _roll_back(db)
        raise
    if batch.checkpoint:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _write_together(
    db: sqlite3.Connection, units: Sequence[Unit], phases: tuple[Batched | None, ...]
) -> None:
    """Every unit's rows for one batched statement in one statement, in ``phases`` order."""
    for statement, rows in in_phases(units, phases):
        if isinstance(statement, Batched):
            _write_rows(db, statement.sql, rows)
        else:
            db.executemany(statement, rows)


def _write_apart(db: sqlite3.Connection, units: Sequence[Unit]) -> None:
    """Replay ``units`` in the order they were queued, each in a savepoint of one transaction."""
    db.execute("BEGIN")
    try:
        for unit in units:
            db.execute("SAVEPOINT unit")
            try:
                for statement, rows in unit.steps:
                    if isinstance(statement, Batched):
                        _write_rows(db, statement.sql, rows)
                    else:
                        db.executemany(statement, rows)
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


def _write_rows(db: sqlite3.Connection, template: str, rows: Rows) -> None:
    """Run ``template`` with its ``{values}`` standing for many rows at once.

    executemany steps once per row, and sqlite3 releases the GIL around each step and
    must take it back from the event loop after; while the loop is busy every retake
    waits up to a switch interval. A statement of many rows steps once; they come in a
    few sizes (`_STATEMENT_ROWS`), so that they stay prepared.
    """
    if not rows:
        return
    width, start, left = len(rows[0]), 0, len(rows)
    for size in (*_STATEMENT_ROWS, left % _STATEMENT_ROWS[-1]):
        while left >= size > 0:
            # chain flattens in C, with the GIL held either way: 0.33 us a row of 21
            # values against 0.63 for a comprehension.
            values = list(itertools.chain.from_iterable(rows[start : start + size]))
            db.execute(_statement(template, width, size), values)
            start, left = start + size, left - size


@functools.lru_cache(maxsize=_WRITER_CACHED_STATEMENTS)
def _statement(template: str, width: int, rows: int) -> str:
    """``template`` for ``rows`` rows of ``width`` values; the same text object each time,
    so the writer's statement cache finds it by a hash already computed."""
    group = "(" + ",".join("?" * width) + ")"
    return template.format(values=",".join([group] * rows))
