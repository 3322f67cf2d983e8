"""Delivery callbacks: POST a message's final status to its ``callback_url``.

Retried with exponential backoff, bounded both in attempts and in total time,
as webhook senders such as Twilio do; only hosts on the allow-list are called,
so the gateway cannot be turned against internal services.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit

import aiohttp

from gateway.config import CallbackConfig
from gateway.documents import message_document
from gateway.domain import Message
from gateway.metrics import Metrics

log = logging.getLogger(__name__)


def callback_url_allowed(url: str, allowed_hosts: tuple[str, ...]) -> bool:
    """True for an http(s) URL whose host is on the allow-list (``*`` allows every host)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    return "*" in allowed_hosts or host.lower() in allowed_hosts


class CallbackDispatcher:
    def __init__(self, config: CallbackConfig, metrics: Metrics) -> None:
        self._config = config
        self._metrics = metrics
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=config.timeout),
            headers={"User-Agent": "smsgw-callbacks"},
        )
        self._tasks: set[asyncio.Task[None]] = set()

    def on_final(self, message: Message) -> None:
        """Network listener: schedule the POST for a message that asked for one."""
        if message.callback_url is None:
            return
        task = asyncio.create_task(self._deliver(message.callback_url, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, message: Message) -> None:
        config = self._config
        payload = message_document(message)
        deadline = time.monotonic() + config.give_up_after
        delay = config.first_retry
        for attempt in range(1, config.max_attempts + 1):
            try:
                async with self._session.post(url, json=payload) as response:
                    if 200 <= response.status < 300:
                        self._metrics.callbacks.labels("delivered").inc()
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if attempt == config.max_attempts or time.monotonic() + delay > deadline:
                break
            self._metrics.callbacks.labels("retried").inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, config.max_retry)
        self._metrics.callbacks.labels("failed").inc()
        log.warning("callback.failed id=%s attempts=%d", message.id, attempt)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()
