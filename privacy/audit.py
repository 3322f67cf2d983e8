"""The audit log of privacy-relevant changes, hash-chained per tenant.

Each entry's hash covers its fields and the previous entry's hash, so editing or
deleting an entry breaks the chain from there on; ``audit_heads`` keeps each
tenant's last sequence number and hash, so cutting entries off the end is seen
too. Chains are per tenant (the controller), so offboarding one tenant removes a
whole chain without touching the others.

Subjects are pseudonyms, never numbers, and the chain covers only a salted
commitment to the subject: erasing a subject clears its pseudonym and salt from
its entries (``redact``), which leaves them unlinkable while the chain still
verifies.

Where one process owns the store (SQLite), it links the chain in memory from the heads it
read at start. Where several instances append to one database (PostgreSQL), none of them
may: each entry is linked inside the commit that writes it, to its tenant's head as
committed, under a lock on that tenant's chain (`gateway.storage.audit`); the link there
is `link`'s formula, so the verifier reads both chains the same way.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.storage.audit import GENESIS
from gateway.storage.base import AuditRow, NewAuditRow, Steps
from gateway.store import Store


def commit_to(subject: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{subject}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    tenant: str
    at: float
    actor: str
    action: str
    # None once redacted (or for entries about no one subject).
    subject: str | None = field(repr=False)
    detail: str = field(default="", repr=False)
    seq: int | None = None
    hash: str = ""


def canonical(entry: AuditEntry, commitment: str) -> str:
    """What an entry's hash covers besides the previous hash, as one string."""
    fields = [entry.tenant, entry.at, entry.actor, entry.action, commitment, entry.detail]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def link(prev_hash: str, covered: str) -> str:
    """The hash of an entry whose `canonical` form is ``covered`` (PostgreSQL's says the same)."""
    return hashlib.sha256(f"{prev_hash}\n{covered}".encode()).hexdigest()


def chain_hash(prev_hash: str, entry: AuditEntry, commitment: str) -> str:
    return link(prev_hash, canonical(entry, commitment))


@dataclass(frozen=True, slots=True)
class Verdict:
    tenant: str
    entries: int
    broken_at: int | None  # the seq of the first entry that does not verify
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None and not self.problem


class AuditLog:
    """Appends entries in the same group commit as the change they record."""

    def __init__(self, store: Store, heads: dict[str, str] | None) -> None:
        self._store = store
        # Each tenant's last hash, where this process links the chain; None where the
        # database does (several instances append).
        self._heads = heads

    @classmethod
    async def open(cls, store: Store) -> AuditLog:
        if store.audit.links_in_commit:
            return cls(store, None)
        return cls(store, await store.audit.heads())

    def steps(self, entries: Sequence[AuditEntry]) -> Steps:
        """The writes that append ``entries``; commit them in the unit of the change.

        The chain advances here, in memory, in the order the entries will be written;
        or, on a database several instances append to, in the commit.
        """
        if self._heads is None:
            unlinked: list[NewAuditRow] = []
            for entry in entries:
                salt, commitment = _commit(entry)
                unlinked.append((*_fields(entry, salt, commitment), canonical(entry, commitment)))
            return self._store.audit.append_linked_in_commit(unlinked)
        rows: list[AuditRow] = []
        for entry in entries:
            prev = self._heads.get(entry.tenant, GENESIS)
            salt, commitment = _commit(entry)
            digest = chain_hash(prev, entry, commitment)
            self._heads[entry.tenant] = digest
            rows.append((*_fields(entry, salt, commitment), prev, digest))
        return self._store.audit.append(rows)

    async def append(self, entries: Sequence[AuditEntry]) -> None:
        """Record entries that go with no other write (e.g. a data export)."""
        await self._store.commit("audit", self.steps(entries))

    async def resync(self) -> None:
        """Reload the heads after a failed commit moved them ahead of the database."""
        if self._heads is not None:
            self._heads = await self._store.audit.heads()

    def forget_tenant(self, tenant: str) -> None:
        """After a purge: the tenant's next entry starts a new chain from the genesis hash."""
        if self._heads is not None:
            self._heads.pop(tenant, None)

    async def entries(self, tenant: str, before: int | None, limit: int) -> list[AuditEntry]:
        """A tenant's entries, newest first."""
        rows = await self._store.audit.entries(tenant, before, limit)
        return [
            AuditEntry(
                tenant=t,
                at=at,
                actor=actor,
                action=action,
                subject=subject,
                detail=detail,
                seq=seq,
                hash=digest,
            )
            for seq, t, at, actor, action, subject, detail, digest in rows
        ]


def _commit(entry: AuditEntry) -> tuple[str | None, str]:
    """A fresh salt for the entry's subject and the commitment to it (none without one)."""
    if not entry.subject:
        return None, ""
    salt = secrets.token_hex(16)
    return salt, commit_to(entry.subject, salt)


def _fields(
    entry: AuditEntry, salt: str | None, commitment: str
) -> tuple[str, float, str, str, str | None, str | None, str, str]:
    """An entry's stored fields before its link."""
    return (
        entry.tenant,
        entry.at,
        entry.actor,
        entry.action,
        entry.subject,
        salt,
        commitment,
        entry.detail,
    )


_CUT_OFF = "the chain does not end at the recorded head (entries cut off the end?)"
# Rounds of reading on while entries keep being committed during a verify.
_MAX_ROUNDS = 100


async def verify(store: Store) -> list[Verdict]:
    """Recompute every tenant's chain and compare it with its head.

    Reads the whole log, so on the store's bulk reader, beside the reads of traffic.
    """
    tenants = await store.audit.tenants()
    return [await _verify_tenant(store, tenant) for tenant in sorted(tenants)]


async def _verify_tenant(store: Store, tenant: str) -> Verdict:
    """One tenant's chain, read on until its head is the last entry read.

    A running gateway appends entries (and moves the head, in the same commit) while
    this reads, so the head is read after the entries: a head past the last entry read
    means entries committed meanwhile, which are read too; a head that is missing or
    behind the entries, or does not hash to the last one, is a chain cut off or forged.
    """
    prev, entries, last_seq = GENESIS, 0, -1
    head: tuple[int, str] | None = None
    for _ in range(_MAX_ROUNDS):
        rows = await store.audit.chain_after(tenant, last_seq)
        for seq, at, actor, action, subject, salt, commitment, detail, prev_hash, digest in rows:
            entry = AuditEntry(tenant, at, actor, action, subject, detail)
            opened = subject is None or commit_to(subject, salt or "") == commitment
            if not opened or prev_hash != prev or digest != chain_hash(prev, entry, commitment):
                return Verdict(tenant, entries + len(rows), seq)
            prev, entries, last_seq = digest, entries + 1, seq
        head = await store.audit.head(tenant)
        if head is None or head[0] + 1 <= entries:
            break
    if head is None or head[0] + 1 != entries or head[1] != prev:
        return Verdict(tenant, entries, None, _CUT_OFF)
    return Verdict(tenant, entries, None)
