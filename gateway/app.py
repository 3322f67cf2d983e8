"""The application factory: one place that wires the parts together.

``create_app`` locks the store and key file first (`gateway.lock`), so a second
gateway or a CLI writing the files is refused before anything is touched.
``cleanup_ctx`` brings the store up first and the network and pipeline after
it; clean-up runs in reverse, so pending timers stop before the store flushes
its last batch and closes, and the lock goes last. A start-up failure the
operator can fix is a `StartupError` naming the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from gateway import http_admin, http_api, http_privacy
from gateway.appkeys import (
    AUDIT,
    CONFIG,
    KEYS,
    METRICS,
    NETWORK,
    OPERATOR,
    PIPELINE,
    REGISTRY,
    RETENTION,
    SMPP_SERVER,
    STORAGE_LOCK,
    STORE,
    SUBJECTS,
    TENANTS_BY_KEY,
)
from gateway.callbacks import CallbackDispatcher
from gateway.config import Config
from gateway.documents import notice_document
from gateway.domain import Notice
from gateway.lock import StorageLock
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.network import SimulatedNetwork
from gateway.operator import Operator
from gateway.pipeline import SubmitPipeline
from gateway.store import Store
from privacy.audit import AuditLog
from privacy.handsets import KeywordResponder
from privacy.keys import KeyRing
from privacy.registry import ConsentRegistry
from privacy.retention import Retention
from privacy.subjects import SubjectRights
from smpp.server import SmppServer

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The gateway cannot start, for a reason the message names in one line."""


def create_app(config: Config, clock: Callable[[], float] = time.time) -> web.Application:
    app = web.Application(
        client_max_size=config.http.max_request_bytes,
        middlewares=[http_api.observe_middleware, http_api.problem_middleware],
    )
    app[CONFIG] = config
    # Before anything opens: storage another process holds stops the start (StorageBusy),
    # and so does a key file others can read (KeyFileError).
    lock = StorageLock.acquire(config)
    try:
        app[KEYS] = KeyRing.open(config.privacy.key_file)
    except BaseException:
        lock.release()
        raise
    app[STORAGE_LOCK] = lock
    app[METRICS] = Metrics()
    app[TENANTS_BY_KEY] = {
        digest: tenant for tenant in config.tenants for digest in tenant.api_key_digests()
    }
    http_api.add_routes(app)
    http_privacy.add_routes(app)
    http_admin.add_routes(app)

    async def ownership(app: web.Application) -> AsyncIterator[None]:
        yield
        app[STORAGE_LOCK].release()

    async def storage(app: web.Application) -> AsyncIterator[None]:
        try:
            app[STORE] = await Store.open(config.storage, app[METRICS])
        except (OSError, sqlite3.Error) as exc:
            raise StartupError(f"storage.path {config.storage.path}: cannot open: {exc}") from None
        yield
        await app[STORE].close()

    async def privacy(app: web.Application) -> AsyncIterator[None]:
        keys = app[KEYS]
        app[AUDIT] = audit = await AuditLog.open(app[STORE])
        app[REGISTRY] = ConsentRegistry(config, app[STORE], keys, audit, app[METRICS], clock)
        app[RETENTION] = Retention(config, app[STORE], keys, app[METRICS], clock)
        yield

    async def delivery(app: web.Application) -> AsyncIterator[None]:
        store, metrics, registry = app[STORE], app[METRICS], app[REGISTRY]
        network = app[NETWORK] = SimulatedNetwork(config.simulator, store, metrics, clock)
        network.add_delivery_check(registry.may_deliver)
        callbacks = CallbackDispatcher(config.callbacks, metrics)
        network.subscribe(callbacks.on_final)
        responder = KeywordResponder(config, registry, clock)
        pipeline = app[PIPELINE] = SubmitPipeline(
            config, store, network, metrics, clock, gates=[registry], responder=responder
        )
        mo_urls = {t.id: t.mo_url for t in config.tenants if t.mo_url}

        def post_mo(notice: Notice) -> None:
            if notice.tenant in mo_urls:
                callbacks.post(mo_urls[notice.tenant], notice_document(notice), notice.message_id)

        pipeline.subscribe_inbound(post_mo)
        app[SMPP_SERVER] = smpp = SmppServer(config, pipeline, store, metrics, clock)
        network.add_final_hook(smpp.keep_receipt)
        app[SUBJECTS] = SubjectRights(
            store, app[KEYS], registry, app[AUDIT], metrics, clock, network, smpp.notices
        )
        app[OPERATOR] = Operator(
            config, store, app[KEYS], app[AUDIT], registry, app[SUBJECTS], app[RETENTION]
        )
        pipeline.subscribe_inbound(smpp.notify)
        # Resumed messages pass the gates again: an opt-out may have come since.
        unfinished = await store.traffic.unfinished()
        verdicts = await registry.check_many([item.message for item in unfinished])
        for item, verdict in zip(unfinished, verdicts, strict=True):
            if verdict is None:
                network.hand_over(item)
            else:
                network.stop_before_delivery(item, verdict.code.value)
        log_event(log, "network.resumed", count=len(unfinished))
        yield
        network.stop()
        await callbacks.close()

    async def smpp_listener(app: web.Application) -> AsyncIterator[None]:
        try:
            await app[SMPP_SERVER].start()
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
                except Exception:
                    app[METRICS].retention_failures.inc()
                    log_event(log, "retention.failed", logging.ERROR, exc_info=True)

        await app[RETENTION].find_oldest_identifiable()
        task = asyncio.create_task(every_interval(), name="retention")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.extend(
        [ownership, storage, privacy, delivery, smpp_listener, retention_schedule]
    )
    return app
