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
from gateway.appkeys import CONFIG, METRICS, PIPELINE, STORE, TENANTS_BY_KEY
from gateway.callbacks import CallbackDispatcher
from gateway.config import Config
from gateway.metrics import Metrics
from gateway.network import SimulatedNetwork
from gateway.pipeline import SubmitPipeline
from gateway.store import Store

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
        network = SimulatedNetwork(config.simulator, store, metrics, clock)
        callbacks = CallbackDispatcher(config.callbacks, metrics)
        network.subscribe(callbacks.on_final)
        app[PIPELINE] = SubmitPipeline(config, store, network, metrics, clock)
        unfinished = await store.unfinished()
        for message, body in unfinished:
            network.hand_over(message, body)
        log.info("network.resumed count=%d", len(unfinished))
        yield
        network.stop()
        await callbacks.close()

    app.cleanup_ctx.extend([storage, delivery])
    return app
