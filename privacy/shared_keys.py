"""The key ring of several instances sharing one PostgreSQL store (``backend = "postgres"``).

Same API and the same promises as `KeyRing` over its file, so no caller changes:
lookups are dict lookups in memory (every key is loaded and unwrapped at start);
creating or destroying a key commits to the ``wrapped_keys`` table
(`gateway.storage.pg_keys`) before memory changes and before the method returns, so a
pseudonym is never made with a key that is not durable.

* **One key per slot across instances.** Two instances making a tenant's first
  registry key (or a new epoch key) at once both ``INSERT ... ON CONFLICT DO NOTHING``
  and read the row back: both use the winner's key.
* **Destruction is everywhere at once.** The delete and a NOTIFY commit together;
  every instance listens, re-reads that tenant's rows and drops what is gone, clears
  the pseudonym function's key cache (`forget_keys`) and tells its subscribers
  (`on_destroyed_elsewhere`: the consent registry drops its cached pseudonyms). A
  listener that loses its connection reconnects and re-reads every row, so a missed
  notification only delays the drop.
* **Keys at rest are sealed** under the instances' KEK (`privacy.key_wrap`); the KEK
  never enters the database.

The methods stay synchronous: the table's connection runs on an event loop in a
thread of its own, and a change waits there for its commit (a few milliseconds, as
the key file's fsync did). Changes are rare: a tenant's first key, a month's first
pseudonymisation, retention's destruction of a spent epoch, a purge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Final, TypeVar

import asyncpg

from gateway.logs import log_event
from gateway.storage import pg_keys
from gateway.storage.base import StoreError
from gateway.storage.pg_keys import WrappedKey
from privacy.key_wrap import Kek, UnwrapError, read_kek, unwrap, wrap
from privacy.keys import Epochs, KeyFileError, KeyRing, with_key, without_key
from privacy.pseudonyms import forget_keys

log = logging.getLogger(__name__)

T = TypeVar("T")
DestroyedHook = Callable[[str], None]

_TIMEOUT: Final = 10.0  # seconds a change may wait for the database before it fails
_REGISTRY: Final = "registry"
_EPOCH: Final = "epoch"


class _KeyTable:
    """The key table's one connection, on an event loop and thread of its own.

    Synchronous callers (`wait`) block on a commit without needing their own loop to
    run; asynchronous ones (`call`) await it. One statement at a time, in call order.
    """

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._loop = asyncio.new_event_loop()
        self._busy: asyncio.Lock | None = None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="smsgw-keys", daemon=True
        )
        self._thread.start()

    async def _run(self, op: Callable[..., Awaitable[T]], *args: object) -> T:
        if self._busy is None:
            self._busy = asyncio.Lock()
        async with self._busy:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self._dsn, command_timeout=_TIMEOUT)
            return await op(self._conn, *args)

    def wait(self, op: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run ``op(connection, *args)`` and block until it is done."""
        future = asyncio.run_coroutine_threadsafe(self._run(op, *args), self._loop)
        try:
            return future.result(_TIMEOUT)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            future.cancel()
            raise StoreError(f"the key table could not commit: {type(exc).__name__}") from None

    async def call(self, op: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run ``op(connection, *args)`` from another event loop."""
        future = asyncio.run_coroutine_threadsafe(self._run(op, *args), self._loop)
        return await asyncio.wrap_future(future)

    async def close(self) -> None:
        async def shut_down() -> None:
            """End what is still running on the table's loop, then its connection."""
            running = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            if self._conn is not None:
                await self._conn.close()

        with contextlib.suppress(Exception):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(shut_down(), self._loop))
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop.close()


def _slot(epoch: str | None) -> tuple[str, str]:
    """``(kind, epoch column)`` of a key: the registry key's epoch column is empty."""
    return (_REGISTRY, "") if epoch is None else (_EPOCH, epoch)


def _seal(kek: Kek, tenant_id: str, epoch: str | None, key: bytes) -> WrappedKey:
    """The row of a key (``epoch`` None: the registry key), sealed under ``kek``."""
    kind, label = _slot(epoch)
    nonce, sealed = wrap(kek, tenant_id, kind, label, key)
    return WrappedKey(tenant_id, kind, label, kek.id, nonce, sealed)


class SharedKeyRing(KeyRing):
    """`KeyRing` over the shared key table; open with `SharedKeyRing.connect`, end with `close`."""

    def __init__(self, dsn: str, kek: Kek, table: _KeyTable) -> None:
        super().__init__(kek.path, {}, {})
        self._dsn = dsn
        self._kek = kek
        self._table = table
        self._listener: asyncpg.Connection | None = None
        self._relisten: asyncio.Task[None] | None = None
        self._resyncs: set[asyncio.Task[None]] = set()
        self._hooks: list[DestroyedHook] = []
        self._changes = 0  # counts publications, so a re-read can tell it raced a change

    @classmethod
    async def connect(
        cls, dsn: str, kek_file: Path | str, import_from: Path | str | None = None
    ) -> SharedKeyRing:
        """Read the KEK, migrate the table, listen, load and unwrap every key.

        With ``import_from`` (the former key file) and an empty table, the file's keys
        are imported once and the file is removed: left behind, it would keep keys in
        clear that a destruction in the database can no longer reach. A KEK that does
        not open the table's keys stops the start (KeyFileError naming the file).
        """
        kek = read_kek(kek_file)
        ring = cls(dsn, kek, _KeyTable(dsn))
        try:
            await ring._table.call(pg_keys.create_table)
            if import_from is not None:
                await ring._import(Path(import_from))
            await ring._listen()  # before the load: nothing changed meanwhile is missed
            await ring._resync(None, strict=True)
        except BaseException:
            await ring.close()
            raise
        return ring

    def on_destroyed_elsewhere(self, hook: DestroyedHook) -> None:
        """Call ``hook(tenant)`` once keys that another instance destroyed are gone here too."""
        self._hooks.append(hook)

    async def close(self) -> None:
        tasks = [*self._resyncs, *([self._relisten] if self._relisten else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # none still opens a listener
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(Exception):
                await listener.close()
        await self._table.close()

    # --- changes made here ----------------------------------------------------------------

    def _add(self, tenant_id: str, epoch: str | None, key: bytes) -> bytes:
        in_force = self._table.wait(pg_keys.insert_key, _seal(self._kek, tenant_id, epoch, key))
        try:
            winner = self._unwrap(in_force)
        except UnwrapError:
            raise KeyFileError(
                f"the database holds the {in_force.kind} key of tenant {tenant_id!r} under"
                f" another KEK than {self._kek.path}: give every instance the same kek_file"
            ) from None
        self._publish(*with_key(self._registry, self._epochs, tenant_id, epoch, winner))
        return winner

    def _remove(self, tenant_id: str, epoch: str | None) -> None:
        self._table.wait(pg_keys.delete_keys, tenant_id, epoch)
        self._publish(*without_key(self._registry, self._epochs, tenant_id, epoch))

    def _publish(self, registry: dict[str, bytes], epochs: Epochs) -> None:
        super()._publish(registry, epochs)
        self._changes += 1

    # --- changes made elsewhere -----------------------------------------------------------

    async def _listen(self) -> None:
        """Listen on the key channel on a connection of our own.

        The one place that hears other instances; a general notification bus can call
        `_resync_soon` with the payload's tenant instead.
        """
        listener = await asyncpg.connect(self._dsn)
        try:
            await listener.add_listener(pg_keys.CHANNEL, self._on_notification)
        except BaseException:
            await listener.close()
            raise
        listener.add_termination_listener(self._on_listener_lost)
        self._listener = listener

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            tenant = json.loads(str(payload))["tenant"]
        except (ValueError, KeyError, TypeError):
            log_event(log, "keys.bad_notification", logging.WARNING)
            return
        self._resync_soon(str(tenant))

    def _resync_soon(self, tenant: str) -> None:
        # Retried until it reads: a destruction heard must not stay in memory for one failure.
        resync = _until_done(lambda: self._resync(tenant), "keys.resync_failed")
        task = asyncio.get_running_loop().create_task(resync)
        self._resyncs.add(task)
        task.add_done_callback(self._resyncs.discard)

    def _on_listener_lost(self, _conn: object) -> None:
        if self._listener is None:
            return  # closing
        self._listener = None
        log_event(log, "keys.listener_lost", logging.WARNING)
        self._relisten = asyncio.get_running_loop().create_task(self._listen_again())

    async def _listen_again(self) -> None:
        """Reconnect, then re-read every key: what was missed meanwhile is caught up."""
        await _until_done(self._listen, "keys.listen_failed")
        await _until_done(lambda: self._resync(None), "keys.resync_failed")
        log_event(log, "keys.listener_restored")

    async def _resync(self, tenant: str | None, *, strict: bool = False) -> None:
        """Make memory match the table for ``tenant`` (None: every tenant).

        A key that is gone or changed in the table goes from memory, from the pseudonym
        cache and from the subscribers' caches. A row this KEK does not open is logged
        and left out; with ``strict`` (the start) it stops everything instead.
        """
        while True:
            seen = self._changes
            rows = await self._table.call(pg_keys.wrapped_keys, tenant)
            registry, epochs = self._open_rows(rows, strict)
            with self._lock:
                if self._changes != seen:
                    continue  # a change landed while we read: read again
                old_registry, old_epochs = self._registry, self._epochs
                if tenant is not None:
                    registry = {**without_key(old_registry, {}, tenant, None)[0], **registry}
                    epochs = {**without_key({}, old_epochs, tenant, None)[1], **epochs}
                lost = _lost_tenants(old_registry, old_epochs, registry, epochs)
                self._publish(registry, epochs)
            break
        if lost:
            forget_keys()
            for lost_tenant in sorted(lost):
                log_event(log, "keys.destroyed_elsewhere", tenant=lost_tenant)
                for hook in self._hooks:
                    hook(lost_tenant)

    def _open_rows(
        self, rows: Iterable[WrappedKey], strict: bool
    ) -> tuple[dict[str, bytes], Epochs]:
        registry: dict[str, bytes] = {}
        epochs: Epochs = {}
        refused = []
        for row in rows:
            try:
                key = self._unwrap(row)
            except UnwrapError:
                refused.append(row)
                continue
            if row.kind == _REGISTRY:
                registry[row.tenant] = key
            else:
                epochs.setdefault(row.tenant, {})[row.epoch] = key
        if refused:
            other_keks = sorted({row.kek_id for row in refused if row.kek_id != self._kek.id})
            if strict:
                raise KeyFileError(
                    f"KEK file {self._kek.path} (id {self._kek.id}) does not open"
                    f" {len(refused)} of the database's keys"
                    + (f" (sealed under KEK id {', '.join(other_keks)})" if other_keks else "")
                    + ": give every instance the kek_file the keys were sealed under"
                )
            log_event(log, "keys.unreadable_rows", logging.ERROR, rows=len(refused))
        return registry, epochs

    def _unwrap(self, row: WrappedKey) -> bytes:
        return unwrap(self._kek, row.tenant, row.kind, row.epoch, row.nonce, row.sealed)

    async def _import(self, path: Path) -> None:
        """Import a key file once into an empty table, then remove the file."""
        rows = _sealed_key_file(self._kek, path)
        if rows is None:
            return
        imported = await self._table.call(pg_keys.import_keys, rows)
        if imported or not rows:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            log_event(log, "keys.imported", keys=imported, key_file=str(path))
        else:
            log_event(log, "keys.key_file_not_imported", logging.WARNING, key_file=str(path))


def _sealed_key_file(kek: Kek, path: Path) -> list[WrappedKey] | None:
    """Every key of a key file sealed under ``kek``; None if there is no such file."""
    if not path.exists():
        return None
    registry, epochs = KeyRing.open(path).snapshot()
    slots: list[tuple[str, str | None, bytes]] = [(t, None, key) for t, key in registry.items()]
    slots += [(t, label, key) for t, labels in epochs.items() for label, key in labels.items()]
    return [_seal(kek, tenant, epoch, key) for tenant, epoch, key in slots]


async def _until_done(step: Callable[[], Awaitable[None]], failure: str) -> None:
    """Run ``step`` until the database lets it finish, waiting longer after each failure."""
    delay = 0.1
    while True:
        try:
            await step()
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log_event(log, failure, logging.WARNING, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _lost_tenants(
    old_registry: dict[str, bytes],
    old_epochs: Epochs,
    registry: dict[str, bytes],
    epochs: Epochs,
) -> set[str]:
    """Tenants with a key in the old state that the new one lacks or holds differently."""
    lost = {t for t, key in old_registry.items() if registry.get(t) != key}
    for tenant, labels in old_epochs.items():
        if any(epochs.get(tenant, {}).get(label) != key for label, key in labels.items()):
            lost.add(tenant)
    return lost


async def rotate_kek(dsn: str, old_kek_file: Path | str, new_kek_file: Path | str) -> int:
    """Re-seal every key under the new KEK in one transaction; the number of rows re-sealed.

    Rows already under the new KEK are left as they are, so a rotation cut short can be
    run again. A row that opens under neither KEK stops it, changing nothing.
    """
    old, new = read_kek(old_kek_file), read_kek(new_kek_file)

    def reseal(row: WrappedKey) -> WrappedKey:
        if row.kek_id == new.id:
            return row
        try:
            key = unwrap(old, row.tenant, row.kind, row.epoch, row.nonce, row.sealed)
        except UnwrapError:
            raise KeyFileError(
                f"KEK file {old.path} does not open the {row.kind} key of tenant {row.tenant!r}"
            ) from None
        nonce, sealed = wrap(new, row.tenant, row.kind, row.epoch, key)
        return row._replace(kek_id=new.id, nonce=nonce, sealed=sealed)

    conn = await asyncpg.connect(dsn)
    try:
        await pg_keys.create_table(conn)
        return await pg_keys.rewrap_keys(conn, reseal)
    finally:
        await conn.close()
