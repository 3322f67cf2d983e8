"""Prometheus metrics, one registry per app so that tests can build many apps.

Label values come from bounded sets only (tenant ids from the config, enum
values); never a number, body, message id or client address.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def smsgw_version() -> str:
    """The installed smsgw's version ("unknown" when run from a source tree, not installed)."""
    try:
        return version("smsgw")
    except PackageNotFoundError:
        return "unknown"


class EventCounter(Collector):
    """A labelled counter for per-message paths: one dict update per event.

    prometheus_client's Counter takes a lock and looks up its child on every
    increment; the event loop is the only writer here, so plain ints will do, and
    Prometheus reads them at scrape time like any counter.
    """

    def __init__(
        self, name: str, documentation: str, labelnames: list[str], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.counts: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def inc(self, *labels: str, amount: float = 1) -> None:
        self.counts[labels] = self.counts.get(labels, 0) + amount

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, count in list(self.counts.items()):
            family.add_metric(labels, count)
        yield family


class Metrics:
    def __init__(self) -> None:
        # EventCounter has no *_created series; the client's own metrics match it.
        # (prometheus_client leaves this function unannotated, hence the ignore.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        Gauge(
            "smsgw_build_info", "Always 1; the version is a label.", ["version"], registry=r
        ).labels(smsgw_version()).set(1)
        self.instance_info = Gauge(
            "smsgw_instance_info",
            "Always 1, for each live instance sharing this one's store (this one alone on"
            " SQLite); refreshed at every heartbeat.",
            ["instance", "version"],
            registry=r,
        )
        self.cluster_errors = Counter(
            "smsgw_cluster_errors_total",
            "Operations on the shared database that failed (heartbeat, claim, release, lease),"
            " by operation.",
            ["operation"],
            registry=r,
        )
        self.messages = EventCounter(
            "smsgw_messages_total",
            "Submitted messages by front end and outcome (accepted or rejected).",
            ["tenant", "interface", "outcome"],
            r,
        )
        self.rejections = EventCounter(
            "smsgw_rejections_total",
            "Rejected submits by stable rejection code.",
            ["tenant", "interface", "code"],
            r,
        )
        self.deliveries = EventCounter(
            "smsgw_delivery_outcomes_total",
            "Messages that reached a final state in the simulated network.",
            ["tenant", "status"],
            r,
        )
        self.submit_latency = Histogram(
            "smsgw_submit_latency_seconds",
            "Time from a submit entering the pipeline to its durable acceptance.",
            ["interface"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_batch = Histogram(
            "smsgw_store_batch_rows",
            "Rows written per group commit.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.store_commit = Histogram(
            "smsgw_store_commit_seconds",
            "Duration of one group commit.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "smsgw_store_errors_total",
            "Writes the store refused, one per call (a submit batch, a consent change...).",
            registry=r,
        )
        self.store_hook_errors = Counter(
            "smsgw_store_hook_errors_total",
            "Actions run after a commit (announcing a state, offering a receipt) that raised;"
            " the commit itself stands.",
            registry=r,
        )
        self.in_flight = Gauge(
            "smsgw_messages_in_flight",
            "Messages handed to the simulated network and not yet final.",
            registry=r,
        )
        self.scheduled = Gauge(
            "smsgw_messages_scheduled",
            "Scheduled messages waiting for their time (held in memory).",
            registry=r,
        )
        self.callbacks = Counter(
            "smsgw_callbacks_total",
            "Delivery callback attempts by result (delivered, retried, failed).",
            ["result"],
            registry=r,
        )
        self.smpp_sessions = Gauge(
            "smsgw_smpp_sessions",
            "Bound SMPP sessions by tenant and bind type.",
            ["tenant", "bind_type"],
            registry=r,
        )
        self.smpp_pdus = EventCounter(
            "smsgw_smpp_pdus_total",
            "SMPP PDUs by direction (in, out), command and command_status.",
            ["direction", "command", "status"],
            r,
        )
        self.smpp_window = Gauge(
            "smsgw_smpp_deliver_window_outstanding",
            "deliver_sm sent and not yet acknowledged, over all sessions of a tenant.",
            ["tenant"],
            registry=r,
        )
        self.smpp_window_size = Gauge(
            "smsgw_smpp_deliver_window_size",
            "deliver_sm a single session may have unacknowledged (smpp.deliver_window).",
            registry=r,
        )
        self.notices_pending = Gauge(
            "smsgw_smpp_notices_pending",
            "Receipts and mobile-originated messages kept until a receiver acknowledges them"
            " (in memory or in the store).",
            registry=r,
        )
        self.notice_retries = Counter(
            "smsgw_smpp_notice_retries_total",
            "deliver_sm answered with a temporary error and sent again after a backoff.",
            ["tenant"],
            registry=r,
        )
        self.smpp_tls_failures = Counter(
            "smsgw_smpp_tls_failures_total",
            "Connections to the SMPP TLS port closed because their TLS handshake failed"
            " (a plain-TCP client, a client that refused our certificate, a timeout).",
            registry=r,
        )
        self.notices_given_up = Counter(
            "smsgw_smpp_notices_given_up_total",
            "Receipts and mobile-originated messages dropped unacknowledged, by reason"
            " (permanent_error, generic_nack, expired).",
            ["tenant", "reason"],
            registry=r,
        )
        self.privacy_blocks = EventCounter(
            "smsgw_privacy_blocks_total",
            "Messages stopped by the privacy gates (at submit or before delivery).",
            ["tenant", "reason", "purpose"],
            r,
        )
        self.consent_changes = Counter(
            "smsgw_consent_changes_total",
            "Consent and opt-out events recorded, by kind.",
            ["tenant", "kind"],
            registry=r,
        )
        self.retention_rows = Counter(
            "smsgw_retention_rows_total",
            "Rows handled by the retention job (pseudonymised, deleted, bodies_erased,"
            " notices_erased).",
            ["action"],
            registry=r,
        )
        self.retention_epochs_destroyed = Counter(
            "smsgw_retention_epoch_keys_destroyed_total",
            "Epoch keys destroyed once no record under them remained.",
            registry=r,
        )
        self.retention_run = Histogram(
            "smsgw_retention_run_seconds",
            "Duration of one retention run.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.oldest_identifiable = Gauge(
            "smsgw_retention_oldest_identifiable_seconds",
            "Age of the oldest traffic record that still names a person.",
            registry=r,
        )
        self.retention_window = Gauge(
            "smsgw_retention_window_seconds",
            "The configured promise: records are pseudonymised after this age"
            " (pseudonymise_after) and deleted after that (delete_after).",
            ["stage"],
            registry=r,
        )
        self.retention_interval = Gauge(
            "smsgw_retention_interval_seconds",
            "Time between two scheduled retention runs.",
            registry=r,
        )
        self.retention_last_success = Gauge(
            "smsgw_retention_last_success_timestamp_seconds",
            "Unix time at which the last retention run finished without error.",
            registry=r,
        )
        self.retention_runs = Counter(
            "smsgw_retention_runs_total",
            "Retention runs by the instance that ran them, and runs skipped (outcome) because"
            " another instance sharing the store held the run lock.",
            ["instance", "outcome"],
            registry=r,
        )
        self.retention_failures = Counter(
            "smsgw_retention_failures_total",
            "Scheduled retention runs that failed (the next interval retries).",
            registry=r,
        )
        self.subject_requests = Counter(
            "smsgw_subject_requests_total",
            "Data-subject requests by kind (export, erase, restrict, unrestrict, object).",
            ["tenant", "kind"],
            registry=r,
        )
        self.auth_failures = Counter(
            "smsgw_auth_failures_total",
            "Failed credential checks (SMPP bind, HTTP API key) by verdict: failed, or"
            " refused unchecked because the throttle's queue for that peer or identity was full.",
            ["interface", "verdict"],
            registry=r,
        )
        self.chaos_injected = EventCounter(
            "smsgw_chaos_injected_total",
            "Faults the tenant's run-time chaos injected, by kind (a submit error, a delivery"
            " outcome, latency, session_drop, throughput_cap).",
            ["tenant", "kind"],
            r,
        )
        self.http_requests = EventCounter(
            "smsgw_http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            r,
        )
        self.http_errors = Counter(
            "smsgw_http_errors_total",
            "HTTP requests answered with a problem document, by code.",
            ["code"],
            registry=r,
        )
        self.bus_notifications = Counter(
            "smsgw_bus_notifications_total",
            "Notifications between instances (PostgreSQL NOTIFY), by direction (in, out);"
            " each carries a batch of items.",
            ["direction"],
            registry=r,
        )
        self.bus_dropped = Counter(
            "smsgw_bus_dropped_total",
            "Items of notifications between instances not sent or not read, by reason"
            " (queue_full, too_large, send_failed, unreadable); polling covers them.",
            ["reason"],
            registry=r,
        )
        self.bus_reconnects = Counter(
            "smsgw_bus_reconnects_total",
            "Times the listening connection to the shared database was lost and made again.",
            registry=r,
        )
        self.consent_rechecks = Counter(
            "smsgw_consent_rechecks_total",
            "Database reads of the consent registry made because several instances share it,"
            " by where (submit, delivery).",
            ["where"],
            registry=r,
        )
