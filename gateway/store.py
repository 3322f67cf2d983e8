"""The store: one backend's group-commit engine and its repositories, opened together.

Callers reach storage through the repositories (``store.traffic``, ``store.inbox``,
``store.inbound``, ``store.notices``, ``store.consent``, ``store.audit``), whose interfaces are in
`gateway.storage.base`; a write that spans repositories is composed from the steps
their methods return and committed as one unit with `Store.commit`. The backend is
SQLite or PostgreSQL (``[storage] backend``): one engine each, the same repositories;
see `gateway.storage` for the layout.
"""

from __future__ import annotations

from pathlib import Path

from gateway.config import StorageBackend, StorageConfig
from gateway.metrics import Metrics
from gateway.storage import pg_schema
from gateway.storage.audit import LOCK_CHAINS, AuditRepository
from gateway.storage.base import (
    AfterCommit,
    Audit,
    Batched,
    Consent,
    Engine,
    Inbound,
    Inbox,
    Notices,
    Steps,
    StoreError,
    TenantData,
    Traffic,
)
from gateway.storage.consent import ConsentRepository
from gateway.storage.engine import GroupCommit, SqliteGroupCommit
from gateway.storage.inbound import InboundRepository
from gateway.storage.inbox import INSERT_INBOX, InboxRepository
from gateway.storage.notices import DELETE_NOTICE, INSERT_NOTICE, NoticesRepository
from gateway.storage.pg_engine import PostgresGroupCommit
from gateway.storage.schema import migrate
from gateway.storage.traffic import (
    FINISH,
    INSERT_MESSAGE,
    PSEUDONYMISE,
    REPLACE_BODY,
    UPDATE_STATUS,
    TrafficRepository,
)

__all__ = ["Store", "StoreError"]

# The order in which a group commit writes its batched statements; None is where the
# plain ones (erasures, consent and audit entries, retention) run, unit after unit.
# A message's row before its hand-over, body replacement and final state, in that
# order (the final state clears the body); rows queued in the same commit as an
# erasure are written before it and erased with it, except notices, which are written
# after it. Retention pseudonymises final rows only, in commits of its own. The audit
# chains' locks (PostgreSQL) come first, so a commit waits for one before it holds any
# other lock.
PHASES: tuple[Batched | None, ...] = (
    LOCK_CHAINS,
    INSERT_MESSAGE,
    UPDATE_STATUS,
    REPLACE_BODY,
    FINISH,
    INSERT_INBOX,
    PSEUDONYMISE,
    None,
    INSERT_NOTICE,
    DELETE_NOTICE,
)


class Store:
    def __init__(
        self,
        engine: Engine,
        traffic: Traffic,
        inbox: Inbox,
        notices: Notices,
        consent: Consent,
        audit: Audit,
        inbound: Inbound,
    ) -> None:
        self.engine = engine
        self.traffic = traffic
        self.inbox = inbox
        self.inbound = inbound
        self.notices = notices
        self.consent = consent
        self.audit = audit
        # Every repository, in the order a purge counts and deletes their rows.
        self.repositories: tuple[TenantData, ...] = (
            traffic,
            inbox,
            inbound,
            notices,
            consent,
            audit,
        )

    @classmethod
    async def open(cls, config: StorageConfig, metrics: Metrics) -> Store:
        """Open the configured backend's engine (migrating its schema) and the repositories."""
        engine: GroupCommit
        if config.backend is StorageBackend.POSTGRES:
            engine = await PostgresGroupCommit.open(
                config.dsn, PHASES, metrics, pg_schema.MIGRATIONS, pg_schema.TABLES
            )
        else:
            engine = await SqliteGroupCommit.open(
                Path(config.path), config.synchronous, PHASES, metrics, migrate
            )
        return cls(
            engine,
            TrafficRepository(engine),
            InboxRepository(engine),
            await NoticesRepository.open(engine),
            ConsentRepository(engine),
            AuditRepository(engine),
            InboundRepository(engine),
        )

    @property
    def healthy(self) -> bool:
        return self.engine.healthy

    async def ready(self) -> bool:
        """Whether the database answers now, with this release's schema (for /readyz)."""
        return await self.engine.ready()

    def queue(self, kind: str, steps: Steps, after_commit: AfterCommit = None) -> None:
        """Queue repositories' steps as one unit for the next commit, waiting for nothing;
        ``after_commit`` runs once it is durable."""
        self.engine.queue(kind, steps, after_commit)

    async def commit(self, kind: str, steps: Steps, after_commit: AfterCommit = None) -> None:
        """Commit repositories' steps as one unit; returns once committed (else StoreError).

        The unit is queued before this awaits anything. ``kind`` names it in logs.
        """
        await self.engine.commit(kind, steps, after_commit)

    async def flush(self) -> None:
        """Wait until every write queued so far is committed (a read-your-writes barrier)."""
        await self.engine.flush()

    async def checkpoint(self) -> None:
        """Make replaced and deleted content unrecoverable from the files."""
        await self.engine.checkpoint()

    async def close(self) -> None:
        """Commit everything queued, then close every connection."""
        await self.engine.close()
