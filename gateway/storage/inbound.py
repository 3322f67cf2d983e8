"""What handsets sent to a tenant's numbers (MO): the ``inbound`` table.

An MO's row is committed before the 202 (or the tenant's receivers hear of it) and
kept for ``privacy.body_ttl``, like a body in the handset inbox; retention deletes it
then, body and number together. Ids are the gateway's time-ordered message ids, so
a page is one range scan of ``inbound_by_tenant``, newest first.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.domain import InboundMessage
from gateway.storage.base import HandsetActivity, Steps
from gateway.storage.engine import GroupCommit
from gateway.storage.rows import RowMapping

INBOUND_ROWS = RowMapping(InboundMessage)
_COLUMNS = ", ".join(INBOUND_ROWS.columns)
_inbound_row = INBOUND_ROWS.to_row
_inbound_from_row = INBOUND_ROWS.from_row
_INSERT = f"INSERT INTO inbound ({_COLUMNS}) VALUES ({', '.join('?' * len(INBOUND_ROWS.columns))})"
_NEWEST = "g"  # sorts after every id (ids are lower-case hex)


class InboundRepository:
    def __init__(self, engine: GroupCommit) -> None:
        self._engine = engine

    def record(self, mo: InboundMessage) -> None:
        """Queue an MO's row; the caller waits for the commit before acknowledging it."""
        self._engine.queue("record_inbound", ((_INSERT, (_inbound_row(mo),)),))

    async def received(
        self, tenant: str, before_id: str | None = None, limit: int = 100
    ) -> list[InboundMessage]:
        """The tenant's MO, newest first, those before ``before_id`` (a cursor) if given."""
        rows = await self._engine.fetch(
            f"SELECT {_COLUMNS} FROM inbound WHERE tenant = ? AND message_id < ?"
            " ORDER BY message_id DESC LIMIT ?",
            (tenant, before_id or _NEWEST, limit),
        )
        return [_inbound_from_row(row) for row in rows]

    async def for_handset(self, tenant: str, handset: str) -> list[InboundMessage]:
        """Everything a handset sent to the tenant, oldest first (for an export)."""
        rows = await self._engine.fetch_bulk(
            f"SELECT {_COLUMNS} FROM inbound WHERE tenant = ? AND handset = ? ORDER BY message_id",
            (tenant, handset),
        )
        return [_inbound_from_row(row) for row in rows]

    async def count_handset(self, tenant: str, handset: str) -> int:
        return await self._engine.count(
            "SELECT count(*) FROM inbound WHERE tenant = ? AND handset = ?", (tenant, handset)
        )

    async def handsets(self, tenant: str, limit: int) -> list[HandsetActivity]:
        """The ``limit`` handsets that sent to the tenant last: MO count, last MO time."""
        rows = await self._engine.fetch(
            "SELECT handset, count(*), max(received_at) FROM inbound WHERE tenant = ?"
            " GROUP BY handset ORDER BY 3 DESC LIMIT ?",
            (tenant, limit),
        )
        return [HandsetActivity(*row) for row in rows]

    async def latest(self, tenant: str, handsets: Sequence[str]) -> dict[str, InboundMessage]:
        """Each of ``handsets``' newest MO, for those that sent any.

        Ids are time-ordered, so each handset's newest is its greatest id, found in
        ``inbound_by_handset``; then each row by its key.
        """
        marks = ", ".join("?" * len(handsets))
        rows = await self._engine.fetch(
            f"SELECT {_COLUMNS} FROM inbound WHERE message_id IN (SELECT max(message_id)"
            f" FROM inbound WHERE tenant = ? AND handset IN ({marks}) GROUP BY handset)",
            (tenant, *handsets),
        )
        return {row[2]: _inbound_from_row(row) for row in rows}

    async def handset_counts(self, tenant: str, handsets: Sequence[str]) -> dict[str, int]:
        """MO per handset, for those of ``handsets`` that sent any."""
        marks = ", ".join("?" * len(handsets))
        rows = await self._engine.fetch(
            f"SELECT handset, count(*) FROM inbound WHERE tenant = ? AND handset IN ({marks})"
            " GROUP BY handset",
            (tenant, *handsets),
        )
        return dict(rows)

    def erase_handset(self, tenant: str, handset: str) -> Steps:
        return (("DELETE FROM inbound WHERE tenant = ? AND handset = ?", ((tenant, handset),)),)

    async def delete_received_before(self, cutoff: float, limit: int) -> int:
        """Delete up to ``limit`` MO received before ``cutoff``; 0 means none is left."""
        rows = await self._engine.fetch_bulk(
            "SELECT message_id FROM inbound WHERE received_at < ? LIMIT ?", (cutoff, limit)
        )
        if rows:
            await self._engine.commit(
                "erase_inbound", (("DELETE FROM inbound WHERE message_id = ?", rows),)
            )
        return len(rows)

    async def tenant_rows(self, tenant: str) -> dict[str, int]:
        count = await self._engine.count("SELECT count(*) FROM inbound WHERE tenant = ?", (tenant,))
        return {"inbound": count}

    def purge_tenant(self, tenant: str) -> Steps:
        return (("DELETE FROM inbound WHERE tenant = ?", ((tenant,),)),)
