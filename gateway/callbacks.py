"""Webhooks: a message's final status to its ``callback_url``, MO messages to ``mo_url``.

Retried with exponential backoff, bounded both in attempts and in total time,
as webhook senders such as Twilio do; only hosts on the allow-list are called,
so the gateway cannot be turned against internal services (nor is a redirect followed,
which could lead off the list: a 3xx is an attempt that failed). A status callback is
our message document as JSON, unless the message's front end shapes its own
(`shape_status`: the Twilio front end's signed form, `gateway.twilio_hooks`).

Each attempt is remembered in a ring per tenant (`ATTEMPTS_KEPT`), for the web
inbox's message detail. In memory, not in the store: a callback's retries are
in memory too (a restart drops them), so a durable record would outlive what it
describes; the ring holds ids, times and HTTP statuses only, never a URL or a body.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from gateway.config import CallbackConfig, TenantConfig
from gateway.documents import encode_json, message_document, notice_document
from gateway.domain import Interface, Message, Notice
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.webhook_client import WebhookClient, WebhookError

log = logging.getLogger(__name__)

# Attempts remembered per tenant (status and MO callbacks alike), newest kept.
ATTEMPTS_KEPT = 1000
# Re-sends a tenant may have under way at once (each retries for up to give_up_after).
MAX_RESENDS = 100
# What a webhook's answer may be read up to (a TwiML reply, see gateway.twilio_hooks).
MAX_ANSWER_BYTES = 64 * 1024
# Called with the start of a webhook's 2xx answer, up to MAX_ANSWER_BYTES + 1 octets.
AnswerHandler = Callable[[bytes], Awaitable[None]]
# A status callback's body and headers for a message, in its front end's own shape.
StatusShape = Callable[[Message], tuple[bytes, dict[str, str]]]


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    """One POST of a callback: its HTTP status, or the error that stopped it (no URL, no body)."""

    ref: str  # the message id
    attempt: int
    at: float
    http_status: int | None
    error: str | None


class ResendRefused(Exception):
    """A re-send is already under way for the message, or the tenant has `MAX_RESENDS`."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class CallbackDispatcher:
    def __init__(
        self,
        config: CallbackConfig,
        metrics: Metrics,
        tenants: Sequence[TenantConfig],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._clock = clock
        self._mo_urls = {tenant.id: tenant.mo_url for tenant in tenants if tenant.mo_url}
        self._attempts: collections.defaultdict[str, collections.deque[CallbackAttempt]] = (
            collections.defaultdict(lambda: collections.deque(maxlen=ATTEMPTS_KEPT))
        )
        self._resending: collections.defaultdict[str, set[str]] = collections.defaultdict(set)
        self._shapes: dict[Interface, StatusShape] = {}
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=config.timeout),
            headers={"User-Agent": "smsgw-callbacks"},
        )
        # Plain http:// URLs: a leaner client than the session (gateway.webhook_client).
        self._client = WebhookClient(config.timeout)
        self._tasks: set[asyncio.Task[None]] = set()
        # The counter's children, looked up once rather than by labels() per callback.
        self._delivered, self._retried, self._failed = (
            metrics.callbacks.labels(result) for result in ("delivered", "retried", "failed")
        )

    def shape_status(self, interface: Interface, shape: StatusShape) -> None:
        """Status callbacks of ``interface``'s messages take ``shape`` (a front end's own)."""
        self._shapes[interface] = shape

    def on_final(self, message: Message) -> None:
        """Network listener: schedule the POST for a message that asked for one."""
        if message.callback_url is not None:
            self._post_status(message)

    def resend(self, message: Message) -> None:
        """POST a final message's status again, with the same retries as the first time.

        Raises `ResendRefused` while one re-send of it is under way, or the tenant has
        `MAX_RESENDS`: a client cannot make us hold more.
        """
        assert message.callback_url is not None and message.status.is_final
        resending = self._resending[message.tenant]
        if message.id in resending:
            raise ResendRefused("callback_in_progress", "a re-send of this callback is under way")
        if len(resending) >= MAX_RESENDS:
            raise ResendRefused("throttled", f"at most {MAX_RESENDS} re-sends under way at once")
        resending.add(message.id)
        task = self._post_status(message)
        task.add_done_callback(lambda _: resending.discard(message.id))

    def attempts(self, tenant: str, ref: str) -> list[CallbackAttempt]:
        """The remembered attempts of the callbacks about ``ref``, oldest first."""
        return [a for a in self._attempts.get(tenant, ()) if a.ref == ref]

    def on_inbound(self, notice: Notice) -> None:
        """Pipeline inbound listener: POST an MO message to its tenant's ``mo_url``, if any."""
        url = self._mo_urls.get(notice.tenant)
        if url is not None:
            body, headers = _json(notice_document(notice))
            self.post(url, body, headers, notice.tenant, notice.message_id)

    def _post_status(self, message: Message) -> asyncio.Task[None]:
        assert message.callback_url is not None
        shape = self._shapes.get(message.interface)
        body, headers = shape(message) if shape else _json(message_document(message))
        return self.post(message.callback_url, body, headers, message.tenant, message.id)

    def post_form(
        self,
        url: str,
        form: Mapping[str, str],
        headers: Mapping[str, str],
        tenant: str,
        ref: str,
        on_answer: AnswerHandler | None = None,
    ) -> asyncio.Task[None]:
        """POST ``form`` url-encoded (a Twilio-shaped webhook), retried as every callback is."""
        body, content = form_body(form, headers)
        return self.post(url, body, content, tenant, ref, on_answer)

    def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        tenant: str,
        ref: str,
        on_answer: AnswerHandler | None = None,
    ) -> asyncio.Task[None]:
        """POST ``body`` in the background; ``ref`` (an id, never personal data) is logged.

        ``on_answer`` gets the start of the first 2xx answer (a webhook that replies).
        """
        task = asyncio.create_task(self._deliver(url, body, dict(headers), tenant, ref, on_answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        tenant: str,
        ref: str,
        on_answer: AnswerHandler | None,
    ) -> None:
        config = self._config
        deadline = time.monotonic() + config.give_up_after
        delay = config.first_retry
        ring = self._attempts[tenant]
        wanted = MAX_ANSWER_BYTES + 1 if on_answer is not None else 0
        try:
            parsed: URL | None = URL(url)
        except ValueError:
            parsed = None  # aiohttp refuses it too, as an attempt that failed
        for attempt in range(1, config.max_attempts + 1):
            answer = None
            try:
                if parsed is not None and WebhookClient.handles(parsed):
                    status, start = await self._client.post(parsed, body, headers, wanted)
                    ring.append(CallbackAttempt(ref, attempt, self._clock(), status, None))
                    if 200 <= status < 300:
                        answer = start
                else:
                    async with self._session.post(
                        url, data=body, headers=headers, allow_redirects=False
                    ) as response:
                        status = response.status
                        ring.append(CallbackAttempt(ref, attempt, self._clock(), status, None))
                        if 200 <= status < 300:
                            answer = await _read_bounded(response, wanted)
            except (aiohttp.ClientError, TimeoutError, OSError, WebhookError) as exc:
                ring.append(CallbackAttempt(ref, attempt, self._clock(), None, type(exc).__name__))
            if answer is not None:
                self._delivered.inc()
                if on_answer is not None:  # once the connection is back in the pool
                    await on_answer(answer)
                return
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
        self._client.close()
        await self._session.close()


def form_body(form: Mapping[str, str], headers: Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
    """A url-encoded form and its headers, ``headers`` added."""
    content = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    return urlencode(form).encode(), content


def _json(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return encode_json(payload), {"Content-Type": "application/json"}


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` octets of an answer: a webhook cannot make us hold more."""
    answer = bytearray()
    while len(answer) < limit:
        chunk = await response.content.read(limit - len(answer))
        if not chunk:
            break
        answer += chunk
    return bytes(answer)
