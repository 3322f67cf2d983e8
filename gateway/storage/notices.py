"""Kept notices: receipts and MO messages for a tenant's unbound receiver.

A notice's id is assigned here when it is queued, so the SMPP notice queue knows
each notice's row before it is committed. On SQLite (one writing process) ids
continue after the highest stored; on a database that instances share, each
instance takes a block of 2**32 ids of its own when it opens.
"""

from __future__ import annotations

from gateway.domain import Notice
from gateway.storage.base import AfterCommit, Batched, Steps
from gateway.storage.engine import GroupCommit
from gateway.storage.rows import RowMapping

NOTICE_ROWS = RowMapping(Notice, renamed={"queue_id": "id"})
_COLUMNS = ", ".join(NOTICE_ROWS.columns)
_notice_row = NOTICE_ROWS.to_row
_notice_from_row = NOTICE_ROWS.from_row

INSERT_NOTICE = Batched(f"INSERT INTO notices ({_COLUMNS}) VALUES {{values}}")
DELETE_NOTICE = Batched("DELETE FROM notices WHERE id IN (VALUES {values})", types=("bigint",))
_ID_BLOCK = 2**32


class NoticesRepository:
    def __init__(self, engine: GroupCommit, last_id: int) -> None:
        self._engine = engine
        self._last_id = last_id

    @classmethod
    async def open(cls, engine: GroupCommit) -> NoticesRepository:
        if engine.dialect.shared:
            row = await engine.fetch_one("SELECT nextval('notice_id_blocks')")
            return cls(engine, int(row[0]) * _ID_BLOCK)
        row = await engine.fetch_one("SELECT coalesce(max(id), 0) FROM notices")
        return cls(engine, int(row[0]) if row else 0)

    def keep(self, notice: Notice, after_commit: AfterCommit = None) -> None:
        """Queue a notice's row, giving the notice its id; ``after_commit`` runs once durable.

        Queued while a message's final state is, the row joins that state's commit: the
        receipt exists exactly when the state it announces does.
        """
        self._last_id += 1
        notice.queue_id = self._last_id
        self._engine.queue("keep_notice", ((INSERT_NOTICE, (_notice_row(notice),)),), after_commit)

    def forget(self, queue_id: int) -> None:
        """A kept notice was acknowledged by the ESME, given up on, or expired."""
        self._engine.queue("forget_notice", ((DELETE_NOTICE, ((queue_id,),)),))

    async def kept(self, tenant: str, now: float, limit: int) -> list[Notice]:
        """Notices kept for this tenant that have not expired, oldest first."""
        rows = await self._engine.fetch(
            f"SELECT {_COLUMNS} FROM notices WHERE tenant = ? AND expires_at > ?"
            " ORDER BY id LIMIT ?",
            (tenant, now, limit),
        )
        return [_notice_from_row(row) for row in rows]

    async def expired(self, now: float, limit: int = 1000) -> list[tuple[int, str]]:
        """``(id, tenant)`` of notices past their ``expires_at``."""
        rows = await self._engine.fetch(
            "SELECT id, tenant FROM notices WHERE expires_at <= ? LIMIT ?", (now, limit)
        )
        return [(row[0], row[1]) for row in rows]

    async def count_by_tenant(self) -> dict[str, int]:
        """Kept notices per tenant."""
        rows = await self._engine.fetch("SELECT tenant, count(*) FROM notices GROUP BY tenant")
        return {tenant: int(count) for tenant, count in rows}

    async def for_handset(self, tenant: str, handset: str) -> list[Notice]:
        """Every notice kept about a handset, oldest first (for an export)."""
        rows = await self._engine.fetch_bulk(
            f"SELECT {_COLUMNS} FROM notices WHERE tenant = ? AND handset = ? ORDER BY id",
            (tenant, handset),
        )
        return [_notice_from_row(row) for row in rows]

    async def count_handset(self, tenant: str, handset: str) -> int:
        return await self._engine.count(
            "SELECT count(*) FROM notices WHERE tenant = ? AND handset = ?", (tenant, handset)
        )

    def erase_handset(self, tenant: str, handset: str) -> Steps:
        return (("DELETE FROM notices WHERE tenant = ? AND handset = ?", ((tenant, handset),)),)

    async def delete_stale(self, created_before: float, now: float, limit: int) -> int:
        """Delete up to ``limit`` notices created before ``created_before`` or expired.

        Returns how many went; 0 means none is left.
        """
        rows = await self._engine.fetch_bulk(
            "SELECT id FROM notices WHERE created_at < ? OR expires_at <= ? LIMIT ?",
            (created_before, now, limit),
        )
        if rows:
            await self._engine.commit(
                "erase_notices", (("DELETE FROM notices WHERE id = ?", rows),)
            )
        return len(rows)

    async def tenant_rows(self, tenant: str) -> dict[str, int]:
        count = await self._engine.count("SELECT count(*) FROM notices WHERE tenant = ?", (tenant,))
        return {"notices": count}

    def purge_tenant(self, tenant: str) -> Steps:
        return (("DELETE FROM notices WHERE tenant = ?", ((tenant,),)),)
