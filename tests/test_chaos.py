"""Run-time chaos over /v1/simulator/chaos, seen through HTTP and SMPP on real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.chaos import OFF, ChaosError, ChaosSettings
from gateway.config import config_from_dict
from gateway.domain import Message, Status
from gateway.events import CHAOS_CHANGED
from gateway.server.appkeys import EVENTS
from smpp.pdu import CommandId, CommandStatus, Pdu
from tests.conftest import EVENT_TIMEOUT, OTHER_KEY, RunningGateway, running_gateway
from tests.smpp_clients import RawEsme
from tests.test_consent import smpp_submit
from tests.test_smpp_notices import scraped
from tests.test_smpp_server import submit_fields

C = CommandId
S = CommandStatus
CHAOS = "/v1/simulator/chaos"
RECIPIENT = "+46701234567"
NOT_A_NUMBER = "+4670999" + "0001"  # a config rule makes these undeliverable


async def put_chaos(gateway: RunningGateway, document: object, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else gateway.headers
    async with gateway.http.put(f"{gateway.url}{CHAOS}", json=document, headers=headers) as answer:
        assert answer.status == 200, await answer.text()
        return await answer.json()


@pytest.fixture
def config_dict(config_dict: dict[str, Any]) -> dict[str, Any]:
    """Chaos is a test control: these gateways allow it (``allow_reset``)."""
    config_dict["simulator"]["allow_reset"] = True
    return config_dict


async def bound(gateway: RunningGateway, system_id: str = "acme") -> RawEsme:
    raw = await RawEsme.connect(gateway.smpp_port)
    assert (await raw.bind(system_id, f"{system_id}-pw")).command_status == S.ESME_ROK
    return raw


async def final(finals: asyncio.Queue[Message], message_id: str) -> Message:
    """The message once final (``finals`` from `RunningGateway.finals`, taken before the send)."""
    while (message := await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)).id != message_id:
        pass
    return message


@pytest.mark.parametrize(
    ("kind", "http_status", "smpp_status"),
    [
        ("throttled", 429, S.ESME_RTHROTTLED),
        ("queue_full", 503, S.ESME_RMSGQFUL),
        ("system_error", 500, S.ESME_RSYSERR),
        ("no_response", 504, None),
    ],
)
async def test_a_submit_error_of_the_chosen_kind_over_http_and_smpp(
    gateway: RunningGateway, kind: str, http_status: int, smpp_status: int | None
) -> None:
    await put_chaos(gateway, {"submit_errors": {kind: 1}})
    response = await gateway.send()
    assert (response.status, (await response.json())["code"]) == (http_status, kind)
    if kind == "throttled":
        assert int(response.headers["Retry-After"]) >= 1
    raw = await bound(gateway)
    if smpp_status is None:  # no submit_sm_resp at all: the next answer is the enquire_link's
        await raw.send(Pdu.make(C.submit_sm, 2, **submit_fields()))
        assert (await raw.request(Pdu.make(C.enquire_link, 3))).sequence_number == 3
    else:
        assert await smpp_submit(raw, 2, RECIPIENT) == smpp_status
    await raw.close()

    async def counted() -> float:
        """An unanswered submit has no answer to await: its count is what tells."""
        metric = "smsgw_chaos_injected_total"
        while (found := await scraped(gateway, metric, kind=kind, tenant="acme")) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return found

    # The enquire_link's answer may overtake the submit when its privacy gate reads the
    # store (a shared registry always does).
    assert await asyncio.wait_for(counted(), EVENT_TIMEOUT) == 2


async def test_a_delivery_outcome_is_forced_over_the_rules(gateway: RunningGateway) -> None:
    await put_chaos(gateway, {"outcomes": {"expired": 1}})
    finals = gateway.finals()
    message = await (await gateway.send()).json()
    assert (await final(finals, message["id"])).status is Status.EXPIRED
    raw = await bound(gateway)
    answer = await raw.request(Pdu.make(C.submit_sm, 2, **submit_fields()))
    assert answer.command_status == S.ESME_ROK
    assert (await final(finals, str(answer.params["message_id"]))).status is Status.EXPIRED
    await raw.close()
    # The rules are the baseline: chaos wins over the one that makes this undeliverable.
    await put_chaos(gateway, {"outcomes": {"delivered": 1}})
    message = await (await gateway.send(to=NOT_A_NUMBER)).json()
    assert (await final(finals, message["id"])).status is Status.DELIVERED
    assert await scraped(gateway, "smsgw_chaos_injected_total", kind="expired", tenant="acme") == 2


async def test_extra_latency_comes_on_top(gateway: RunningGateway) -> None:
    await put_chaos(gateway, {"extra_latency": [0.3, 0.3]})
    finals = gateway.finals()
    message = await (await gateway.send()).json()
    delivered = await final(finals, message["id"])
    assert delivered.status is Status.DELIVERED and delivered.final_at is not None
    assert delivered.final_at - delivered.submitted_at >= 0.3  # a lower bound: it was added
    assert await scraped(gateway, "smsgw_chaos_injected_total", kind="latency", tenant="acme") == 1


async def test_session_drop_after_n_pdus_and_by_probability(gateway: RunningGateway) -> None:
    await put_chaos(gateway, {"session_drop": {"after_pdus": 2}})
    raw = await bound(gateway)
    for sequence in (2, 3):
        assert (await raw.request(Pdu.make(C.enquire_link, sequence))).sequence_number == sequence
    await raw.send(Pdu.make(C.enquire_link, 4))
    with pytest.raises(EOFError):  # closed, the third PDU unanswered
        await raw.next()
    await raw.close()

    await put_chaos(gateway, {"session_drop": {"probability": 1}})
    raw = await bound(gateway)
    await raw.send(Pdu.make(C.submit_sm, 2, **submit_fields()))
    with pytest.raises(EOFError):
        await raw.next()
    await raw.close()
    assert (
        await scraped(gateway, "smsgw_chaos_injected_total", kind="session_drop", tenant="acme")
        == 2
    )


async def test_throughput_cap_refuses_beyond_the_rate(gateway: RunningGateway) -> None:
    await put_chaos(gateway, {"max_submit_rate": 2})
    batch = {"messages": [{"to": RECIPIENT, "from": "Acme", "body": "hi"}] * 10}
    async with gateway.http.post(
        f"{gateway.url}/v1/messages/batch", json=batch, headers=gateway.headers
    ) as response:
        document = await response.json()
        assert int(response.headers["Retry-After"]) >= 1
    assert document["accepted"] in (2, 3)  # a second's worth; a third if a token refilled
    codes = {r["problem"]["code"] for r in document["results"] if "problem" in r}
    assert codes == {"throttled"}
    raw = await bound(gateway)
    assert await smpp_submit(raw, 2, RECIPIENT) == S.ESME_RTHROTTLED
    await raw.close()


async def test_settings_are_visible_and_off_with_one_call(gateway: RunningGateway) -> None:
    assert (await gateway.get_json(CHAOS)) == (200, OFF.document())
    settings = {
        "submit_errors": {"system_error": 0.25, "throttled": 0.5},
        "outcomes": {"rejected": 1},
        "extra_latency": [0.01, 0.02],
        "session_drop": {"after_pdus": 100, "probability": 0.001},
        "max_submit_rate": 50,
    }
    shown = await put_chaos(gateway, settings)
    assert (await gateway.get_json(CHAOS)) == (200, shown)
    assert shown["submit_errors"] == {
        "throttled": 0.5,
        "queue_full": 0.0,
        "system_error": 0.25,
        "no_response": 0.0,
    }
    assert shown["session_drop"] == settings["session_drop"]
    async with gateway.http.delete(f"{gateway.url}{CHAOS}", headers=gateway.headers) as answer:
        assert (answer.status, await answer.json()) == (200, OFF.document())
    assert (await gateway.get_json(CHAOS)) == (200, OFF.document())

    await put_chaos(gateway, {"submit_errors": {"system_error": 1}})
    assert await put_chaos(gateway, {}) == OFF.document()  # an empty PUT turns it off too
    assert (await gateway.send()).status == 202


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"submit_errors": {"throttled": 1.5}}, "submit_errors.throttled"),
        ({"submit_errors": {"busy": 0.5}}, "submit_errors.busy"),
        ({"outcomes": {"expired": 0.6, "rejected": 0.6}}, "'outcomes'"),
        ({"outcomes": {"delivered": True}}, "outcomes.delivered"),
        ({"extra_latency": [2, 1]}, "extra_latency"),
        ({"extra_latency": [0, 6000]}, "extra_latency"),
        ({"session_drop": {"after_pdus": 0}}, "session_drop.after_pdus"),
        ({"session_drop": []}, "session_drop"),
        ({"max_submit_rate": -1}, "max_submit_rate"),
        ({"latency": [1, 2]}, "'latency'"),
    ],
)
async def test_bad_settings_are_refused_naming_the_field(
    gateway: RunningGateway, document: dict[str, Any], named: str
) -> None:
    before = await put_chaos(gateway, {"outcomes": {"rejected": 0.5}})
    async with gateway.http.put(
        f"{gateway.url}{CHAOS}", json=document, headers=gateway.headers
    ) as answer:
        problem = await answer.json(content_type=None)
        assert answer.content_type == "application/problem+json"
    assert (answer.status, problem["code"]) == (400, "invalid_request")
    assert named in problem["detail"]
    assert (await gateway.get_json(CHAOS)) == (200, before)  # what was in force stays


def test_the_document_round_trips() -> None:
    settings = ChaosSettings.from_document(
        {"submit_errors": {"queue_full": 0.1}, "session_drop": {"after_pdus": 3}}
    )
    assert ChaosSettings.from_document(settings.document()) == settings
    assert ChaosSettings.from_document(OFF.document()) == OFF
    assert not ChaosSettings.from_document({"outcomes": {"expired": 0}}).active
    with pytest.raises(ChaosError, match="must be a JSON object"):
        ChaosSettings.from_document([])


async def test_one_tenants_chaos_never_touches_another(gateway: RunningGateway) -> None:
    await put_chaos(
        gateway,
        {
            "submit_errors": {"system_error": 1},
            "session_drop": {"probability": 1},
            "max_submit_rate": 1,
        },
    )
    acme = await RawEsme.connect(gateway.smpp_port)
    await acme.bind()
    other = await bound(gateway, "other")
    other_fields = submit_fields(source_addr="Other")
    for sequence in range(2, 6):
        answer = await other.request(Pdu.make(C.submit_sm, sequence, **other_fields))
        assert answer.command_status == S.ESME_ROK
    await acme.send(Pdu.make(C.enquire_link, 2))
    with pytest.raises(EOFError):
        await acme.next()
    await other.close()
    await acme.close()

    headers = {"Authorization": f"Bearer {OTHER_KEY}"}
    document = {"to": RECIPIENT, "from": "Other", "body": "hi"}
    finals = gateway.finals()
    async with gateway.http.post(
        f"{gateway.url}/v1/messages", json=document, headers=headers
    ) as response:
        assert response.status == 202
        message = await response.json()
    assert (await final(finals, message["id"])).status is Status.DELIVERED
    assert (await gateway.get_json(CHAOS, OTHER_KEY)) == (200, OFF.document())
    assert (await gateway.send()).status == 500  # acme's chaos is still on


async def test_changes_are_published_on_the_tenants_stream(gateway: RunningGateway) -> None:
    acme = gateway.app[EVENTS].subscribe("acme")
    other = gateway.app[EVENTS].subscribe("other")
    shown = await put_chaos(gateway, {"outcomes": {"undeliverable": 1}})
    [event] = await asyncio.wait_for(acme.next_batch(), EVENT_TIMEOUT)
    assert (event.kind, event.values) == (CHAOS_CHANGED, (shown,))
    async with gateway.http.delete(f"{gateway.url}{CHAOS}", headers=gateway.headers):
        pass
    [event] = await asyncio.wait_for(acme.next_batch(), EVENT_TIMEOUT)
    assert (event.kind, event.values) == (CHAOS_CHANGED, (OFF.document(),))
    assert other.pending() == 0


@pytest.mark.parametrize("older_spelling", [False, True], ids=["tenant", "smpp"])
async def test_max_submit_rate_holds_over_http_and_smpp_together(
    config_dict: dict[str, Any], older_spelling: bool
) -> None:
    # One token every 5 s: the first submit takes it, whichever front end it came from.
    tenant = config_dict["tenants"][0]
    (tenant["smpp"] if older_spelling else tenant)["max_submit_rate"] = 0.2
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        raw = await bound(gateway)
        assert await smpp_submit(raw, 2, RECIPIENT) == S.ESME_ROK
        response = await gateway.send()
        assert (response.status, (await response.json())["code"]) == (429, "throttled")
        assert 1 <= int(response.headers["Retry-After"]) <= 5
        assert await smpp_submit(raw, 3, RECIPIENT) == S.ESME_RTHROTTLED
        await raw.close()
        # The other tenant has no limit of its own.
        other = await bound(gateway, "other")
        for sequence in (2, 3, 4):
            fields = submit_fields(source_addr="Other")
            answer = await other.request(Pdu.make(C.submit_sm, sequence, **fields))
            assert answer.command_status == S.ESME_ROK
        await other.close()


async def test_http_first_then_smpp_is_refused(config_dict: dict[str, Any]) -> None:
    config_dict["tenants"][0]["max_submit_rate"] = 0.2
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        assert (await gateway.send()).status == 202
        raw = await bound(gateway)
        assert await smpp_submit(raw, 2, RECIPIENT) == S.ESME_RTHROTTLED
        await raw.close()
