"""A client of a running gateway's tenant API, for the CLI and the pytest plugin.

Only the public HTTP API: what a user's own client would call, so the CLI and the
plugin test the gateway as it is used. A refused request is an `ApiError` carrying
the problem document's stable ``code``. `GatewayClient.events` follows the live
event stream (Server-Sent Events, ``GET /v1/events``) and reconnects with
``Last-Event-ID`` whenever the gateway ends it, so a follower misses nothing the
gateway still holds; `SseParser` is its sans-IO half.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import quote

import aiohttp

from gateway.config import TlsConfig

# Longer than any request the API answers; the event stream has no total timeout.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60)
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)
# The gateway writes ": ping" every 15 s; a stream silent for longer than this is dead.
STREAM_IDLE = 45.0
GAP = "gap"


def reachable_url(scheme: str, host: str, port: int) -> str:
    """Where a client on this host reaches a listener: a wildcard address on loopback."""
    try:
        address = ipaddress.ip_address(host or "0.0.0.0")
    except ValueError:
        return f"{scheme}://{host}:{port}"  # a host name
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"{scheme}://{shown}:{port}"


def client_tls(tls: TlsConfig | None) -> ssl.SSLContext:
    """Trust the system's CAs and the gateway's own certificate (self-signed or not)."""
    context = ssl.create_default_context()
    if tls is not None:
        context.load_verify_locations(tls.cert_file)
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


class ApiError(Exception):
    """The gateway refused a request (or could not be reached: status 0, code "unreachable")."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{detail} ({code})")
        self.status = status
        self.code = code
        self.detail = detail


class SseParser:
    """Server-Sent Events text, one line at a time, to the events' JSON documents."""

    __slots__ = ("_data", "_id", "last_id")

    def __init__(self) -> None:
        self._data: list[str] = []
        self._id: str | None = None
        self.last_id: str | None = None  # what a reconnect sends as Last-Event-ID

    def feed(self, line: str) -> dict[str, Any] | None:
        """The event a blank line completes, else None; comments (": ping") are skipped."""
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None  # "event" repeats the document's "type"; "retry" we do not use

    def end_of_stream(self) -> None:
        """The connection ended: an event it left unfinished comes again on the next."""
        self._data, self._id = [], None

    def _dispatch(self) -> dict[str, Any] | None:
        data, event_id = "\n".join(self._data), self._id
        self._data, self._id = [], None
        if not data:
            return None
        document: dict[str, Any] = json.loads(data)
        # A gap event says what was missed; resuming from it would ask for that again.
        if event_id and document.get("type") != GAP:
            self.last_id = event_id
        return document


class GatewayClient:
    """One tenant's calls on the gateway at ``url``, authenticated with its API key."""

    def __init__(self, url: str, api_key: str, ssl_context: ssl.SSLContext | bool = True) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use, so it belongs to the loop that uses it.
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=REQUEST_TIMEOUT)
        return self._session

    async def call(self, method: str, path: str, document: Any = None) -> Any:
        """The JSON answer to one request; an `ApiError` for a problem or no answer."""
        try:
            async with self._http().request(
                method, self.url + path, json=document, headers=self._headers, ssl=self._ssl
            ) as response:
                answer = await response.json(content_type=None)  # None for an empty body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiError(0, "unreachable", f"no answer from {self.url}: {exc}") from None
        if response.status >= 400:
            raise _problem(response.status, answer)
        return answer

    async def send(self, to: str, body: str, sender: str, **fields: Any) -> dict[str, Any]:
        """Submit one message; its document (status "accepted")."""
        return await self.call(  # type: ignore[no-any-return]
            "POST", "/v1/messages", {"to": to, "from": sender, "body": body, **fields}
        )

    async def message(self, message_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/v1/messages/{quote(message_id)}")  # type: ignore[no-any-return]

    async def inbox(self, msisdn: str) -> dict[str, Any]:
        """What the simulated handset received from this tenant, newest first."""
        path = f"/v1/simulator/handsets/{quote(msisdn, safe='+')}/messages"
        return await self.call("GET", path)  # type: ignore[no-any-return]

    async def reply(self, handset: str, to: str, body: str) -> dict[str, Any]:
        """The handset sends ``body`` to the tenant's number ``to`` (mobile-originated)."""
        document = {"from": handset, "to": to, "body": body}
        return await self.call("POST", "/v1/simulator/inbound", document)  # type: ignore[no-any-return]

    async def opt_out(self, msisdn: str) -> dict[str, Any]:
        return await self.call("POST", "/v1/opt-outs", {"msisdns": [msisdn]})  # type: ignore[no-any-return]

    async def set_chaos(self, settings: dict[str, Any]) -> dict[str, Any]:
        return await self.call("PUT", "/v1/simulator/chaos", settings)  # type: ignore[no-any-return]

    async def clear_chaos(self) -> None:
        await self.call("DELETE", "/v1/simulator/chaos")

    async def reset(self, options: dict[str, Any]) -> Any:
        return await self.call("POST", "/v1/simulator/reset", options)

    async def events(self, after: str | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """The tenant's events from after ``after`` (None: from now), for as long as asked.

        When the gateway ends the stream (a subscriber that fell behind is dropped),
        it is opened again with ``Last-Event-ID``, so nothing still in the gateway's
        buffer is missed; if something was, the first event is a ``gap``.
        """
        parser = SseParser()
        while True:
            headers = dict(self._headers, Accept="text/event-stream")
            query = {}
            if parser.last_id is not None:
                headers["Last-Event-ID"] = parser.last_id
            elif after is not None:
                query["after"] = after
            try:
                async with self._http().get(
                    self.url + "/v1/events",
                    params=query,
                    headers=headers,
                    ssl=self._ssl,
                    timeout=STREAM_TIMEOUT,
                    read_bufsize=2**16,
                ) as response:
                    if response.status >= 400:
                        raise _problem(response.status, await _json_or_none(response))
                    while True:
                        raw = await _read_line(response)
                        if raw is None:
                            break
                        event = parser.feed(raw.decode())
                        if event is not None:
                            yield event
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
                pass  # the stream broke off: resume from the last whole event
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ApiError(
                    0, "unreachable", f"no event stream from {self.url}: {exc}"
                ) from None
            parser.end_of_stream()


async def _read_line(response: aiohttp.ClientResponse) -> bytes | None:
    """One line of the stream; None at its end, or when it has been silent too long."""
    try:
        async with asyncio.timeout(STREAM_IDLE):
            line = await response.content.readline()
    except TimeoutError:
        return None
    return line or None


async def _json_or_none(response: aiohttp.ClientResponse) -> Any:
    try:
        return await response.json(content_type=None)
    except ValueError:
        return None


def _problem(status: int, document: Any) -> ApiError:
    if isinstance(document, dict) and "code" in document:
        return ApiError(status, str(document["code"]), str(document.get("detail", "")))
    return ApiError(status, f"http_{status}", "the gateway answered without a problem document")
