"""Retention: traffic data is identifiable only while needed, then pseudonymised, then gone.

One run, in bounded batches so traffic keeps flowing, each batch its own group
commit (safe to interrupt and run again: every step picks up what is left), its
scans on the store's bulk reader, away from the reads that submits wait for:

1. bodies: handset inbox entries and MO messages (``inbound``, body and number)
   older than ``privacy.body_ttl`` (or the pseudonymisation window, if shorter)
   are erased, and so are notices (receipts,
   MO messages kept for an unbound receiver) past the window;
2. pseudonymise: final traffic rows older than ``pseudonymise_after`` get every
   direct identifier (recipient; sender when it is a number; client_ref) replaced
   by a keyed pseudonym under the key of their tenant and epoch, lose their
   callback URL, and have their timestamps rounded down (``privacy.coarsen_to``);
3. delete: rows older than ``delete_after`` are deleted, after adding them to the
   anonymous ``daily_counts`` (day, tenant, interface, status);
4. destroy: an epoch key under which no row remains, and under which none can be
   pseudonymised any more, is destroyed, so nothing left can be re-linked;
5. the store is checkpointed: on SQLite the WAL is copied back and truncated, and
   with ``secure_delete`` on, replaced and deleted content does not linger in free
   pages or the log; on PostgreSQL the tables are vacuumed (docs/privacy.md says
   what that does not reach).

Instances sharing a PostgreSQL store run retention one at a time: a run holds the
cluster's ``retention`` run lock (`gateway.cluster.base.RunLocks`), and an instance
that finds it held skips its run (``smsgw_retention_runs_total{outcome="skipped"}``);
the batches being idempotent, a run cut short by an instance's death is finished by
the next one, wherever it runs.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import multiprocessing
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gateway.cluster.base import RunLocks
from gateway.cluster.instance import instance_id
from gateway.cluster.local import LocalRunLocks
from gateway.config import Config, StorageBackend
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.store import Store
from privacy.keys import KeyRing
from privacy.retention_worker import Batch, pseudonymise_batch

log = logging.getLogger(__name__)

BATCH = 2000
# Rows a pseudonymising commit updates: each is 20 to 80 us of the writer (five
# indexes change), and submits queued behind it wait for it.
PSEUDONYMISE_BATCH = 1000


@dataclass(slots=True)
class RetentionReport:
    pseudonymised: int = 0
    deleted: int = 0
    bodies_erased: int = 0
    notices_erased: int = 0
    epochs_destroyed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


class RetentionRunning(Exception):
    """Another instance sharing the store holds the retention run lock: this run is skipped."""


class Retention:
    def __init__(
        self,
        config: Config,
        store: Store,
        keys: KeyRing,
        metrics: Metrics,
        clock: Callable[[], float],
        runs: RunLocks | None = None,
    ) -> None:
        """``runs``: the cluster's run locks; without, this process is the only one."""
        self._config = config
        self._runs = runs or LocalRunLocks(instance_id(config, config.http.port))
        self._privacy = config.privacy
        self._store = store
        self._keys = keys
        self._metrics = metrics
        self._clock = clock
        # The store as its worker process opens it: a file: URI (read-only), or the DSN.
        if config.storage.backend is StorageBackend.POSTGRES:
            self._database = config.storage.dsn
        else:
            self._database = Path(config.storage.path).resolve().as_uri()
        # Submit time of the oldest identifiable record at the last look; the gauge
        # ages it at every scrape, so a stalled job shows as a growing age.
        self._oldest_identifiable_at: float | None = None
        # When the last run ended, and what it did (the operator's retention view).
        self.last_run: tuple[float, RetentionReport] | None = None
        # One run at a time (the schedule, an operator's run now, a purge): two runs
        # selecting the same old rows would count them twice into daily_counts.
        self._lock = asyncio.Lock()
        retention = self._privacy.retention
        metrics.retention_window.labels("pseudonymise").set(retention.pseudonymise_after)
        metrics.retention_window.labels("delete").set(retention.delete_after)
        metrics.retention_interval.set(retention.interval)
        metrics.oldest_identifiable.set_function(self.oldest_identifiable_age)

    @property
    def oldest_identifiable_at(self) -> float | None:
        """Submit time of the oldest identifiable traffic row at the last look."""
        return self._oldest_identifiable_at

    def oldest_identifiable_age(self) -> float:
        if self._oldest_identifiable_at is None:
            return 0.0
        return max(0.0, self._clock() - self._oldest_identifiable_at)

    async def find_oldest_identifiable(self) -> None:
        self._oldest_identifiable_at = await self._store.traffic.oldest_identifiable()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[bool]:
        """No other run meanwhile, here or on another instance; False: one is running."""
        async with self._lock, self._runs.hold("retention") as held:
            yield held

    async def run(self) -> RetentionReport:
        """One run; RetentionRunning if another instance sharing the store is running one."""
        instance = self._runs.instance
        async with self.exclusive() as held:
            if not held:
                self._metrics.retention_runs.labels(instance, "skipped").inc()
                log_event(log, "retention.skipped", instance=instance)
                raise RetentionRunning
            report = await self._run()
        self._metrics.retention_runs.labels(instance, "ran").inc()
        return report

    async def _run(self) -> RetentionReport:
        started = time.perf_counter()
        now = self._clock()
        window = self._privacy.retention.pseudonymise_after
        report = RetentionReport()
        inbox, inbound, notices = self._store.inbox, self._store.inbound, self._store.notices
        body_cutoff = now - min(self._privacy.body_ttl, window)
        report.bodies_erased = await _in_batches(
            lambda: inbox.delete_received_before(body_cutoff, BATCH)
        ) + await _in_batches(lambda: inbound.delete_received_before(body_cutoff, BATCH))
        report.notices_erased = await _in_batches(
            lambda: notices.delete_stale(now - window, now, BATCH)
        )
        report.pseudonymised = await self._pseudonymise(now - window)
        delete_cutoff = now - self._privacy.retention.delete_after
        report.deleted = await _in_batches(
            lambda: self._store.traffic.delete_submitted_before(delete_cutoff, BATCH)
        )
        report.epochs_destroyed = await self._destroy_spent_epochs(now - window)
        await self._store.checkpoint()
        report.seconds = time.perf_counter() - started
        await self._observe(report)
        return report

    async def _pseudonymise(self, cutoff: float) -> int:
        """Pseudonymise every final row submitted before ``cutoff``, a batch per commit.

        The rows are read and their replacements computed in a worker process
        (privacy/retention_worker.py), the next batch while the writer commits this
        one; the event loop only hands the replacements to the writer. Each batch's
        update skips rows already pseudonymised, so a run cut short is taken up again.
        """
        oldest = await self._store.traffic.oldest_identifiable()
        if oldest is None or oldest >= cutoff:
            return 0  # nothing to do: no worker started
        loop = asyncio.get_running_loop()
        months, coarsen_to = self._privacy.months_per_epoch, self._privacy.coarsen_to
        keys: dict[tuple[str, str], bytes] = {}
        worker = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))

        def read(after: str) -> asyncio.Future[Batch]:
            return loop.run_in_executor(
                worker,
                pseudonymise_batch,
                self._database,
                cutoff,
                after,
                PSEUDONYMISE_BATCH,
                dict(keys),
                months,
                coarsen_to,
            )

        total = 0
        try:
            after = ""
            next_batch = read(after)
            while True:
                batch = await next_batch
                if batch.missing:
                    for tenant, epoch in batch.missing:
                        keys[(tenant, epoch)] = self._keys.epoch_key(tenant, epoch)
                    next_batch = read(after)
                    continue
                if batch.last is None:
                    return total
                after = batch.last
                next_batch = read(after)  # computed while this batch commits
                await self._store.traffic.pseudonymise(batch.rows)
                total += len(batch.rows)
        finally:
            worker.shutdown(wait=False, cancel_futures=True)

    async def _destroy_spent_epochs(self, cutoff: float) -> list[tuple[str, str]]:
        """Destroy keys of epochs that ended before the window and hold no row any more."""
        destroyed = []
        months = self._privacy.months_per_epoch
        for tenant in self._keys.tenant_ids():
            for epoch in self._keys.epochs(tenant):
                if _epoch_end(epoch, months) > cutoff:
                    continue  # rows of this epoch may still be pseudonymised under it
                if not await self._store.traffic.epoch_in_use(tenant, epoch):
                    self._keys.destroy_epoch(tenant, epoch)
                    destroyed.append((tenant, epoch))
        return destroyed

    async def _observe(self, report: RetentionReport) -> None:
        metrics = self._metrics
        metrics.retention_rows.labels("pseudonymised").inc(report.pseudonymised)
        metrics.retention_rows.labels("deleted").inc(report.deleted)
        metrics.retention_rows.labels("bodies_erased").inc(report.bodies_erased)
        metrics.retention_rows.labels("notices_erased").inc(report.notices_erased)
        metrics.retention_epochs_destroyed.inc(len(report.epochs_destroyed))
        metrics.retention_run.observe(report.seconds)
        await self.find_oldest_identifiable()
        ended = self._clock()
        metrics.retention_last_success.set(ended)
        self.last_run = (ended, report)
        log_event(
            log,
            "retention.run",
            pseudonymised=report.pseudonymised,
            deleted=report.deleted,
            bodies_erased=report.bodies_erased,
            notices_erased=report.notices_erased,
            epochs_destroyed=len(report.epochs_destroyed),
            seconds=round(report.seconds, 3),
        )


async def _in_batches(batch: Callable[[], Awaitable[int]]) -> int:
    """Run ``batch`` (one bounded delete, its own commit) until it finds nothing; the total."""
    total = 0
    while done := await batch():
        total += done
    return total


def _epoch_end(epoch: str, months: int) -> float:
    """The first second after an epoch labelled ``YYYY-MM`` of ``months`` months."""
    year, month = (int(part) for part in epoch.split("-"))
    month += months
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return float(calendar.timegm(datetime(year, month, 1, tzinfo=UTC).timetuple()))


class UnknownTenant(LookupError):
    """A tenant that is neither configured nor holds any key or row."""


async def purge_tenant(
    store: Store,
    keys: KeyRing,
    tenant: str,
    *,
    configured: bool,
    forget: Callable[[], None] = lambda: None,
) -> dict[str, int]:
    """Offboarding: destroy a tenant's keys and delete every row of it.

    The keys go and ``forget`` drops what the process holds in memory of the tenant in
    the same step, with no await in between, as the deletes are queued: whatever is
    written for the tenant from then on (it may still be configured and sending) starts
    afresh, under new keys and a new audit chain, and lands after the deletes. Raises
    UnknownTenant for a tenant with nothing to purge that is not configured either (a
    typo must not look like a success).
    """
    counts: dict[str, int] = {}
    for repository in store.repositories:
        counts.update(await repository.tenant_rows(tenant))
    steps = [step for repository in store.repositories for step in repository.purge_tenant(tenant)]
    if not configured and tenant not in keys.tenant_ids() and not any(counts.values()):
        raise UnknownTenant(tenant)
    keys.destroy_tenant(tenant)
    forget()
    await store.commit("purge_tenant", steps)
    await store.checkpoint()
    return counts
