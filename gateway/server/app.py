"""The application factory: one place that wires the parts together.

``create_app`` locks the store and key file first (`gateway.lock`), so a second
gateway or a CLI writing the files is refused before anything is touched.
``cleanup_ctx`` brings the store up first (on PostgreSQL, then the key ring shared
with the other instances, `privacy.shared_keys`), then the cluster (this instance
among those sharing the store), the privacy services, then the
network and pipeline (which resumes what the last run left unfinished), the
SMPP listener and the retention schedule; clean-up runs in reverse, so pending
timers stop before the store flushes its last batch and closes, and the lock
goes last. With a PostgreSQL store the instances' bus (`gateway.cluster.bus`) is
made with the store, each part that must hear the other instances listens on it as it
is wired, and it starts before the SMPP listener (and stops after it, so the
listener's last notifications go out). The parts themselves own their behaviour; this
module only wires them. A start-up failure the operator can fix is a `StartupError` naming the
cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import ssl
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
from aiohttp import web

from gateway.blocked import BlockedAttempts
from gateway.callbacks import CallbackDispatcher
from gateway.chaos import Chaos
from gateway.cluster import open_cluster
from gateway.cluster.base import ClusterError
from gateway.cluster.bus import ClusterBus
from gateway.cluster.events import SharedEvents
from gateway.cluster.held import RemoteHolds
from gateway.cluster.instance import instance_id, run_owner
from gateway.config import Config, StorageBackend
from gateway.domain import Interface
from gateway.events import EventBus
from gateway.lock import StorageLock
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.network import SimulatedNetwork
from gateway.pipeline import SubmitPipeline
from gateway.server import (
    http_admin,
    http_admin_views,
    http_api,
    http_chaos,
    http_events,
    http_inbox,
    http_privacy,
    http_simulator,
    http_twilio,
    http_ui,
)
from gateway.server.appkeys import (
    AUDIT,
    BUS,
    CALLBACKS,
    CHAOS,
    CLUSTER,
    CONFIG,
    EVENTS,
    HOLDS,
    KEYS,
    METRICS,
    NETWORK,
    OPERATOR,
    PIPELINE,
    REGISTRY,
    RETENTION,
    SHARED_EVENTS,
    SIMULATOR,
    SINGLE_SUBMITS,
    SMPP_SERVER,
    STORAGE_LOCK,
    STORE,
    SUBJECTS,
    TENANTS_BY_KEY,
)
from gateway.server.coalescer import SubmitCoalescer
from gateway.server.privacy_services import PrivacyCore, open_privacy, open_privacy_core
from gateway.server.simulator import SimulatorReset
from gateway.storage.pg_engine import describe
from gateway.store import Store
from gateway.twilio_hooks import TwilioWebhooks
from privacy.handsets import KeywordResponder
from privacy.key_wrap import SealedBodies, read_kek
from privacy.keys import KeyFileError, KeyRing
from privacy.retention import RetentionRunning
from privacy.shared_keys import SharedKeyRing
from smpp.notices import NoticeQueue
from smpp.server import SmppServer

log = logging.getLogger(__name__)

# Held from the privacy context to the delivery context, which completes the services.
PRIVACY_CORE = web.AppKey("privacy_core", PrivacyCore)


class StartupError(Exception):
    """The gateway cannot start, for a reason the message names in one line."""


def server_tls(key: str, cert_file: str, key_file: str) -> ssl.SSLContext:
    """A listener's TLS context from PEM files; a file that will not load stops the start."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"{key}: cannot load {cert_file} / {key_file}: {exc}") from None
    return context


def _check_kek(config: Config) -> None:
    """A KEK file that is missing, readable by others or malformed stops the start at once."""
    try:
        read_kek(config.privacy.kek_file)
    except KeyFileError as exc:
        raise StartupError(f"privacy.kek_file: {exc}") from None


def create_app(config: Config, clock: Callable[[], float] = time.time) -> web.Application:
    app = web.Application(
        client_max_size=config.http.max_request_bytes,
        middlewares=[http_api.observe_middleware, http_api.problem_middleware],
    )
    app[CONFIG] = config
    # Before anything opens: storage another process holds stops the start (StorageBusy),
    # and so does a key file (or, on PostgreSQL, a KEK file) others can read.
    lock = StorageLock.acquire(config)
    shared_keys = config.storage.backend is StorageBackend.POSTGRES
    try:
        if shared_keys:
            _check_kek(config)  # the keys themselves load with the database (`keys`)
        else:
            app[KEYS] = KeyRing.open(config.privacy.key_file)
    except BaseException:
        lock.release()
        raise
    app[STORAGE_LOCK] = lock
    app[METRICS] = Metrics()
    app[EVENTS] = EventBus(config.events, clock)
    app[CHAOS] = Chaos((t.id for t in config.tenants), app[EVENTS], app[METRICS])
    app[TENANTS_BY_KEY] = {
        digest: tenant for tenant in config.tenants for digest in tenant.api_key_digests()
    }
    http_api.add_routes(app)
    http_privacy.add_routes(app)
    http_admin.add_routes(app)
    http_chaos.add_routes(app)
    http_events.add_routes(app)
    http_simulator.add_routes(app)
    http_inbox.add_routes(app)
    http_ui.add_routes(app)
    http_admin_views.add_routes(app)
    http_twilio.add_routes(app)

    async def ownership(app: web.Application) -> AsyncIterator[None]:
        yield
        app[STORAGE_LOCK].release()

    async def storage(app: web.Application) -> AsyncIterator[None]:
        try:
            app[STORE] = await Store.open(config.storage, app[METRICS])
        except (OSError, TimeoutError, sqlite3.Error, asyncpg.PostgresError) as exc:
            if config.storage.backend is StorageBackend.POSTGRES:
                where = f"storage.dsn {describe(config.storage.dsn)}"
            else:
                where = f"storage.path {config.storage.path}"
            raise StartupError(f"{where}: cannot open: {exc}") from None
        if config.storage.backend is StorageBackend.POSTGRES:
            # Unique per run: claims a killed run held are never taken for this one's.
            origin = run_owner(instance_id(config, config.http.port))
            app[BUS] = ClusterBus(config.storage.dsn, origin, app[METRICS])
        yield
        await app[STORE].close()

    async def cluster(app: web.Application) -> AsyncIterator[None]:
        instance = instance_id(config, config.http.port)
        try:
            app[CLUSTER] = await open_cluster(config, instance, app[METRICS], clock)
        except ClusterError as exc:
            raise StartupError(f"storage.dsn: {exc}") from None
        yield
        await app[CLUSTER].close()

    async def keys(app: web.Application) -> AsyncIterator[None]:
        """On PostgreSQL: the key ring every instance shares, sealed under the KEK."""
        try:
            ring = await SharedKeyRing.connect(
                config.storage.dsn, config.privacy.kek_file, import_from=config.privacy.key_file
            )
        except KeyFileError as exc:
            raise StartupError(f"privacy.kek_file: {exc}") from None
        except (OSError, asyncpg.PostgresError) as exc:
            where = describe(config.storage.dsn)
            raise StartupError(f"storage.dsn {where}: cannot open the key table: {exc}") from None
        app[KEYS] = ring
        yield
        await ring.close()

    async def privacy(app: web.Application) -> AsyncIterator[None]:
        core = await open_privacy_core(
            config, app[STORE], app[KEYS], app[METRICS], clock, app[EVENTS], app[CLUSTER].runs
        )
        ring = app[KEYS]
        if isinstance(ring, SharedKeyRing):
            # Another instance's purge: this one's pseudonyms and states of the tenant go too.
            configured = {tenant.id for tenant in config.tenants}
            ring.on_destroyed_elsewhere(
                lambda tenant: core.registry.forget_tenant(tenant, tenant in configured)
            )
        app[PRIVACY_CORE] = core
        app[AUDIT], app[REGISTRY], app[RETENTION] = core.audit, core.registry, core.retention
        if BUS in app:
            core.registry.share(app[BUS])
        core.registry.start_learning()
        yield
        await core.registry.stop_learning()

    async def delivery(app: web.Application) -> AsyncIterator[None]:
        store, metrics, registry, chaos = app[STORE], app[METRICS], app[REGISTRY], app[CHAOS]
        events = app[EVENTS]
        network = app[NETWORK] = SimulatedNetwork(
            config.simulator, store, metrics, clock, events, chaos=chaos
        )
        if registry.shared:
            network.add_delivery_recheck(registry.recheck_before_delivery)
        network.add_delivery_check(registry.may_deliver)
        callbacks = app[CALLBACKS] = CallbackDispatcher(
            config.callbacks, metrics, config.tenants, clock
        )
        network.subscribe(callbacks.on_final)
        responder = KeywordResponder(config, registry, clock)
        blocked = BlockedAttempts(config.privacy.body_ttl, clock)
        pipeline = app[PIPELINE] = SubmitPipeline(
            config,
            store,
            network,
            metrics,
            clock,
            events,
            blocked,
            gates=[registry],
            responder=responder,
            chaos=chaos,
            rates=app[CLUSTER].rates,
        )
        app[SINGLE_SUBMITS] = SubmitCoalescer(pipeline)
        pipeline.subscribe_inbound(callbacks.on_inbound)
        twilio_hooks = TwilioWebhooks(callbacks, pipeline, config.tenants)
        callbacks.shape_status(Interface.TWILIO, twilio_hooks.status_request)
        network.subscribe_enroute(twilio_hooks.on_sent)
        pipeline.subscribe_inbound(twilio_hooks.on_inbound)
        notices = NoticeQueue(store, config.smpp, metrics, clock)
        if BUS in app:
            pipeline.share(app[BUS].origin, config.cluster.notice_lease, config.cluster.notice_poll)
            app[HOLDS] = RemoteHolds(app[BUS], app[CLUSTER].instances, store)
            pipeline.hold_with_others(app[HOLDS], SealedBodies(read_kek(config.privacy.kek_file)))
            notices.share(app[BUS], app[BUS].origin, config.cluster)
            app[SHARED_EVENTS] = SharedEvents(
                app[BUS],
                events,
                store,
                metrics,
                frozenset(t.id for t in config.tenants),
                config.cluster.announce_interval,
            )
        network.add_final_hook(notices.keep_receipt)
        app[SMPP_SERVER] = smpp = SmppServer(
            config, pipeline, notices, metrics, clock, chaos, app[CLUSTER].binds
        )
        services = open_privacy(
            app[PRIVACY_CORE],
            config,
            store,
            app[KEYS],
            metrics,
            clock,
            network=network,
            notices=smpp.notices,
            events=events,
            blocked=blocked,
        )
        app[SUBJECTS], app[OPERATOR] = services.subjects, services.operator
        app[SIMULATOR] = SimulatorReset(
            store, network, smpp.notices, blocked, registry, app[AUDIT], clock
        )
        if HOLDS in app:  # erasures and purges reach what the other instances hold
            services.subjects.share(app[HOLDS])
            app[SIMULATOR].share(app[HOLDS])
            services.operator.drop_elsewhere(app[SIMULATOR].drop_elsewhere)
        pipeline.subscribe_inbound(smpp.notify)
        await pipeline.resume()
        yield
        await pipeline.close()
        network.stop()
        await callbacks.close()

    async def bus(app: web.Application) -> AsyncIterator[None]:
        """The bus between instances, once every part listens on it (PostgreSQL only)."""
        if BUS not in app:
            yield
            return
        try:
            await app[BUS].start()
        except (OSError, asyncpg.PostgresError) as exc:
            raise StartupError(f"storage.dsn: cannot listen: {type(exc).__name__}") from None
        await app[SHARED_EVENTS].start()
        yield
        await app[SHARED_EVENTS].close()
        await app[HOLDS].close()
        await app[BUS].close()

    async def smpp_listener(app: web.Application) -> AsyncIterator[None]:
        tls = config.smpp.tls
        try:
            context = server_tls("smpp.tls", tls.cert_file, tls.key_file) if tls else None
        except StartupError:
            await app[SMPP_SERVER].close()
            raise
        try:
            await app[SMPP_SERVER].start(context)
        except OSError as exc:
            await app[SMPP_SERVER].close()
            raise StartupError(f"smpp.port {config.smpp.port}: {exc.strerror or exc}") from None
        yield
        await app[SMPP_SERVER].close()

    async def retention_schedule(app: web.Application) -> AsyncIterator[None]:
        """Run retention every ``privacy.retention.interval``; a failed run is retried next time."""

        async def every_interval() -> None:
            while True:
                await asyncio.sleep(config.privacy.retention.interval)
                try:
                    await app[RETENTION].run()
                except RetentionRunning:
                    pass  # on another instance this time (counted as skipped)
                except Exception:
                    app[METRICS].retention_failures.inc()
                    log_event(log, "retention.failed", logging.ERROR, exc_info=True)

        await app[RETENTION].find_oldest_identifiable()
        task = asyncio.create_task(every_interval(), name="retention")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    contexts = [
        ownership,
        storage,
        keys,
        cluster,
        privacy,
        delivery,
        bus,
        smpp_listener,
        retention_schedule,
    ]
    app.cleanup_ctx.extend(c for c in contexts if shared_keys or c is not keys)
    return app


async def announce(app: web.Application, url: str) -> None:
    """Say where the gateway's HTTP listener is, once it listens: in the lock file (for
    the CLI on this host) and in the instance list (for the other instances and the CLI
    anywhere)."""
    app[STORAGE_LOCK].publish(url)
    admin_url = url if app[CONFIG].admin.tokens else ""
    await app[CLUSTER].instances.announce(url, admin_url, app[SMPP_SERVER].port)
