"""The store: one backend's group-commit engine and its repositories, opened together.

Callers reach storage through the repositories (``store.traffic``, ``store.inbox``,
``store.inbound``, ``store.notices``, ``store.consent``, ``store.audit``), whose interfaces are in
`gateway.storage.base`; a write that spans repositories is composed from the steps
their methods return and committed as one unit with `Store.commit`. The only backend
is SQLite (`gateway.storage`); see that package for the layout.
"""

from __future__ import annotations

from pathlib import Path

from gateway.config import StorageConfig
from gateway.metrics import Metrics
from gateway.storage.audit import SqliteAudit
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
from gateway.storage.consent import SqliteConsent
from gateway.storage.engine import GroupCommit
from gateway.storage.inbound import SqliteInbound
from gateway.storage.inbox import INSERT_INBOX, SqliteInbox
from gateway.storage.notices import DELETE_NOTICE, INSERT_NOTICE, SqliteNotices
from gateway.storage.schema import migrate
from gateway.storage.traffic import (
    DELETE_BODY,
    INSERT_BODY,
    INSERT_MESSAGE,
    REPLACE_BODY,
    UPDATE_STATUS,
    SqliteTraffic,
)

__all__ = ["Store", "StoreError"]

# The order in which a group commit writes its batched statements; None is where the
# plain ones (erasures, consent and audit entries, retention) run, unit after unit.
# A message's row before its body, status and inbox entry; a body replaced before a
# final state deletes it; rows queued in the same commit as an erasure are written
# before it and erased with it, except notices, which are written after it.
PHASES: tuple[Batched | None, ...] = (
    INSERT_MESSAGE,
    INSERT_BODY,
    UPDATE_STATUS,
    REPLACE_BODY,
    INSERT_INBOX,
    DELETE_BODY,
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
        engine = await GroupCommit.open(
            Path(config.path), config.synchronous, PHASES, metrics, migrate
        )
        return cls(
            engine,
            SqliteTraffic(engine),
            SqliteInbox(engine),
            await SqliteNotices.open(engine),
            SqliteConsent(engine),
            SqliteAudit(engine),
            SqliteInbound(engine),
        )

    @property
    def healthy(self) -> bool:
        return self.engine.healthy

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
