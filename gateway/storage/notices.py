"""Kept notices: receipts and MO messages for a tenant's unbound receiver.

A notice's id is assigned here when it is queued, so the SMPP notice queue knows
each notice's row before it is committed. On SQLite (one writing process) ids
continue after the highest stored; on a database that instances share, each
instance takes a block of 2**32 ids of its own when it opens.
"""

from __future__ import annotations

from collections.abc import Sequence

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
# Ids claimed per statement: well under both servers' limits on parameters.
_CLAIM_CHUNK = 1000
# The table's columns that are no notice's field: which instance holds the row, until when.
CLAIM_COLUMNS = ("claimed_by", "claimed_until")


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
        """Queue a notice's row, giving the notice its id; ``after_commit`` runs once durable."""
        self._engine.queue("keep_notice", self.keep_steps(notice), after_commit)

    def keep_steps(self, notice: Notice) -> Steps:
        """The steps that write a notice's row, giving the notice its id now.

        A receipt's steps join its message's final state in one unit: the receipt exists
        exactly when the state it announces does.
        """
        self._last_id += 1
        notice.queue_id = self._last_id
        return ((INSERT_NOTICE, (_notice_row(notice),)),)

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

    # --- claims: instances sharing the store (PostgreSQL only) ---------------------------
    # A notice an instance holds in memory is claimed by it until ``claimed_until``, which
    # it renews while it runs; a claim that lapsed (its instance died) is anyone's again.

    async def claim(
        self, tenant: str, owner: str, now: float, until: float, limit: int
    ) -> list[Notice]:
        """Claim up to ``limit`` of the tenant's unexpired notices nobody holds, oldest first.

        Rows another instance is claiming at this moment are skipped, not waited for.
        """
        rows = await self._engine.fetch(
            "UPDATE notices SET claimed_by = ?, claimed_until = ? WHERE id IN ("
            "SELECT id FROM notices WHERE tenant = ? AND expires_at > ?"
            " AND (claimed_until IS NULL OR claimed_until < ?)"
            " ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED)"
            f" RETURNING {_COLUMNS}",
            (owner, until, tenant, now, now, limit),
        )
        return sorted(map(_notice_from_row, rows), key=lambda notice: notice.queue_id or 0)

    async def claim_ids(
        self, owner: str, queue_ids: Sequence[int], now: float, until: float
    ) -> set[int]:
        """Claim these notices (just kept) unless another instance holds them; those claimed."""
        claimed: set[int] = set()
        for start in range(0, len(queue_ids), _CLAIM_CHUNK):
            chunk = queue_ids[start : start + _CLAIM_CHUNK]
            rows = await self._engine.fetch(
                "UPDATE notices SET claimed_by = ?, claimed_until = ?"
                f" WHERE id IN ({','.join('?' * len(chunk))})"
                " AND (claimed_until IS NULL OR claimed_until < ?) RETURNING id",
                (owner, until, *chunk, now),
            )
            claimed.update(int(row[0]) for row in rows)
        return claimed

    async def unclaimed_by_tenant(self, now: float) -> dict[str, int]:
        """Kept notices per tenant that no instance holds (never claimed, or lapsed)."""
        rows = await self._engine.fetch(
            "SELECT tenant, count(*) FROM notices"
            " WHERE claimed_until IS NULL OR claimed_until < ? GROUP BY tenant",
            (now,),
        )
        return {tenant: int(count) for tenant, count in rows}

    async def renew(self, owner: str, until: float) -> None:
        """Extend every claim of ``owner`` to ``until``."""
        await self._engine.commit(
            "renew_claims",
            (("UPDATE notices SET claimed_until = ? WHERE claimed_by = ?", ((until, owner),)),),
        )

    def release(self, owner: str, queue_ids: Sequence[int]) -> None:
        """Give up ``owner``'s claims of these notices (queued): another instance may take them."""
        self._engine.queue(
            "release_claims",
            (
                (
                    "UPDATE notices SET claimed_by = NULL, claimed_until = NULL"
                    " WHERE id = ? AND claimed_by = ?",
                    [(queue_id, owner) for queue_id in queue_ids],
                ),
            ),
        )

    async def release_all(self, owner: str) -> None:
        """Give up every claim of ``owner`` (it is stopping)."""
        await self._engine.commit(
            "release_claims",
            (
                (
                    "UPDATE notices SET claimed_by = NULL, claimed_until = NULL"
                    " WHERE claimed_by = ?",
                    ((owner,),),
                ),
            ),
        )

    async def release_earlier_runs(self, runs: str, owner: str) -> None:
        """Give up the claims of runs of this instance (owners starting ``runs``) other than
        ``owner``, this one: the instance restarted, so they are dead, and their notices
        go out now instead of when the lease lapses."""
        await self._engine.commit(
            "release_claims",
            (
                (
                    "UPDATE notices SET claimed_by = NULL, claimed_until = NULL"
                    " WHERE substr(claimed_by, 1, ?) = ? AND claimed_by <> ?",
                    ((len(runs), runs, owner),),
                ),
            ),
        )

    async def tenant_rows(self, tenant: str) -> dict[str, int]:
        count = await self._engine.count("SELECT count(*) FROM notices WHERE tenant = ?", (tenant,))
        return {"notices": count}

    def purge_tenant(self, tenant: str) -> Steps:
        return (("DELETE FROM notices WHERE tenant = ?", ((tenant,),)),)
