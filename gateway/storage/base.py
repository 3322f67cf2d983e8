"""What a storage backend provides, as interfaces the rest of the gateway depends on.

A backend is an engine (commits and reads) and one repository per group of tables,
each behind the Protocol here. The repositories of this package serve both SQLite and
PostgreSQL: they write their SQL once, and an engine per backend runs it (its `Dialect`
holds the few phrases that differ).

Writes are *steps*: ``(statement, rows)`` pairs, made only by repositories. A write
of one repository is committed by its own method; a write that spans repositories and
must commit together (an erasure, a purge) is composed from the steps that their
methods return and committed as one unit (`Engine.commit`). To everyone else a step
is opaque: no module but a repository writes a statement.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import NamedTuple, Protocol

from gateway.domain import (
    InboundMessage,
    InboxEntry,
    Message,
    MessageFilter,
    Notice,
    Outgoing,
    Part,
    Status,
    StatusChange,
)

Rows = Sequence[Sequence[object]]
Fold = Callable[[Rows], Rows]


class StoreError(Exception):
    """The store could not commit this write; nothing of it was acknowledged."""


class Batched:
    """A statement whose rows from every unit of one group commit are written together.

    ``sql`` holds ``{values}`` where the rows' ``(?, ...)`` groups go, so a thousand
    rows are one statement, not a thousand. ``fold`` merges rows that must not meet in
    one statement (two updates of the same row). The engine runs batched statements
    in the order it is given (`gateway.store` sets it), plain ones once per row.
    ``types`` casts each value of a row for PostgreSQL, which cannot infer the types
    of a ``VALUES`` list outside an INSERT (SQLite ignores them).
    """

    __slots__ = ("fold", "sql", "types")

    def __init__(
        self, sql: str, fold: Fold | None = None, types: Sequence[str] | None = None
    ) -> None:
        self.sql = sql
        self.fold = fold
        self.types = tuple(types) if types else None

    def __repr__(self) -> str:
        return f"Batched({self.sql.split('(')[0].strip()!r})"


Statement = str | Batched
Step = tuple[Statement, Rows]
Steps = Sequence[Step]
AfterCommit = Callable[[], None] | None


class Engine(Protocol):
    """Group commit: each call's steps are a unit that commits, or is refused, whole."""

    @property
    def healthy(self) -> bool: ...

    async def ready(self) -> bool:
        """Whether the database answers now, with this release's schema (for /readyz)."""

    def queue(self, kind: str, steps: Steps, after_commit: AfterCommit = None) -> None:
        """Queue a unit for the next commit; ``after_commit`` runs once it is durable."""

    async def commit(self, kind: str, steps: Steps, after_commit: AfterCommit = None) -> None:
        """Queue a unit and return once it is committed (StoreError if it was refused)."""

    async def flush(self) -> None:
        """Wait until every unit queued so far is committed."""

    async def checkpoint(self) -> None:
        """Make replaced and deleted content unrecoverable from the files."""

    async def close(self) -> None:
        """Commit everything queued, then close."""


class TenantData(Protocol):
    """What every repository does for an offboarding (`privacy.retention.purge_tenant`)."""

    async def tenant_rows(self, tenant: str) -> dict[str, int]:
        """The tenant's rows in each of this repository's tables."""

    def purge_tenant(self, tenant: str) -> Steps:
        """The steps that delete every row of the tenant from this repository's tables."""


class Identifiable(NamedTuple):
    """A final traffic row that still names people, as retention pseudonymises it."""

    id: str
    tenant: str
    sender: str
    recipient: str
    client_ref: str | None
    submitted_at: float
    enroute_at: float | None
    final_at: float | None


class HandsetActivity(NamedTuple):
    """How many rows of one table name a handset, and when the newest was made."""

    msisdn: str
    rows: int
    last_at: float


class Pseudonymised(NamedTuple):
    """What replaces the identifiers and times of the row ``id`` (under key ``epoch``)."""

    recipient: str
    sender: str
    client_ref: str | None
    submitted_at: float
    enroute_at: float | None
    final_at: float | None
    epoch: str
    id: str


class Traffic(TenantData, Protocol):
    """The traffic log (messages), the bodies still to deliver, the anonymous daily counts."""

    async def add_messages(
        self, items: Sequence[Outgoing], held: tuple[str, float] | None = None
    ) -> None: ...
    def record_status(self, change: StatusChange, after_commit: AfterCommit = None) -> None: ...
    def status_steps(self, change: StatusChange) -> Steps: ...
    def replace_body(self, message_id: str, body: str) -> None: ...
    def reschedule(self, message_id: str, send_at: float, expires_at: float) -> None: ...
    async def get_message(self, tenant: str, message_id: str) -> Message | None: ...
    async def submission(self, tenant: str, submission: str) -> list[Message]: ...
    async def list_messages(
        self,
        tenant: str,
        *,
        recipient: str | None = None,
        sender: str | None = None,
        status: Status | None = None,
        since_id: str | None = None,
        before_id: str | None = None,
        limit: int = 100,
        narrow: MessageFilter | None = None,
    ) -> list[Message]: ...
    def forget_message(self, tenant: str, message_id: str) -> Steps: ...
    async def pending_bodies(
        self, tenant: str, message_ids: Sequence[str]
    ) -> dict[str, tuple[str, Part | None]]: ...
    async def pending_with_text(self, tenant: str, text: str, limit: int) -> list[str]: ...
    async def unfinished(self) -> list[Outgoing]: ...
    # Messages on their way held under a lease, when instances share the store.
    async def adopt_unfinished(
        self, owner: str, now: float, until: float, limit: int
    ) -> list[Outgoing]: ...
    async def renew_held(self, owner: str, until: float) -> None: ...
    async def release_held(self, owner: str) -> None: ...
    async def release_earlier_runs(self, runs: str, owner: str) -> None: ...
    async def subject_messages(self, tenant: str, names: Sequence[str]) -> list[Message]: ...
    async def count_subject(self, tenant: str, names: Sequence[str]) -> int: ...
    def erase_subject(self, tenant: str, names: Sequence[str]) -> Steps: ...
    async def oldest_identifiable(self) -> float | None: ...
    async def pseudonymise(self, rows: Sequence[Pseudonymised]) -> None: ...
    async def delete_submitted_before(self, cutoff: float, limit: int) -> int: ...
    async def epoch_in_use(self, tenant: str, epoch: str) -> bool: ...
    def end_unfinished(self, tenant: str, at: float, error: str) -> Steps: ...
    def erase_messages(self, tenant: str) -> Steps: ...
    async def recipients(self, tenant: str, since_id: str, limit: int) -> list[HandsetActivity]: ...
    async def recipient_counts(
        self, tenant: str, since_id: str, msisdns: Sequence[str]
    ) -> dict[str, int]: ...


class Inbox(TenantData, Protocol):
    """What the simulated handsets received."""

    def delivery_steps(self, item: Outgoing, at: float) -> Steps: ...
    async def received(self, tenant: str, msisdn: str, limit: int = 100) -> list[InboxEntry]: ...
    async def delivered(
        self, tenant: str, msisdn: str, message_id: str
    ) -> tuple[str, Part | None] | None: ...
    async def parts(
        self, tenant: str, message_ids: Sequence[str]
    ) -> dict[str, tuple[str, str, Part | None]]: ...
    async def with_text(self, tenant: str, text: str, limit: int) -> list[str]: ...
    async def for_handset(self, tenant: str, msisdn: str) -> list[InboxEntry]: ...
    async def count_handset(self, tenant: str, msisdn: str) -> int: ...
    async def handsets(self, tenant: str, limit: int) -> list[HandsetActivity]: ...
    async def handset_counts(self, tenant: str, msisdns: Sequence[str]) -> dict[str, int]: ...
    def erase_handset(self, tenant: str, msisdn: str) -> Steps: ...
    def redact_message(self, tenant: str, message_id: str) -> Steps: ...
    async def delete_received_before(self, cutoff: float, limit: int) -> int: ...


class Inbound(TenantData, Protocol):
    """What handsets sent to the tenants' numbers (MO), kept for ``privacy.body_ttl``."""

    def record(self, mo: InboundMessage) -> None: ...
    async def received(
        self, tenant: str, before_id: str | None = None, limit: int = 100
    ) -> list[InboundMessage]: ...
    async def for_handset(self, tenant: str, handset: str) -> list[InboundMessage]: ...
    async def count_handset(self, tenant: str, handset: str) -> int: ...
    async def handsets(self, tenant: str, limit: int) -> list[HandsetActivity]: ...
    async def latest(self, tenant: str, handsets: Sequence[str]) -> dict[str, InboundMessage]: ...
    async def handset_counts(self, tenant: str, handsets: Sequence[str]) -> dict[str, int]: ...
    def erase_handset(self, tenant: str, handset: str) -> Steps: ...
    async def delete_received_before(self, cutoff: float, limit: int) -> int: ...


class Notices(TenantData, Protocol):
    """Receipts and MO messages kept for a tenant's receiver until it acknowledges them."""

    def keep(self, notice: Notice, after_commit: AfterCommit = None) -> None: ...
    def keep_steps(self, notice: Notice) -> Steps: ...
    def forget(self, queue_id: int) -> None: ...
    async def kept(self, tenant: str, now: float, limit: int) -> list[Notice]: ...
    async def expired(self, now: float, limit: int = 1000) -> list[tuple[int, str]]: ...
    async def count_by_tenant(self) -> dict[str, int]: ...
    async def for_handset(self, tenant: str, handset: str) -> list[Notice]: ...
    async def count_handset(self, tenant: str, handset: str) -> int: ...
    def erase_handset(self, tenant: str, handset: str) -> Steps: ...
    async def delete_stale(self, created_before: float, now: float, limit: int) -> int: ...
    # Claims, when instances share the store (`smpp.notices`).
    async def claim(
        self, tenant: str, owner: str, now: float, until: float, limit: int
    ) -> list[Notice]: ...
    async def claim_ids(
        self, owner: str, queue_ids: Sequence[int], now: float, until: float
    ) -> set[int]: ...
    async def unclaimed_by_tenant(self, now: float) -> dict[str, int]: ...
    async def renew(self, owner: str, until: float) -> None: ...
    def release(self, owner: str, queue_ids: Sequence[int]) -> None: ...
    async def release_all(self, owner: str) -> None: ...
    async def release_earlier_runs(self, runs: str, owner: str) -> None: ...


# (seq, tenant, subject, kind, purpose, sender, source, evidence, at)
ConsentRow = tuple[int, str, str, str, str | None, str | None, str, str, float]
# A new event: a ConsentRow without its seq.
NewConsentRow = tuple[str, str, str, str | None, str | None, str, str, float]


class Consent(TenantData, Protocol):
    """The consent registry's append-only events, by tenant and subject pseudonym."""

    async def events(self, tenant: str, subjects: Sequence[str]) -> list[ConsentRow]: ...
    async def history(self, tenant: str, subject: str) -> list[ConsentRow]: ...
    async def subjects_after(self, tenant: str, after: str, limit: int) -> list[str]: ...
    def subject_pages(self, tenant: str, size: int) -> AsyncIterator[list[str]]: ...
    def append(self, rows: Sequence[NewConsentRow]) -> Steps: ...
    async def count_subject(self, tenant: str, subject: str) -> int: ...
    def erase_subject(self, tenant: str, subject: str) -> Steps: ...


# (tenant, at, actor, action, subject, salt, commitment, detail, prev_hash, hash)
AuditRow = tuple[str, float, str, str, str | None, str | None, str, str, str, str]
# (tenant, at, actor, action, subject, salt, commitment, detail, canonical): an entry the
# commit links, with what its hash covers besides the previous hash.
NewAuditRow = tuple[str, float, str, str, str | None, str | None, str, str, str]
# (seq, tenant, at, actor, action, subject, detail, hash): an entry as the audit API lists it.
ListedAuditRow = tuple[int, str, float, str, str, str | None, str, str]
# (seq, at, actor, action, subject, salt, commitment, detail, prev_hash, hash)
ChainRow = tuple[int, float, str, str, str | None, str | None, str, str, str, str]


class Audit(TenantData, Protocol):
    """The hash-chained audit log and each tenant's head (the chain is privacy.audit's)."""

    # Whether entries are linked in the commit that writes them (several instances append:
    # `append_linked_in_commit`), not by the one process that owns the store (`append`).
    links_in_commit: bool

    async def heads(self) -> dict[str, str]: ...
    def append(self, rows: Sequence[AuditRow]) -> Steps: ...
    def append_linked_in_commit(self, rows: Sequence[NewAuditRow]) -> Steps: ...
    def redact(self, tenant: str, subject: str) -> Steps: ...
    async def entries(
        self, tenant: str, before: int | None, limit: int
    ) -> list[ListedAuditRow]: ...
    async def tenants(self) -> set[str]: ...
    async def chain_after(self, tenant: str, seq: int) -> list[ChainRow]: ...
    async def head(self, tenant: str) -> tuple[int, str] | None: ...
