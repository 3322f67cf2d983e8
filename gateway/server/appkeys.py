"""Typed keys for what the aiohttp application carries, in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.callbacks import CallbackDispatcher
from gateway.chaos import Chaos
from gateway.cluster.base import Cluster
from gateway.cluster.bus import ClusterBus
from gateway.cluster.events import SharedEvents
from gateway.cluster.held import RemoteHolds
from gateway.config import Config, TenantConfig
from gateway.events import EventBus
from gateway.lock import StorageLock
from gateway.metrics import Metrics
from gateway.network import SimulatedNetwork
from gateway.pipeline import SubmitPipeline
from gateway.server.coalescer import SubmitCoalescer
from gateway.server.operator import Operator
from gateway.server.simulator import SimulatorReset
from gateway.store import Store
from privacy.audit import AuditLog
from privacy.keys import KeyRing
from privacy.registry import ConsentRegistry
from privacy.retention import Retention
from privacy.subjects import SubjectRights
from smpp.server import SmppServer

CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
EVENTS = web.AppKey("events", EventBus)
# Each tenant's run-time chaos (in memory only); see `gateway.server.http_chaos`.
CHAOS = web.AppKey("chaos", Chaos)
# API key SHA-256 digest -> tenant; see `gateway.server.http_api.authenticate`.
TENANTS_BY_KEY = web.AppKey("tenants_by_key", dict[bytes, TenantConfig])
STORE = web.AppKey("store", Store)
# With a PostgreSQL store only: the notification bus between instances, and the event
# stream's share of it.
BUS = web.AppKey("bus", ClusterBus)
SHARED_EVENTS = web.AppKey("shared_events", SharedEvents)
HOLDS = web.AppKey("holds", RemoteHolds)
# The instances sharing the store (this one alone on SQLite); see `gateway.cluster`.
CLUSTER: web.AppKey[Cluster] = web.AppKey("cluster")
PIPELINE = web.AppKey("pipeline", SubmitPipeline)
# The pipeline's entry for single HTTP submits; see `gateway.server.coalescer`.
SINGLE_SUBMITS = web.AppKey("single_submits", SubmitCoalescer)
NETWORK = web.AppKey("network", SimulatedNetwork)
CALLBACKS = web.AppKey("callbacks", CallbackDispatcher)
SMPP_SERVER = web.AppKey("smpp_server", SmppServer)
REGISTRY = web.AppKey("registry", ConsentRegistry)
AUDIT = web.AppKey("audit", AuditLog)
KEYS = web.AppKey("keys", KeyRing)
RETENTION = web.AppKey("retention", Retention)
SUBJECTS = web.AppKey("subjects", SubjectRights)
OPERATOR = web.AppKey("operator", Operator)
SIMULATOR = web.AppKey("simulator", SimulatorReset)
# SHA-256 digests of the operator tokens; see `gateway.server.http_admin.authorise`.
ADMIN_TOKENS = web.AppKey("admin_tokens", tuple[bytes, ...])
# The flock on the store and key file, held from create_app to the end of clean-up.
STORAGE_LOCK = web.AppKey("storage_lock", StorageLock)
# The operator token check (`gateway.server.http_admin.authorise`), which the admin
# routes register so the tenant API's read routes can take an operator token too
# (`gateway.server.http_api.authenticate`) without importing the admin API.
OPERATOR_CHECK: web.AppKey[Callable[[web.Request], Awaitable[None]]] = web.AppKey("operator_check")
