"""The audit log: ``audit_log`` entries and each tenant's head in ``audit_heads``.

privacy.audit computes the hash chain; this module stores and reads it. An entry and
the head that moves past it are written by the same steps, so they commit together.
Verification reads the whole log, so its reads go to the bulk reader.

On PostgreSQL several instances append to one tenant's chain, so no instance can know
the head: each entry is linked in the commit that writes it. The commit first takes a
transaction-scoped advisory lock on each tenant whose chain it extends (`LOCK_CHAINS`, the
first statement of a group commit, in one order of keys on every instance, so waiting for
a chain never holds another lock and two commits cannot wait for each other), which
waits for any other instance's commit that holds it; the next statement then sees that
commit's head, links the entry to it with privacy.audit's formula
(``sha256(prev_hash || "\n" || canonical)``, the canonical form computed in Python) and
moves the head, and the lock is held until this commit ends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import cast

from gateway.storage.base import (
    AuditRow,
    Batched,
    ChainRow,
    ListedAuditRow,
    NewAuditRow,
    Rows,
    Steps,
)
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
# The first key of the chains' advisory locks (the second is the tenant's, `_chain_key`).
_CHAIN_LOCKS = 0x736D6101  # "sma" 1
# The previous hash of a chain's first entry.
GENESIS = "0" * 64


def _in_lock_order(rows: Rows) -> Rows:
    """Each chain's key once, in one order on every instance, whichever units brought it."""
    return [(key,) for key in sorted({cast(int, key) for (key,) in rows})]


LOCK_CHAINS = Batched(
    f"SELECT pg_advisory_xact_lock({_CHAIN_LOCKS}, chain.key) FROM (VALUES {{values}})"
    " AS chain (key)",
    fold=_in_lock_order,
    types=("int4",),
)
# An entry linked to its tenant's head as committed (the lock is held), and the head moved.
_LINK = (
    "WITH entry AS ("
    " SELECT given.*, coalesce(audit_heads.hash, ?) AS prev FROM (VALUES"
    " (?::text, ?::float8, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text))"
    " AS given (tenant, at, actor, action, subject, salt, commitment, detail, canonical)"
    " LEFT JOIN audit_heads ON audit_heads.tenant = given.tenant),"
    " linked AS (INSERT INTO audit_log"
    " (tenant, at, actor, action, subject, salt, commitment, detail, prev_hash, hash)"
    " SELECT tenant, at, actor, action, subject, salt, commitment, detail, prev,"
    " encode(sha256(convert_to(prev || chr(10) || canonical, 'UTF8')), 'hex') FROM entry"
    " RETURNING tenant, hash)"
    " INSERT INTO audit_heads (tenant, seq, hash) SELECT tenant, 0, hash FROM linked"
    " ON CONFLICT (tenant) DO UPDATE SET seq = audit_heads.seq + 1, hash = excluded.hash"
)


def _chain_key(tenant: str) -> int:
    """A tenant's lock key: the same on every instance, and sortable here."""
    return int.from_bytes(hashlib.sha256(tenant.encode()).digest()[:4], "big", signed=True)


class AuditRepository:
    def __init__(self, engine: GroupCommit) -> None:
        self._engine = engine
        self.links_in_commit = engine.dialect.shared

    async def heads(self) -> dict[str, str]:
        """Each tenant's last hash."""
        rows = await self._engine.fetch("SELECT tenant, hash FROM audit_heads")
        return {tenant: digest for tenant, digest in rows}

    def append(self, rows: Sequence[AuditRow]) -> Steps:
        """The steps that write entries and move their tenants' heads, in the rows' order."""
        return ((_INSERT, rows), (_HEAD, [(row[0], row[9]) for row in rows]))

    def append_linked_in_commit(self, rows: Sequence[NewAuditRow]) -> Steps:
        """The steps that lock the rows' chains, then link each entry to its tenant's head
        and move the head, in the rows' order (PostgreSQL: see the module's docstring)."""
        return (
            (LOCK_CHAINS, _in_lock_order([(_chain_key(row[0]),) for row in rows])),
            (_LINK, [(GENESIS, *row) for row in rows]),
        )

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
        """The steps that delete the tenant's chain; on PostgreSQL under its lock, so an
        entry another instance is linking meanwhile is either deleted with it or starts
        the next chain from the genesis hash, never links to a head that is gone."""
        deletes: Steps = (
            ("DELETE FROM audit_log WHERE tenant = ?", ((tenant,),)),
            ("DELETE FROM audit_heads WHERE tenant = ?", ((tenant,),)),
        )
        if not self.links_in_commit:
            return deletes
        return ((LOCK_CHAINS, [(_chain_key(tenant),)]), *deletes)
