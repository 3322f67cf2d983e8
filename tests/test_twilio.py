"""The Twilio-compatible Messages API, driven by the official ``twilio`` SDK, unmodified.

The SDK is synchronous: each call runs in a thread (asyncio.to_thread) against the
real gateway serving in the test's loop, over real sockets. Its requests for
``*.twilio.com`` go to the gateway through a custom ``http_client``, as
docs/twilio.md tells users to do. Webhooks are received by a real local aiohttp
app and checked with the SDK's own ``RequestValidator``.
"""

from __future__ import annotations

import asyncio
import datetime
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from gateway.config import ConfigError, config_from_dict
from gateway.domain import Message, Status
from tests.conftest import (
    EVENT_TIMEOUT,
    RunningGateway,
    base_config,
    running_gateway,
    serve_locally,
)
from tests.test_consent import inbound

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "twilio-test-auth-token"
API_KEY_SID = "SK00112233445566778899aabbccddeeff"
API_KEY_SECRET = "twilio-api-key-secret"
HANDSET = "+46701234567"
SLOW = "+46709980003"  # the config below delivers to it after a minute
THROTTLED_TO = "+46709970001"
SERVICE = "MG" + "a" * 32
_T = TypeVar("_T")


class GatewayHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The SDK's own HTTP client, sending what it meant for ``*.twilio.com`` to smsgw."""

    def __init__(self, gateway_url: str) -> None:
        super().__init__()
        self.gateway_url = gateway_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        parts = urlsplit(url)
        if parts.hostname is not None and parts.hostname.endswith(".twilio.com"):
            url = self.gateway_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().request(method, url, *args, **kwargs)


@dataclass
class Webhooks:
    """A local app standing for the user's: records each signed form POST, answers TwiML."""

    url: str
    received: asyncio.Queue[tuple[str, dict[str, str], str]] = field(default_factory=asyncio.Queue)
    twiml: str = ""
    fail_first: int = 0  # answer this many POSTs 500 first (recorded all the same)

    async def next(self) -> tuple[str, dict[str, str], str]:
        """(path, form, X-Twilio-Signature) of the next POST."""
        return await asyncio.wait_for(self.received.get(), EVENT_TIMEOUT)


@pytest.fixture
async def webhooks() -> AsyncIterator[Webhooks]:
    hooks = Webhooks(url="")

    async def receive(request: web.Request) -> web.Response:
        form = {name: str(value) for name, value in (await request.post()).items()}
        await hooks.received.put((request.path, form, request.headers["X-Twilio-Signature"]))
        if hooks.fail_first > 0:
            hooks.fail_first -= 1
            return web.Response(status=500)
        if request.path == "/sms":
            return web.Response(text=hooks.twiml, content_type="text/xml")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{hook}", receive)
    async with serve_locally(app) as url:
        hooks.url = url
        yield hooks


def twilio_config(tmp_path: Path, **twilio: Any) -> dict[str, Any]:
    config = base_config(tmp_path)
    config["simulator"]["rules"] += [
        {"number": SLOW, "latency": ["60s", "60s"]},
        {"number": THROTTLED_TO, "submit_error": "throttled"},
    ]
    config["tenants"][0]["twilio"] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "api_keys": {API_KEY_SID: API_KEY_SECRET},
        **twilio,
    }
    return config


@pytest.fixture
async def gateway(tmp_path: Path, webhooks: Webhooks) -> AsyncIterator[RunningGateway]:
    config = twilio_config(tmp_path, sms_url=f"{webhooks.url}/sms")
    async with running_gateway(config_from_dict(config)) as running:
        yield running


def sdk(
    gateway: RunningGateway, username: str = ACCOUNT_SID, password: str = AUTH_TOKEN, **kw: Any
) -> Client:
    # environment={}: a TWILIO_REGION or TWILIO_EDGE in the environment would rename the host.
    return Client(
        username, password, http_client=GatewayHttpClient(gateway.url), environment={}, **kw
    )


async def call(function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    return await asyncio.wait_for(asyncio.to_thread(function, *args, **kwargs), EVENT_TIMEOUT)


async def refused(function: Callable[..., Any], *args: Any, **kwargs: Any) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as caught:
        await call(function, *args, **kwargs)
    return caught.value


async def final(queue: asyncio.Queue[Message], sid: str) -> Message:
    """The final state of the message with this sid, as the network commits it."""
    while True:
        message = await asyncio.wait_for(queue.get(), EVENT_TIMEOUT)
        if sid[2:22] == message.id:
            return message


SID_RE = re.compile(r"SM[0-9a-f]{32}")


async def test_create_answers_201_with_a_sid_and_our_segment_counts(
    gateway: RunningGateway,
) -> None:
    client = sdk(gateway)
    finals = gateway.finals()
    response = await call(
        client.messages.create_with_http_info, to=HANDSET, from_="Acme", body="x" * 161
    )
    assert response.status_code == 201
    message = response.data
    assert SID_RE.fullmatch(message.sid)
    assert message.account_sid == ACCOUNT_SID
    assert message.num_segments == "2"  # 161 GSM 03.38 characters: two parts of 153
    assert message.status == "queued" and message.body == "x" * 161
    assert message.direction == "outbound-api" and message.price is None
    assert message.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message.sid}.json"
    assert isinstance(message.date_created, datetime.datetime)
    assert message.date_created.tzinfo is not None

    ucs2 = await call(client.messages.create, to=HANDSET, from_="Acme", body="✓" * 71)
    assert ucs2.num_segments == "2"  # 71 UCS-2 characters: over 70, two parts of 67
    assert ucs2.sid != message.sid

    await final(finals, message.sid)
    fetched = await call(client.messages(message.sid).fetch)
    assert (fetched.sid, fetched.status, fetched.to, fetched.from_) == (
        message.sid,
        "delivered",
        HANDSET,
        "Acme",
    )
    assert fetched.error_code is None and isinstance(fetched.date_sent, datetime.datetime)
    assert fetched.body == ""  # the traffic log keeps no bodies


async def test_list_pages_through_three_pages_newest_first(gateway: RunningGateway) -> None:
    client = sdk(gateway)
    sids = [
        (await call(client.messages.create, to=HANDSET, from_="Acme", body=f"n{i}")).sid
        for i in range(5)
    ]
    first = await call(client.messages.page, to=HANDSET, page_size=2)
    second = await call(first.next_page)
    third = await call(second.next_page)
    pages = [[m.sid for m in page] for page in (first, second, third)]
    assert pages == [sids[4:2:-1], sids[2:0:-1], sids[:1]]
    assert third.next_page_url is None
    listed = await call(client.messages.list, page_size=2)
    assert [m.sid for m in listed] == sids[::-1]


async def test_list_filters_by_to_from_and_date_sent(gateway: RunningGateway) -> None:
    client = sdk(gateway)
    mine = await call(client.messages.create, to=HANDSET, from_="Acme", body="a")
    other = await call(client.messages.create, to="+46701234568", from_="+46700000001", body="b")
    by_to = await call(client.messages.list, to="+46701234568")
    assert [m.sid for m in by_to] == [other.sid]
    by_from = await call(client.messages.list, from_="Acme")
    assert [m.sid for m in by_from] == [mine.sid]
    today = datetime.datetime.now(datetime.UTC)
    on_the_day = await call(client.messages.list, date_sent=today.date())
    assert {m.sid for m in on_the_day} == {mine.sid, other.sid}
    later = today + datetime.timedelta(days=1)
    assert await call(client.messages.list, date_sent_after=later) == []
    earlier = today - datetime.timedelta(days=1)
    assert await call(client.messages.list, date_sent_before=earlier) == []
    assert len(await call(client.messages.list, date_sent_after=earlier)) == 2


async def test_cancel_a_scheduled_message_and_not_one_that_was_sent(
    gateway: RunningGateway,
) -> None:
    client = sdk(gateway)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    scheduled = await call(
        client.messages.create,
        to=HANDSET,
        messaging_service_sid=SERVICE,
        body="in an hour",
        send_at=later,
        schedule_type="fixed",
    )
    assert scheduled.status == "scheduled" and scheduled.date_sent is None
    canceled = await call(client.messages(scheduled.sid).update, status="canceled")
    assert canceled.status == "canceled"
    assert (await call(client.messages(scheduled.sid).fetch)).status == "canceled"
    error = await refused(client.messages(scheduled.sid).update, status="canceled")
    assert (error.code, error.status) == (30409, 400)
    sent = await call(client.messages.create, to=SLOW, from_="Acme", body="on its way")
    error = await refused(client.messages(sent.sid).update, status="canceled")
    assert (error.code, error.status) == (30409, 400)
    error = await refused(client.messages.create, to=HANDSET, from_="Acme", body="x", send_at=later)
    assert (error.code, error.status) == (21000, 400)  # SendAt without ScheduleType=fixed


async def test_a_scheduled_message_is_sent_at_its_time_with_callbacks_after_it(
    gateway: RunningGateway, webhooks: Webhooks
) -> None:
    client = sdk(gateway)
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    url = f"{webhooks.url}/status"
    message = await call(
        client.messages.create,
        to=HANDSET,
        from_="Acme",
        body="soon",
        send_at=soon,
        schedule_type="fixed",
        status_callback=url,
    )
    assert message.status == "scheduled"
    statuses = {(await webhooks.next())[1]["MessageStatus"] for _ in range(2)}
    assert statuses == {"sent", "delivered"}  # none for "scheduled"
    fetched = await call(client.messages(message.sid).fetch)
    assert fetched.status == "delivered" and fetched.date_sent >= soon.replace(microsecond=0)


async def test_a_validity_period_that_ends_first_makes_it_undelivered(
    gateway: RunningGateway,
) -> None:
    client = sdk(gateway)
    finals = gateway.finals()
    message = await call(client.messages.create, to=SLOW, from_="Acme", body="x", validity_period=1)
    assert (await final(finals, message.sid)).status is Status.EXPIRED
    fetched = await call(client.messages(message.sid).fetch)
    assert (fetched.status, fetched.error_code) == ("undelivered", 30003)
    error = await refused(
        client.messages.create, to=HANDSET, from_="Acme", body="x", validity_period=36001
    )
    assert (error.code, error.status) == (21000, 400)


async def test_redact_erases_the_body_the_handset_holds(gateway: RunningGateway) -> None:
    client = sdk(gateway)
    finals = gateway.finals()
    sent = await call(client.messages.create, to=HANDSET, from_="Acme", body="secret 1234")
    await final(finals, sent.sid)
    inbox = f"/v1/simulator/handsets/{HANDSET}/messages"
    assert (await gateway.get_json(inbox))[1]["messages"][0]["body"] == "secret 1234"
    redacted = await call(client.messages(sent.sid).update, body="")
    assert redacted.body == "" and redacted.status == "delivered"
    assert (await gateway.get_json(inbox))[1]["messages"][0]["body"] == ""

    pending = await call(client.messages.create, to=SLOW, from_="Acme", body="on its way")
    error = await refused(client.messages(pending.sid).update, body="")
    assert (error.code, error.status) == (20009, 400)


async def test_delete_forgets_a_final_message(gateway: RunningGateway) -> None:
    client = sdk(gateway)
    finals = gateway.finals()
    sent = await call(client.messages.create, to=HANDSET, from_="Acme", body="bye")
    await final(finals, sent.sid)
    assert await call(client.messages(sent.sid).delete) is True
    error = await refused(client.messages(sent.sid).fetch)
    assert (error.code, error.status) == (20404, 404)


async def test_each_error_is_a_twilio_rest_exception_with_its_code(
    gateway: RunningGateway,
) -> None:
    client = sdk(gateway)
    create = client.messages.create
    cases: list[tuple[dict[str, Any], int, int]] = [
        ({"to": "garbage", "from_": "Acme", "body": "x"}, 21211, 400),
        ({"to": HANDSET, "from_": "not a sender!", "body": "x"}, 21212, 400),
        ({"to": HANDSET, "from_": "+46700000099", "body": "x"}, 21606, 400),
        ({"to": HANDSET, "from_": "Acme"}, 21602, 400),
        ({"to": "", "from_": "Acme", "body": "x"}, 21604, 400),
        ({"to": HANDSET, "from_": "Acme", "body": "x" * 1601}, 21617, 400),
        ({"to": THROTTLED_TO, "from_": "Acme", "body": "x"}, 20429, 429),
        ({"to": HANDSET, "body": "x"}, 21603, 400),
        (
            {"to": HANDSET, "from_": "Acme", "body": "x", "status_callback": "http://192.0.2.1/s"},
            21609,
            400,
        ),
    ]
    for arguments, code, status in cases:
        error = await refused(create, **arguments)
        assert (error.code, error.status) == (code, status), arguments
    error = await refused(client.messages("SM" + "0" * 32).fetch)
    assert (error.code, error.status) == (20404, 404)
    wrong_token = sdk(gateway, password="not-the-token")
    error = await refused(wrong_token.messages.create, to=HANDSET, from_="Acme", body="x")
    assert (error.code, error.status) == (20003, 401)
    other_account = sdk(gateway, account_sid="AC" + "f" * 32)
    error = await refused(other_account.messages.create, to=HANDSET, from_="Acme", body="x")
    assert (error.code, error.status) == (20404, 404)


async def test_another_tenants_account_sees_none_of_its_messages(tmp_path: Path) -> None:
    config = twilio_config(tmp_path)
    other_sid = "AC" + "e" * 32
    config["tenants"][1]["twilio"] = {"account_sid": other_sid, "auth_token": AUTH_TOKEN + "-2"}
    async with running_gateway(config_from_dict(config)) as gateway:
        mine = await call(sdk(gateway).messages.create, to=HANDSET, from_="Acme", body="x")
        theirs = sdk(gateway, other_sid, AUTH_TOKEN + "-2")
        error = await refused(theirs.messages(mine.sid).fetch)
        assert (error.code, error.status) == (20404, 404)
        assert await call(theirs.messages.list) == []
        error = await refused(theirs.messages.create, to=HANDSET, from_="Acme", body="x")
        assert error.code == 21606  # acme's sender is not theirs


async def test_a_messaging_service_sends_from_the_tenants_first_sender(
    gateway: RunningGateway,
) -> None:
    create = sdk(gateway).messages.create
    message = await call(create, to=HANDSET, messaging_service_sid=SERVICE, body="pool")
    assert (message.status, message.from_, message.messaging_service_sid) == (
        "accepted",
        "Acme",
        SERVICE,
    )


async def test_an_api_key_authenticates_too(gateway: RunningGateway) -> None:
    client = sdk(gateway, API_KEY_SID, API_KEY_SECRET, account_sid=ACCOUNT_SID)
    message = await call(client.messages.create, to=HANDSET, from_="Acme", body="key")
    assert message.account_sid == ACCOUNT_SID


async def test_an_opted_out_recipient_is_21610_and_gets_nothing(
    gateway: RunningGateway,
) -> None:
    finals = gateway.finals()
    await inbound(gateway, "STOP", HANDSET)
    confirmation = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)  # the gateway's own
    error = await refused(sdk(gateway).messages.create, to=HANDSET, from_="Acme", body="promo")
    assert (error.code, error.status) == (21610, 400)
    _, inbox = await gateway.get_json(f"/v1/simulator/handsets/{HANDSET}/messages")
    assert [m["message_id"] for m in inbox["messages"]] == [confirmation.id]


async def test_status_callbacks_are_signed_and_skip_the_initial_status(
    gateway: RunningGateway, webhooks: Webhooks
) -> None:
    client = sdk(gateway)
    validator = RequestValidator(AUTH_TOKEN)
    url = f"{webhooks.url}/status"
    sent = await call(
        client.messages.create, to=HANDSET, from_="Acme", body="hi", status_callback=url
    )
    callbacks = [await webhooks.next() for _ in range(2)]
    assert {form["MessageStatus"] for _, form, _ in callbacks} == {"sent", "delivered"}
    for path, form, signature in callbacks:
        assert path == "/status"
        assert validator.validate(url, form, signature)
        assert not RequestValidator("another-token").validate(url, form, signature)
        assert form["MessageSid"] == form["SmsSid"] == sent.sid
        assert form["SmsStatus"] == form["MessageStatus"]
        assert (form["To"], form["From"], form["AccountSid"]) == (HANDSET, "Acme", ACCOUNT_SID)
        assert form["ApiVersion"] == "2010-04-01" and "ErrorCode" not in form

    failing = await call(
        client.messages.create, to="+46709990001", from_="Acme", body="hi", status_callback=url
    )
    callbacks = [await webhooks.next() for _ in range(2)]
    by_status = {form["MessageStatus"]: form for _, form, _ in callbacks}
    assert set(by_status) == {"sent", "undelivered"}
    assert by_status["undelivered"]["ErrorCode"] == "30005"
    assert by_status["undelivered"]["MessageSid"] == failing.sid
    assert webhooks.received.empty()


async def test_a_failed_status_callback_is_retried_signed_the_same(
    gateway: RunningGateway, webhooks: Webhooks
) -> None:
    webhooks.fail_first = 1
    url = f"{webhooks.url}/status"
    await call(
        sdk(gateway).messages.create,
        to="+46709990001",
        from_="Acme",
        body="x",
        status_callback=url,
    )
    posts = [await webhooks.next() for _ in range(3)]  # one of the two is refused once
    statuses = sorted(form["MessageStatus"] for _, form, _ in posts)
    assert statuses in (["sent", "sent", "undelivered"], ["sent", "undelivered", "undelivered"])
    validator = RequestValidator(AUTH_TOKEN)
    assert all(validator.validate(url, form, signature) for _, form, signature in posts)


async def test_a_resent_status_callback_is_twilio_shaped_and_signed(
    gateway: RunningGateway, webhooks: Webhooks
) -> None:
    """The web inbox's re-send (POST /v1/messages/{id}/callbacks) keeps the front end's shape."""
    url = f"{webhooks.url}/status"
    sent = await call(
        sdk(gateway).messages.create, to=HANDSET, from_="Acme", body="hi", status_callback=url
    )
    first = {(await webhooks.next())[1]["MessageStatus"] for _ in range(2)}
    assert first == {"sent", "delivered"}
    async with gateway.http.post(
        f"{gateway.url}/v1/messages/{sent.sid[2:22]}/callbacks", headers=gateway.headers
    ) as response:
        assert response.status == 202
    _, form, signature = await webhooks.next()
    assert form["MessageStatus"] == "delivered" and form["MessageSid"] == sent.sid
    assert RequestValidator(AUTH_TOKEN).validate(url, form, signature)


async def test_a_handset_reply_reaches_sms_url_signed_and_twiml_answers_it(
    gateway: RunningGateway, webhooks: Webhooks
) -> None:
    webhooks.twiml = "<?xml version='1.0'?><Response><Message>Thanks, noted.</Message></Response>"
    finals = gateway.finals()
    await inbound(gateway, "Yes please", HANDSET)
    path, form, signature = await webhooks.next()
    assert path == "/sms"
    assert RequestValidator(AUTH_TOKEN).validate(f"{webhooks.url}/sms", form, signature)
    assert SID_RE.fullmatch(form["MessageSid"]) and form["SmsSid"] == form["MessageSid"]
    assert (form["From"], form["To"], form["Body"]) == (HANDSET, "+46700000001", "Yes please")
    assert (form["NumSegments"], form["NumMedia"], form["SmsStatus"]) == ("1", "0", "received")
    assert (form["AccountSid"], form["ApiVersion"]) == (ACCOUNT_SID, "2010-04-01")
    reply = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    assert reply.status is Status.DELIVERED
    _, inbox = await gateway.get_json(f"/v1/simulator/handsets/{HANDSET}/messages")
    assert [(m["from"], m["body"]) for m in inbox["messages"]] == [
        ("+46700000001", "Thanks, noted.")
    ]


async def test_magic_test_numbers(tmp_path: Path) -> None:
    config = config_from_dict(twilio_config(tmp_path, test_numbers=True))
    async with running_gateway(config) as gateway:
        create = sdk(gateway).messages.create
        ok = await call(create, to=HANDSET, from_="+15005550006", body="test")
        assert ok.from_ == "+15005550006" and ok.status == "queued"
        cases = [
            ("+15005550001", HANDSET, 21212),
            ("+15005550006", "+15005550001", 21211),
            ("+15005550006", "+15005550002", 21612),
            ("+15005550006", "+15005550003", 21408),
            ("+15005550006", "+15005550004", 21610),
            ("+15005550006", "+15005550009", 21614),
        ]
        for sender, to, code in cases:
            error = await refused(create, to=to, from_=sender, body="test")
            assert (error.code, error.status) == (code, 400), (sender, to)


async def test_a_digest_token_authenticates_but_cannot_sign(tmp_path: Path) -> None:
    import hashlib

    digest = "sha256:" + hashlib.sha256(AUTH_TOKEN.encode()).hexdigest()
    with pytest.raises(ConfigError, match=r"tenants\[0\]\.twilio\.sms_url"):
        config_from_dict(twilio_config(tmp_path, auth_token=digest, sms_url="http://127.0.0.1/x"))
    async with running_gateway(config_from_dict(twilio_config(tmp_path, auth_token=digest))) as gw:
        create = sdk(gw).messages.create
        assert (await call(create, to=HANDSET, from_="Acme", body="x")).status == "queued"
        error = await refused(
            create, to=HANDSET, from_="Acme", body="x", status_callback="http://127.0.0.1/s"
        )
        assert (error.code, error.status) == (21609, 400)


@pytest.mark.parametrize(
    ("twilio", "key", "problem"),
    [
        ({"account_sid": "AC123"}, "account_sid", "32"),
        ({"auth_token": "short"}, "auth_token", "too short"),
        ({"api_keys": {"SKnope": "long-enough-secret"}}, "api_keys.SKnope", "SK"),
        ({"sms_url": "http://192.0.2.1/sms"}, "sms_url", "allowed_hosts"),
    ],
)
def test_config_names_a_bad_twilio_key(
    tmp_path: Path, twilio: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(twilio_config(tmp_path, **twilio))
    assert caught.value.path == f"tenants[0].twilio.{key}"
    assert problem in caught.value.problem


def test_two_tenants_cannot_share_an_account_sid_or_api_key(tmp_path: Path) -> None:
    config = twilio_config(tmp_path)
    config["tenants"][1]["twilio"] = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN + "2"}
    with pytest.raises(ConfigError, match=r"tenants\[1\]\.twilio\.account_sid"):
        config_from_dict(config)
    config["tenants"][1]["twilio"] = {
        "account_sid": "AC" + "e" * 32,
        "auth_token": AUTH_TOKEN + "2",
        "api_keys": {API_KEY_SID: "another-long-secret"},
    }
    with pytest.raises(ConfigError, match=rf"tenants\[1\]\.twilio\.api_keys\.{API_KEY_SID}"):
        config_from_dict(config)


async def test_base_url_works_and_a_region_mangles_it_but_not_the_http_client(
    gateway: RunningGateway,
) -> None:
    """docs/twilio.md's two ways, and the trap of TWILIO_REGION / TWILIO_EDGE."""
    plain = Client(ACCOUNT_SID, AUTH_TOKEN, environment={})
    plain.api.base_url = gateway.url
    assert (await call(plain.messages.create, to=HANDSET, from_="Acme", body="a")).sid
    regional = Client(ACCOUNT_SID, AUTH_TOKEN, region="ie1", environment={})
    assert "ie1" in regional.get_hostname(f"{gateway.url}/2010-04-01")  # 127.ie1.0.1: broken
    rewritten = sdk(gateway, region="ie1", edge="dublin")
    assert (await call(rewritten.messages.create, to=HANDSET, from_="Acme", body="b")).sid
