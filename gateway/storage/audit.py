"""The audit log: ``audit_log`` entries and each tenant's head in ``audit_heads``.

privacy.audit computes the hash chain; this module stores and reads it. An entry and
the head that moves past it are written by the same steps, so they commit together.
Verification reads the whole log, so its reads go to the bulk reader.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.storage.base import AuditRow, ChainRow, ListedAuditRow, Steps
from gateway.storage.engine import GroupCommit

_INSERT = (
    "INSERT INTO audit_log"
    " (tenant, at, actor, action, subject, salt, commitment, detail, prev_hash, hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_HEAD = (
    "INSERT INTO audit_heads (tenant, seq, hash) VALUES (?, 0, ?)"
    " ON CONFLICT (tenant) DO UPDATE SET seq = audit_heads.seq + 1, hash = excluded.hash"
)
_REDACT = "UPDATE audit_log SET subject = NULL, salt = NULL WHERE tenant = ? AND subject = ?"
_NEWEST = 2**63 - 1


class AuditRepository:
    def __init__(self, engine: GroupCommit) -> None:
        self._engine = engine

    async def heads(self) -> dict[str, str]:
        """Each tenant's last hash."""
        rows = await self._engine.fetch("SELECT tenant, hash FROM audit_heads")
        return {tenant: digest for tenant, digest in rows}

    def append(self, rows: Sequence[AuditRow]) -> Steps:
        """The steps that write entries and move their tenants' heads, in the rows' order."""
        return ((_INSERT, rows), (_HEAD, [(row[0], row[9]) for row in rows]))

    def redact(self, tenant: str, subject: str) -> Steps:
        """The steps that unlink a subject's entries from it (erasure); the chain holds."""
        return ((_REDACT, ((tenant, subject),)),)

    async def entries(self, tenant: str, before: int | None, limit: int) -> list[ListedAuditRow]:
        """A tenant's entries before seq ``before`` (or the newest), newest first."""
        return await self._engine.fetch(
            "SELECT seq, tenant, at, actor, action, subject, detail, hash FROM audit_log"
            " WHERE tenant = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (tenant, _NEWEST if before is None else before, limit),
        )

    async def tenants(self) -> set[str]:
        """Every tenant with a head or an entry."""
        heads = await self._engine.fetch_bulk("SELECT tenant FROM audit_heads")
        logged = await self._engine.fetch_bulk("SELECT DISTINCT tenant FROM audit_log")
        return {tenant for (tenant,) in heads + logged}

    async def chain_after(self, tenant: str, seq: int) -> list[ChainRow]:
        """A tenant's entries after ``seq``, oldest first, with what the chain covers."""
        return await self._engine.fetch_bulk(
            "SELECT seq, at, actor, action, subject, salt, commitment, detail, prev_hash, hash"
            " FROM audit_log WHERE tenant = ? AND seq > ? ORDER BY seq",
            (tenant, seq),
        )

    async def head(self, tenant: str) -> tuple[int, str] | None:
        """A tenant's head: the seq (counted from 0) and hash of its last entry."""
        rows = await self._engine.fetch_bulk(
            "SELECT seq, hash FROM audit_heads WHERE tenant = ?", (tenant,)
        )
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    async def tenant_rows(self, tenant: str) -> dict[str, int]:
        return {
            "audit_log": await self._engine.count(
                "SELECT count(*) FROM audit_log WHERE tenant = ?", (tenant,)
            ),
            "audit_heads": await self._engine.count(
                "SELECT count(*) FROM audit_heads WHERE tenant = ?", (tenant,)
            ),
        }

    def purge_tenant(self, tenant: str) -> Steps:
        return (
            ("DELETE FROM audit_log WHERE tenant = ?", ((tenant,),)),
            ("DELETE FROM audit_heads WHERE tenant = ?", ((tenant,),)),
        )
