"""Webhooks: a message's final status to its ``callback_url``, MO messages to ``mo_url``.

Retried with exponential backoff, bounded both in attempts and in total time,
as webhook senders such as Twilio do; only hosts on the allow-list are called,
so the gateway cannot be turned against internal services.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from gateway.config import CallbackConfig, TenantConfig
from gateway.documents import message_document, notice_document
from gateway.domain import Message, Notice
from gateway.logs import log_event
from gateway.metrics import Metrics

log = logging.getLogger(__name__)


class CallbackDispatcher:
    def __init__(
        self, config: CallbackConfig, metrics: Metrics, tenants: Sequence[TenantConfig]
    ) -> None:
        self._config = config
        self._mo_urls = {tenant.id: tenant.mo_url for tenant in tenants if tenant.mo_url}
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=config.timeout),
            headers={"User-Agent": "smsgw-callbacks"},
        )
        self._tasks: set[asyncio.Task[None]] = set()
        # The counter's children, looked up once rather than by labels() per callback.
        self._delivered, self._retried, self._failed = (
            metrics.callbacks.labels(result) for result in ("delivered", "retried", "failed")
        )

    def on_final(self, message: Message) -> None:
        """Network listener: schedule the POST for a message that asked for one."""
        if message.callback_url is not None:
            self._post(message.callback_url, message_document(message), message.id)

    def on_inbound(self, notice: Notice) -> None:
        """Pipeline inbound listener: POST an MO message to its tenant's ``mo_url``, if any."""
        url = self._mo_urls.get(notice.tenant)
        if url is not None:
            self._post(url, notice_document(notice), notice.message_id)

    def _post(self, url: str, payload: dict[str, Any], ref: str) -> None:
        """POST ``payload`` in the background; ``ref`` (an id, never personal data) is logged."""
        task = asyncio.create_task(self._deliver(url, payload, ref))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, payload: dict[str, Any], ref: str) -> None:
        config = self._config
        deadline = time.monotonic() + config.give_up_after
        delay = config.first_retry
        for attempt in range(1, config.max_attempts + 1):
            try:
                async with self._session.post(url, json=payload) as response:
                    if 200 <= response.status < 300:
                        self._delivered.inc()
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if attempt == config.max_attempts or time.monotonic() + delay > deadline:
                break
            self._retried.inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, config.max_retry)
        self._failed.inc()
        log_event(log, "callback.failed", logging.WARNING, id=ref, attempts=attempt)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()
