"""The application factory: one place that wires the parts together.

``cleanup_ctx`` brings the store up first and the network and pipeline after
it; clean-up runs in reverse, so pending timers stop before the store flushes
its last batch and closes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from gateway import http_api
from gateway.appkeys import (
    CONFIG,
    METRICS,
    NETWORK,
    PIPELINE,
    SMPP_SERVER,
    STORE,
    TENANTS_BY_KEY,
)
from gateway.callbacks import CallbackDispatcher
from gateway.config import Config
from gateway.documents import notice_document
from gateway.domain import Notice
from gateway.metrics import Metrics
from gateway.network import SimulatedNetwork
from gateway.pipeline import SubmitPipeline
from gateway.store import Store
from smpp.server import SmppServer

log = logging.getLogger(__name__)


def create_app(config: Config, clock: Callable[[], float] = time.time) -> web.Application:
    app = web.Application(
        client_max_size=config.http.max_request_bytes, middlewares=[http_api.problem_middleware]
    )
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[TENANTS_BY_KEY] = {
        digest: tenant for tenant in config.tenants for digest in tenant.api_key_digests()
    }
    http_api.add_routes(app)

    async def storage(app: web.Application) -> AsyncIterator[None]:
        app[STORE] = await Store.open(config.storage, app[METRICS])
        yield
        await app[STORE].close()

    async def delivery(app: web.Application) -> AsyncIterator[None]:
        store, metrics = app[STORE], app[METRICS]
        network = app[NETWORK] = SimulatedNetwork(config.simulator, store, metrics, clock)
        callbacks = CallbackDispatcher(config.callbacks, metrics)
        network.subscribe(callbacks.on_final)
        pipeline = app[PIPELINE] = SubmitPipeline(config, store, network, metrics, clock)
        mo_urls = {t.id: t.mo_url for t in config.tenants if t.mo_url}

        def post_mo(notice: Notice) -> None:
            if notice.tenant in mo_urls:
                callbacks.post(mo_urls[notice.tenant], notice_document(notice), notice.message_id)

        pipeline.subscribe_inbound(post_mo)
        app[SMPP_SERVER] = smpp = SmppServer(config, pipeline, store, metrics, clock)
        network.subscribe(smpp.on_final)
        pipeline.subscribe_inbound(smpp.notify)
        unfinished = await store.unfinished()
        for item in unfinished:
            network.hand_over(item)
        log.info("network.resumed count=%d", len(unfinished))
        yield
        network.stop()
        await callbacks.close()

    async def smpp_listener(app: web.Application) -> AsyncIterator[None]:
        await app[SMPP_SERVER].start()
        yield
        await app[SMPP_SERVER].close()

    app.cleanup_ctx.extend([storage, delivery, smpp_listener])
    return app
