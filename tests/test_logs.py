"""Logs and metrics hold no phone number, body or secret, in either log format, at DEBUG.

The black-box test runs the real `smsgw serve`, drives traffic with known numbers,
bodies and keys over HTTP and SMPP (errors included), then searches everything the
process wrote to stderr and its /metrics page for them.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import smpplib.exceptions

from gateway.config import LogFormat, SmppCredentials, TenantConfig
from gateway.domain import Interface, Message, Notice, NoticeKind, Status, SubmitRequest
from gateway.encoding import Encoding
from gateway.logs import JsonLinesFormatter, TextFormatter, log_event
from tests.conftest import base_config, merged
from tests.smpp_clients import SmpplibEsme, smpplib_esme
from tests.test_process import gateway_process, write_toml
from tests.test_smpp_server import submit_fields

RECIPIENT = "+46701234001"
OPTED_OUT = "+46701234002"
HANDSET = "+46701234003"
API_KEY = "Key-Secret-0042"
WRONG_KEY = "Key-Wrong-0043"
SMPP_PASSWORD = "pw-Sec-1"  # SMPP passwords are at most 8 octets
WRONG_PASSWORD = "pw-Bad-2"
BODY_HTTP = "Body Alpha secret"
BODY_SMPP = "Body Bravo secret"
BODY_MO = "Body Charlie secret"
BODY_BATCH = "Body Delta secret"
EVIDENCE = "Evidence Echo secret"
CLIENT_REF = "Ref-Foxtrot"


def needles() -> list[str]:
    """Each secret, and each number in every form a line could carry it."""
    numbers = [RECIPIENT, OPTED_OUT, HANDSET]
    forms = [f(n) for n in numbers for f in (str, lambda n: n[1:], lambda n: "0" + n[3:])]
    secrets = [API_KEY, WRONG_KEY, SMPP_PASSWORD, WRONG_PASSWORD, EVIDENCE, CLIENT_REF]
    return forms + secrets + [BODY_HTTP, BODY_SMPP, BODY_MO, BODY_BATCH]


def record(message: str, *args: object, name: str = "lib", exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"bad number {RECIPIENT}")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, args, exc_info)


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonLinesFormatter()])
def test_library_arguments_and_exception_messages_are_left_out(
    formatter: logging.Formatter,
) -> None:
    from_library = formatter.format(record("executing %s", f"insert({RECIPIENT!r})"))
    assert "executing %s" in from_library and RECIPIENT not in from_library
    asyncio_style = formatter.format(record(f"Exception in callback\nhandle: <{BODY_HTTP}>"))
    assert "Exception in callback" in asyncio_style and BODY_HTTP not in asyncio_style
    failed = formatter.format(record("store.failed", exc=True))
    assert "builtins.ValueError" in failed and "test_logs.py" in failed
    assert RECIPIENT not in failed


def test_domain_objects_leave_numbers_bodies_and_secrets_out_of_their_repr() -> None:
    tenant = TenantConfig("acme", api_keys=(API_KEY,), smpp=SmppCredentials("acme", SMPP_PASSWORD))
    request = SubmitRequest(
        tenant, Interface.SMPP, RECIPIENT, HANDSET, BODY_SMPP, client_ref=CLIENT_REF
    )
    message = Message(
        "01a2", "acme", Interface.SMPP, HANDSET, RECIPIENT, "transactional", 1,
        Encoding.GSM7, Status.ACCEPTED, 0.0, client_ref=CLIENT_REF,
    )  # fmt: skip
    notice = Notice("acme", NoticeKind.MO, "01a3", HANDSET, RECIPIENT, 0.0, 1.0, body=BODY_MO)
    for thing in (tenant, request, message, message.moved_to(Status.DELIVERED, 1.0), notice):
        text = repr(thing)
        assert "acme" in text
        assert not [needle for needle in needles() if needle in text], text


def test_own_events_keep_their_fields(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("gateway.test")
    with caplog.at_level(logging.INFO, logger="gateway.test"):
        log_event(logger, "smpp.bound", tenant="acme", bind_type="transceiver")
    (line,) = caplog.records
    entry = json.loads(JsonLinesFormatter().format(line))
    assert (entry["event"], entry["tenant"], entry["bind_type"]) == (
        "smpp.bound",
        "acme",
        "transceiver",
    )
    text = TextFormatter().format(line)
    assert text.endswith(" INFO gateway.test smpp.bound tenant=acme bind_type=transceiver")


async def drive(http: aiohttp.ClientSession, url: str, smpp_port: int) -> None:
    """Every path that handles a number, body or key, the failing ones included."""
    good = {"Authorization": f"Bearer {API_KEY}"}

    async def call(method: str, path: str, headers: dict[str, str] = good, **kw: Any) -> int:
        async with http.request(method, f"{url}{path}", headers=headers, **kw) as response:
            await response.read()
            return response.status

    message = {"to": RECIPIENT, "from": "Acme", "body": BODY_HTTP, "client_ref": CLIENT_REF}
    dead_hook = "http://127.0.0.1:9/hook"  # an allowed host where nothing listens
    assert await call("POST", "/v1/messages", json={**message, "callback_url": dead_hook}) == 202
    assert await call("POST", "/v1/opt-outs", json={"msisdns": [OPTED_OUT]}) == 200
    assert await call("POST", "/v1/messages", json={**message, "to": OPTED_OUT}) == 403
    batch = [{**message, "body": BODY_BATCH}, {**message, "to": "+46"}]
    assert await call("POST", "/v1/messages/batch", json={"messages": batch}) == 200
    consent = {"purpose": "marketing", "evidence": EVIDENCE}
    assert await call("PUT", f"/v1/consents/{RECIPIENT}", json=consent) == 200
    bad = {"Authorization": f"Bearer {WRONG_KEY}"}
    assert await call("POST", "/v1/messages", headers=bad, json=message) == 401
    mo = {"from": HANDSET, "to": "+46700000001", "body": BODY_MO}
    assert await call("POST", "/v1/simulator/inbound", json=mo) == 202
    assert await call("POST", "/v1/simulator/inbound", json={**mo, "body": "STOP"}) == 202
    assert await call("GET", f"/v1/simulator/handsets/{RECIPIENT}/messages") == 200
    assert await call("GET", f"/v1/nowhere/{RECIPIENT}") == 404

    refused = SmpplibEsme(smpp_port)
    with pytest.raises(smpplib.exceptions.PDUError):
        await refused.bind(password=WRONG_PASSWORD)
    refused.close()
    async with smpplib_esme(smpp_port, password=SMPP_PASSWORD) as esme:
        fields = submit_fields(to=RECIPIENT[1:], text=BODY_SMPP.encode(), registered_delivery=1)
        await esme.send(**fields)
        assert (await esme.next("submit_sm_resp")).status == 0
        await esme.next("deliver_sm")  # the receipt
        await esme.unbind()

    assert await call("GET", f"/v1/subjects/{RECIPIENT}/export") == 200
    assert await call("POST", f"/v1/subjects/{RECIPIENT}/erase") == 200


@pytest.mark.parametrize("log_format", list(LogFormat))
async def test_no_number_body_or_key_in_any_log_line_or_metric(
    tmp_path: Path, log_format: LogFormat
) -> None:
    config = merged(
        base_config(tmp_path),
        {
            "log": {"format": log_format.value, "level": "debug"},
            "callbacks": {"max_attempts": 2, "timeout": "1s"},
        },
    )
    acme = config["tenants"][0]
    acme["api_keys"] = [API_KEY]
    acme["smpp"]["password"] = SMPP_PASSWORD
    config_path = tmp_path / "config.toml"
    write_toml(config_path, config)
    async with aiohttp.ClientSession() as http, gateway_process(config_path) as gateway:
        await drive(http, gateway.url, gateway.smpp_port)
        await gateway.line_with("callback.failed")
        async with http.get(f"{gateway.url}/metrics") as response:
            metrics = await response.text()
        assert await gateway.stop() == 0

    log = "".join(gateway.log)
    for event in ("http.request", "smpp.bind_refused", "smpp.bound", "shutdown.finished"):
        assert event in log  # the paths ran, at DEBUG
    assert 'route="/v1/consents/{msisdn}"' in metrics
    if log_format is LogFormat.JSON:
        entries = [json.loads(line) for line in gateway.log]
        assert all({"time", "level", "logger", "event"} <= entry.keys() for entry in entries)
    for needle in needles():
        assert needle not in log, f"{needle!r} in the log"
        assert needle not in metrics, f"{needle!r} on /metrics"
