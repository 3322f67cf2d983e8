"""Webhooks: a message's final status to its ``callback_url``, MO messages to ``mo_url``.

Retried with exponential backoff, bounded both in attempts and in total time,
as webhook senders such as Twilio do; only hosts on the allow-list are called,
so the gateway cannot be turned against internal services.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp

from gateway.config import CallbackConfig, TenantConfig
from gateway.documents import message_document, notice_document
from gateway.domain import Interface, Message, Notice
from gateway.logs import log_event
from gateway.metrics import Metrics

log = logging.getLogger(__name__)

# What a webhook's answer may be read up to (a TwiML reply, see gateway.twilio_hooks).
MAX_ANSWER_BYTES = 64 * 1024
# Called with the start of a webhook's 2xx answer, up to MAX_ANSWER_BYTES + 1 octets.
AnswerHandler = Callable[[bytes], Awaitable[None]]


class CallbackDispatcher:
    def __init__(
        self, config: CallbackConfig, metrics: Metrics, tenants: Sequence[TenantConfig]
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._mo_urls = {tenant.id: tenant.mo_url for tenant in tenants if tenant.mo_url}
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=config.timeout),
            headers={"User-Agent": "smsgw-callbacks"},
        )
        self._tasks: set[asyncio.Task[None]] = set()

    def on_final(self, message: Message) -> None:
        """Network listener: schedule the POST for a message that asked for one.

        A Twilio front end message's StatusCallback is Twilio-shaped: `gateway.twilio_hooks`.
        """
        if message.callback_url is not None and message.interface is not Interface.TWILIO:
            self._post_json(message.callback_url, message_document(message), message.id)

    def on_inbound(self, notice: Notice) -> None:
        """Pipeline inbound listener: POST an MO message to its tenant's ``mo_url``, if any."""
        url = self._mo_urls.get(notice.tenant)
        if url is not None:
            self._post_json(url, notice_document(notice), notice.message_id)

    def _post_json(self, url: str, payload: dict[str, Any], ref: str) -> None:
        body = json.dumps(payload).encode()
        self.post(url, body, {"Content-Type": "application/json"}, ref)

    def post_form(
        self,
        url: str,
        form: Mapping[str, str],
        headers: Mapping[str, str],
        ref: str,
        on_answer: AnswerHandler | None = None,
    ) -> None:
        """POST ``form`` url-encoded (a Twilio-shaped webhook), retried as every callback is."""
        content = {"Content-Type": "application/x-www-form-urlencoded", **headers}
        self.post(url, urlencode(form).encode(), content, ref, on_answer)

    def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        ref: str,
        on_answer: AnswerHandler | None = None,
    ) -> None:
        """POST ``body`` in the background; ``ref`` (an id, never personal data) is logged.

        ``on_answer`` gets the start of the first 2xx answer (a webhook that replies).
        """
        task = asyncio.create_task(self._deliver(url, body, dict(headers), ref, on_answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        ref: str,
        on_answer: AnswerHandler | None,
    ) -> None:
        config = self._config
        deadline = time.monotonic() + config.give_up_after
        delay = config.first_retry
        for attempt in range(1, config.max_attempts + 1):
            answer = None
            try:
                async with self._session.post(url, data=body, headers=headers) as response:
                    if 200 <= response.status < 300:
                        wanted = MAX_ANSWER_BYTES + 1 if on_answer is not None else 0
                        answer = await _read_bounded(response, wanted)
            except (aiohttp.ClientError, TimeoutError):
                pass
            if answer is not None:
                self._metrics.callbacks.labels("delivered").inc()
                if on_answer is not None:  # once the connection is back in the pool
                    await on_answer(answer)
                return
            if attempt == config.max_attempts or time.monotonic() + delay > deadline:
                break
            self._metrics.callbacks.labels("retried").inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, config.max_retry)
        self._metrics.callbacks.labels("failed").inc()
        log_event(log, "callback.failed", logging.WARNING, id=ref, attempts=attempt)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` octets of an answer: a webhook cannot make us hold more."""
    answer = bytearray()
    while len(answer) < limit:
        chunk = await response.content.read(limit - len(answer))
        if not chunk:
            break
        answer += chunk
    return bytes(answer)
