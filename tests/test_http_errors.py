"""Every error is a problem document, none a bare 500: hostile input against the real server."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.server.appkeys import STORE
from gateway.server.http_api import MAX_JSON_DEPTH, nests_deeper
from tests.conftest import API_KEY, EVENT_TIMEOUT, RunningGateway

HANDSET = "+46701234567"


class LogWaiter(logging.Handler):
    """Collects every record, and lets a test await the first one that matches."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._waiting: list[tuple[str, asyncio.Future[logging.LogRecord]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        for event, future in self._waiting:
            if record.msg == event and not future.done():
                future.set_result(record)

    async def next(self, event: str) -> logging.LogRecord:
        future: asyncio.Future[logging.LogRecord] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, future))
        return await asyncio.wait_for(future, EVENT_TIMEOUT)


@pytest.fixture
def logs() -> Iterator[LogWaiter]:
    waiter = LogWaiter()
    root = logging.getLogger()
    level = root.level
    root.addHandler(waiter)
    root.setLevel(logging.DEBUG)
    try:
        yield waiter
    finally:
        root.removeHandler(waiter)
        root.setLevel(level)


async def open_raw(gateway: RunningGateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to the HTTP port, for what no HTTP client would send."""
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def problem(gateway: RunningGateway, method: str, path: str, **kwargs: Any) -> Any:
    async with gateway.http.request(
        method, f"{gateway.url}{path}", headers=gateway.headers, **kwargs
    ) as response:
        assert response.content_type == "application/problem+json", await response.text()
        document = await response.json(content_type=None)
        assert document["status"] == response.status
        return response.status, document


def _deep(levels: int) -> bytes:
    return b'{"to": ' + b"[" * levels + b"]" * levels + b"}"


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    [
        ("POST", "/v1/messages", _deep(1000), "invalid_json"),
        ("POST", "/v1/messages", _deep(200_000), "invalid_json"),
        (
            "POST",
            "/v1/messages/batch",
            b'{"messages": ' + b"[{" * 600 + b"}]" * 600 + b"}",
            "invalid_json",
        ),
        ("POST", "/v1/messages", b'{"to": ' + b"9" * 5000 + b"}", "invalid_json"),
        ("GET", "/v1/messages?limit=\u00b2", None, "invalid_request"),
        ("GET", "/v1/messages?limit=\u0661\u0662", None, "invalid_request"),
        ("GET", "/v1/messages?limit=" + "1" * 5000, None, "invalid_request"),
        ("GET", "/v1/messages?cursor=" + "1" * 5000, None, "invalid_request"),
        ("GET", "/v1/messages?since=" + "1" * 5000, None, "invalid_request"),
        ("GET", "/v1/messages?since=\u0661\u0662\u0663", None, "invalid_request"),
        ("GET", "/v1/messages?since=0001-01-01T00:00:00Z", None, "invalid_request"),
        ("GET", f"/v1/simulator/handsets/{HANDSET}/messages?limit=\u00b2", None, "invalid_request"),
        ("GET", "/v1/audit?cursor=9223372036854775808", None, "invalid_request"),
        ("GET", "/v1/audit?cursor=" + "9" * 5000, None, "invalid_request"),
        ("GET", "/v1/audit?cursor=\u00b2", None, "invalid_request"),
        ("GET", "/v1/audit?limit=" + "9" * 5000, None, "invalid_request"),
        ("GET", "/v1/consents?cursor=" + "p" * 5000, None, "invalid_request"),
        ("GET", "/v1/consents?limit=\u00b2", None, "invalid_request"),
    ],
    ids=lambda value: value[:40] if isinstance(value, str | bytes) else None,
)
async def test_hostile_input_is_a_problem_document(
    gateway: RunningGateway, method: str, path: str, body: bytes | None, code: str
) -> None:
    status, document = await problem(gateway, method, path, data=body)
    assert (status, document["code"]) == (400, code)


def test_nesting_is_measured_outside_strings() -> None:
    at_cap = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert not nests_deeper(at_cap, MAX_JSON_DEPTH)
    assert nests_deeper(b"[" + at_cap + b"]", MAX_JSON_DEPTH)
    assert nests_deeper(b'[{"a": ' + at_cap + b"}]", MAX_JSON_DEPTH)
    text = json.dumps({"body": "[{" * 5000 + '"\\'}).encode()
    assert not nests_deeper(text, MAX_JSON_DEPTH)
    assert not nests_deeper(b"[]" * 300_000 + b"[[]]" * 300_000, MAX_JSON_DEPTH)


async def test_a_405_names_the_allowed_methods(gateway: RunningGateway) -> None:
    status, document = await problem(gateway, "DELETE", "/v1/messages")
    assert (status, document["code"]) == (405, "method_not_allowed")
    async with gateway.http.delete(f"{gateway.url}/v1/messages") as response:
        assert set(response.headers["Allow"].split(",")) >= {"GET", "POST"}


async def test_an_unexpected_exception_is_a_500_problem_with_a_request_id(
    gateway: RunningGateway, logs: LogWaiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError(f"store broke while reading {args}")

    monkeypatch.setattr(gateway.app[STORE].traffic, "get_message", broken)
    status, document = await problem(gateway, "GET", "/v1/messages/0123456789abcdef0123")
    assert (status, document["code"]) == (500, "internal_error")
    assert document["request_id"] in document["detail"]
    [record] = [r for r in logs.records if r.msg == "http.unexpected_error"]
    assert record.levelno == logging.ERROR
    assert record.smsgw_fields["request_id"] == document["request_id"]  # type: ignore[attr-defined]
    assert record.smsgw_fields["route"] == "/v1/messages/{id}"  # type: ignore[attr-defined]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert "0123456789abcdef0123" not in json.dumps(record.smsgw_fields)  # type: ignore[attr-defined]
    metrics = await (await gateway.http.get(f"{gateway.url}/metrics")).text()
    assert 'smsgw_http_errors_total{code="internal_error"} 1.0' in metrics


async def test_a_client_gone_mid_body_is_no_error(gateway: RunningGateway, logs: LogWaiter) -> None:
    _, writer = await open_raw(gateway)
    writer.write(
        b"POST /v1/messages HTTP/1.1\r\nHost: smsgw\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {API_KEY}\r\nContent-Length: 1000\r\n\r\n".encode()
        + b'{"to": "+4670'
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    record = await logs.next("http.request")
    assert record.smsgw_fields["status"] == 499  # type: ignore[attr-defined]
    assert [r for r in logs.records if r.levelno >= logging.ERROR] == []
    metrics = await (await gateway.http.get(f"{gateway.url}/metrics")).text()
    assert 'status="500"' not in metrics


FIELDS: list[tuple[str, str, dict[str, Any], str]] = [
    *(
        (
            "POST",
            "/v1/messages",
            {"to": HANDSET, "from": "Acme", "body": "hi", name: "a\ud800"},
            name,
        )
        for name in ("to", "from", "body", "purpose", "callback_url", "client_ref")
    ),
    *(
        (
            "POST",
            "/v1/simulator/inbound",
            {"from": HANDSET, "to": "+46700000001", "body": "STOP", name: "\udfff"},
            name,
        )
        for name in ("from", "to", "body")
    ),
    *(
        ("PUT", f"/v1/consents/{HANDSET}", {"purpose": "marketing", name: "x\udc00"}, name)
        for name in ("purpose", "evidence", "sender", "source")
    ),
    *(
        ("POST", "/v1/opt-outs", {"msisdns": [HANDSET], name: "\ud83d"}, name)
        for name in ("evidence", "sender")
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "document", "field"), FIELDS, ids=[f"{p}:{f}" for _, p, _, f in FIELDS]
)
async def test_a_lone_surrogate_is_refused_naming_its_field(
    gateway: RunningGateway, method: str, path: str, document: dict[str, Any], field: str
) -> None:
    status, answer = await problem(gateway, method, path, json=document)
    assert (status, answer["code"]) == (400, "invalid_request")
    assert f"'{field}'" in answer["detail"]


async def test_a_lone_surrogate_fails_only_its_batch_item(gateway: RunningGateway) -> None:
    good = {"to": HANDSET, "from": "Acme", "body": "fine"}
    async with gateway.http.post(
        f"{gateway.url}/v1/messages/batch",
        json={"messages": [good, {**good, "client_ref": "\ud800"}, good]},
        headers=gateway.headers,
    ) as response:
        assert response.status == 200
        answer = await response.json()
    assert (answer["accepted"], answer["rejected"]) == (2, 1)
    assert "'client_ref'" in answer["results"][1]["problem"]["detail"]
    async with gateway.http.post(
        f"{gateway.url}/v1/opt-outs", json={"msisdns": [HANDSET, "\ud800"]}, headers=gateway.headers
    ) as response:
        assert (response.status, await response.json()) == (200, {"recorded": 1, "invalid": [1]})


async def test_an_unknown_field_is_named_safely(gateway: RunningGateway) -> None:
    status, answer = await problem(
        gateway,
        "POST",
        "/v1/messages",
        json={"to": HANDSET, "from": "Acme", "body": "x", "\ud800": 1},
    )
    assert (status, answer["code"]) == (400, "invalid_request")
    assert "unknown field '\\ud800'" in answer["detail"]
