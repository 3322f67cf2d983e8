"""Consent and opt-out checked inline, over HTTP and SMPP, with the real gateway."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.config import config_from_dict
from gateway.domain import Message
from gateway.server.cli import main
from smpp.bodies import SubmitMultiResp
from smpp.pdu import CommandId, CommandStatus, Pdu, SmeAddress
from tests.conftest import (
    EVENT_TIMEOUT,
    OTHER_KEY,
    CallbackReceiver,
    RunningGateway,
    running_gateway,
    stored_execute,
    stored_rows,
)
from tests.smpp_clients import RawEsme, smpplib_esme
from tests.test_process import write_toml
from tests.test_smpp_server import submit_fields

C = CommandId
S = CommandStatus
HANDSET = "+46701112233"
OPTED_OUT, CONSENT_REQUIRED = 0x401, 0x402


async def inbound(gateway: RunningGateway, body: str, handset: str = HANDSET) -> dict[str, Any]:
    async with gateway.http.post(
        f"{gateway.url}/v1/simulator/inbound",
        json={"from": handset, "to": "+46700000001", "body": body},
        headers=gateway.headers,
    ) as response:
        assert response.status == 202
        return dict(await response.json())


async def call(
    gateway: RunningGateway, method: str, path: str, key: str | None = None, **kwargs: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else gateway.headers
    async with gateway.http.request(
        method, f"{gateway.url}{path}", headers=headers, **kwargs
    ) as response:
        return response.status, await response.json(content_type=None)


async def submit_code(gateway: RunningGateway, to: str = HANDSET, **fields: Any) -> str:
    response = await gateway.send(to=to, **fields)
    document = await response.json(content_type=None)
    return "accepted" if response.status == 202 else str(document["code"])


async def smpp_submit(raw: RawEsme, sequence: int, to: str, service_type: str = "") -> int:
    fields = submit_fields(to=to.lstrip("+"), service_type=service_type)
    answer = await raw.request(Pdu.make(C.submit_sm, sequence, **fields))
    return answer.command_status


async def test_stop_start_and_help_from_a_handset(gateway: RunningGateway) -> None:
    async with smpplib_esme(gateway.smpp_port, kind="transmitter") as esme:

        async def smpplib_submit() -> int:
            await esme.send(
                source_addr_ton=5,
                source_addr="Acme",
                dest_addr_ton=1,
                destination_addr=HANDSET[1:],
                short_message=b"hi",
            )
            return int((await esme.next("submit_sm_resp")).status)

        assert await submit_code(gateway) == "accepted"
        stop = await inbound(gateway, "Stop.")
        assert stop["keyword"] == "stop"
        for form in (HANDSET, "070-111 22 33", "0046 70 111 22 33"):
            assert await submit_code(gateway, to=form) == "recipient_opted_out"
        assert await smpplib_submit() == OPTED_OUT
        _, state = await call(gateway, "GET", "/v1/opt-outs/0701112233")
        assert state["opted_out"] is True
        assert state["opt_outs"][0]["source"] == "keyword"

        await inbound(gateway, "START")
        assert await submit_code(gateway) == "accepted"
        assert await smpplib_submit() == S.ESME_ROK

    help_ = await inbound(gateway, " help ")
    assert help_["keyword"] == "help"
    assert (await inbound(gateway, "Don't stop me now"))["keyword"] is None
    assert await submit_code(gateway) == "accepted"

    finals = gateway.finals()
    while True:  # the replies (confirmation, help) are delivered like any message
        _, inbox = await call(gateway, "GET", f"/v1/simulator/handsets/{HANDSET}/messages")
        bodies = [m["body"] for m in inbox["messages"]]
        if any("Reply STOP to opt out, START" in b for b in bodies) and any(
            "no more messages" in b for b in bodies
        ):
            break
        await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)


async def test_full_width_and_padded_stop(gateway: RunningGateway) -> None:
    full_width_stop = "\uff33\uff34\uff2f\uff30"
    await inbound(gateway, full_width_stop, handset="+46701110001")
    await inbound(gateway, "  stop!! ", handset="+46701110002")
    assert await submit_code(gateway, to="+46701110001") == "recipient_opted_out"
    assert await submit_code(gateway, to="+46701110002") == "recipient_opted_out"


async def test_marketing_needs_consent_transactional_does_not(gateway: RunningGateway) -> None:
    assert await submit_code(gateway, purpose="transactional") == "accepted"
    assert await submit_code(gateway, purpose="marketing") == "consent_required"
    status, state = await call(
        gateway,
        "PUT",
        f"/v1/consents/{HANDSET}",
        json={"purpose": "marketing", "evidence": "web form #42"},
    )
    assert status == 200
    assert [c["evidence"] for c in state["consents"]] == ["web form #42"]
    assert await submit_code(gateway, purpose="marketing") == "accepted"

    raw = await RawEsme.connect(gateway.smpp_port)
    await raw.bind(command=C.bind_transmitter)
    assert await smpp_submit(raw, 2, HANDSET, service_type="MKT") == S.ESME_ROK
    assert await smpp_submit(raw, 3, "+46705550000", service_type="MKT") == CONSENT_REQUIRED
    await raw.close()

    status, _ = await call(gateway, "DELETE", f"/v1/consents/{HANDSET}?purpose=marketing")
    assert status == 200
    assert await submit_code(gateway, purpose="marketing") == "consent_required"
    assert await submit_code(gateway, purpose="bogus") == "invalid_request"
    status, history = await call(gateway, "GET", f"/v1/consents/{HANDSET}")
    assert [e["kind"] for e in history["history"]] == ["consent_given", "consent_withdrawn"]


async def test_submit_multi_refuses_only_opted_out_destinations(gateway: RunningGateway) -> None:
    await inbound(gateway, "STOP")
    raw = await RawEsme.connect(gateway.smpp_port)
    await raw.bind(command=C.bind_transmitter)
    answer = await raw.request(
        Pdu.make(
            C.submit_multi,
            2,
            source_addr_ton=5,
            source_addr="Acme",
            short_message=b"hi",
            dest_address=(SmeAddress(1, 1, HANDSET[1:]), SmeAddress(1, 1, "46705550001")),
        )
    )
    assert answer.command_status == S.ESME_ROK
    assert [
        (u.destination_addr, u.error_status_code)
        for u in answer.body(SubmitMultiResp)["unsuccess_sme"]
    ] == [(HANDSET[1:], OPTED_OUT)]
    await raw.close()


async def test_bulk_import_blocks_every_form(gateway: RunningGateway) -> None:
    numbers = [f"070{i:07d}" for i in range(5000)] + ["not a number"]
    status, result = await call(
        gateway, "POST", "/v1/opt-outs", json={"msisdns": numbers, "evidence": "old system"}
    )
    assert (status, result) == (200, {"recorded": 5000, "invalid": [5000]})
    assert await submit_code(gateway, to="+46700001234") == "recipient_opted_out"
    assert await submit_code(gateway, to="+46 70 000 49 99") == "recipient_opted_out"
    status, _ = await call(gateway, "DELETE", "/v1/opt-outs/+46700001234")
    assert status == 200
    assert await submit_code(gateway, to="+46700001234") == "accepted"
    status, page = await call(gateway, "GET", "/v1/consents?limit=1000")
    assert status == 200 and len(page["subjects"]) == 1000 and page["next_cursor"]
    assert all(s["subject"].startswith("p1:") for s in page["subjects"])
    status, rest = await call(gateway, "GET", f"/v1/consents?cursor={page['next_cursor']}")
    assert status == 200 and rest["subjects"][0]["subject"] > page["next_cursor"]
    status, audit = await call(gateway, "GET", "/v1/audit?limit=1")
    status, older = await call(gateway, "GET", f"/v1/audit?limit=1&cursor={audit['next_cursor']}")
    assert status == 200 and older["entries"][0]["seq"] < audit["entries"][0]["seq"]


async def test_opt_out_while_messages_are_on_their_way(config_dict: dict[str, Any]) -> None:
    """Race: submits keep coming while a STOP arrives; nothing reaches the handset after it."""
    config_dict["simulator"]["rules"].append(
        {"number": HANDSET, "outcome": "delivered", "latency": ["30ms", "120ms"]}
    )
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        finals = gateway.finals()
        stop_done = asyncio.Event()
        stopped_at: list[float] = []

        async def keep_sending() -> list[str]:
            codes = []
            for _ in range(40):
                codes.append(await submit_code(gateway))
                await asyncio.sleep(0)  # let the STOP interleave
            return codes

        async def say_stop() -> None:
            await asyncio.sleep(0.03)  # once some are on their way, not a wait for an event
            await inbound(gateway, "STOP")
            stopped_at.append(time.time())
            stop_done.set()

        senders = [asyncio.create_task(keep_sending()) for _ in range(5)]
        await say_stop()
        codes = [c for task in senders for c in await task]
        accepted = codes.count("accepted")
        assert "recipient_opted_out" in codes
        mine: list[Message] = []
        while len(mine) < accepted:  # the STOP confirmation ends too, as a system message
            message = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
            if message.interface == "http":
                mine.append(message)
        late = [
            m
            for m in mine
            if m.status == "delivered" and (m.final_at is None or m.final_at >= stopped_at[0])
        ]
        assert late == []
        stopped = [m for m in mine if m.status == "rejected"]
        assert stopped and {m.error for m in stopped} == {"opted_out"}
        _, inbox = await call(gateway, "GET", f"/v1/simulator/handsets/{HANDSET}/messages")
        delivered_after = [
            m
            for m in inbox["messages"]
            if m["body"] == "hello" and m["received_at"] > _iso(stopped_at[0])
        ]
        assert delivered_after == []


async def test_message_resumed_after_an_opt_out_is_not_delivered(
    config_dict: dict[str, Any], callback_receiver: CallbackReceiver
) -> None:
    """A restart forgets which subjects changed lately; the resumed message meets the gate."""
    config_dict["simulator"]["latency"] = ["1h", "1h"]  # still on its way at the stop
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        response = await gateway.send(to=HANDSET, callback_url=callback_receiver.url)
        assert response.status == 202
        message_id = (await response.json())["id"]
        await inbound(gateway, "STOP")
    config_dict["simulator"]["latency"] = ["1ms", "5ms"]
    async with running_gateway(config_from_dict(config_dict)):
        final = await callback_receiver.next()
    assert (final["id"], final["status"], final["error"]) == (
        message_id,
        "rejected",
        "recipient_opted_out",
    )


def _iso(timestamp: float) -> str:
    from gateway.documents import iso_time

    return str(iso_time(timestamp))


async def test_tenant_isolation(gateway: RunningGateway) -> None:
    await inbound(gateway, "STOP")
    await call(gateway, "PUT", f"/v1/consents/{HANDSET}", json={"purpose": "marketing"})
    _, mine = await call(gateway, "GET", f"/v1/consents/{HANDSET}")

    status, theirs = await call(gateway, "GET", f"/v1/consents/{HANDSET}", key=OTHER_KEY)
    assert status == 200
    assert theirs["subject"] != mine["subject"]
    assert (theirs["opted_out"], theirs["consents"], theirs["history"]) == (False, [], [])
    assert (await call(gateway, "GET", "/v1/consents", key=OTHER_KEY))[1]["subjects"] == []
    assert (await call(gateway, "GET", f"/v1/opt-outs/{HANDSET}", key=OTHER_KEY))[1][
        "opted_out"
    ] is False
    assert (await call(gateway, "GET", "/v1/audit", key=OTHER_KEY))[1]["entries"] == []

    # Another tenant's lifting and withdrawing change only its own records.
    await call(gateway, "DELETE", f"/v1/opt-outs/{HANDSET}", key=OTHER_KEY)
    await call(gateway, "DELETE", f"/v1/consents/{HANDSET}?purpose=marketing", key=OTHER_KEY)
    assert (await call(gateway, "GET", f"/v1/opt-outs/{HANDSET}"))[1]["opted_out"] is True
    assert len((await call(gateway, "GET", f"/v1/consents/{HANDSET}"))[1]["consents"]) == 1
    status, _ = await call(
        gateway, "POST", "/v1/opt-outs", key=OTHER_KEY, json={"msisdns": ["+46705550009"]}
    )
    assert status == 200
    assert await submit_code(gateway, to="+46705550009") == "accepted"
    assert len((await call(gateway, "GET", "/v1/audit", key=OTHER_KEY))[1]["entries"]) == 3
    for path in ("/v1/consents", f"/v1/opt-outs/{HANDSET}", "/v1/audit"):
        assert (await call(gateway, "GET", path, key="nobody-key"))[0] == 401


async def test_registry_and_audit_hold_no_number_in_clear(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    await inbound(gateway, "STOP")
    await call(gateway, "PUT", "/v1/consents/0705550123", json={"purpose": "marketing"})
    await call(gateway, "POST", "/v1/opt-outs", json={"msisdns": ["+46705550124"]})
    texts = [
        str(value)
        for table in ("consent_events", "audit_log", "audit_heads")
        for row in stored_rows(tmp_path / "smsgw.sqlite3", f"SELECT * FROM {table}")
        for value in row
    ]
    assert texts
    for number in ("701112233", "705550123", "705550124"):
        assert not any(number in text for text in texts)


@pytest.mark.parametrize(
    "evidence",
    ["called 070-111 22 33 to confirm", "reply from +44 20 7946 0958", "x" * 501],
    ids=["national", "international", "too long"],
)
async def test_evidence_with_a_phone_number_is_refused(
    gateway: RunningGateway, evidence: str
) -> None:
    """Evidence is stored verbatim: a number in it would escape pseudonymisation."""
    for method, path, document in [
        ("PUT", f"/v1/consents/{HANDSET}", {"purpose": "marketing", "evidence": evidence}),
        ("POST", "/v1/opt-outs", {"msisdns": [HANDSET], "evidence": evidence}),
    ]:
        status, problem = await call(gateway, method, path, json=document)
        assert (status, problem["code"]) == (400, "invalid_request")
        assert "'evidence'" in problem["detail"]
    status, state = await call(gateway, "GET", f"/v1/consents/{HANDSET}")
    assert (status, state["history"]) == (200, [])


async def test_evidence_without_personal_data_is_kept_as_written(gateway: RunningGateway) -> None:
    evidence = "web form 2026-11-29 #A17, checkbox v3"
    document = {"purpose": "marketing", "evidence": evidence}
    assert (await call(gateway, "PUT", f"/v1/consents/{HANDSET}", json=document))[0] == 200
    status, state = await call(gateway, "GET", f"/v1/consents/{HANDSET}")
    assert status == 200
    assert [event["evidence"] for event in state["history"]] == [evidence]


async def test_audit_chain_verifies_and_detects_tampering(
    gateway: RunningGateway,
    tmp_path: Path,
    config_dict: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    await inbound(gateway, "STOP")
    await inbound(gateway, "START")
    await call(gateway, "PUT", f"/v1/consents/{HANDSET}", json={"purpose": "marketing"})
    _, audit = await call(gateway, "GET", "/v1/audit")
    assert [e["action"] for e in audit["entries"]] == [
        "consent_given",
        "opt_out_lifted",
        "opted_out",
    ]
    assert {e["actor"] for e in audit["entries"]} == {"handset", "api:acme"}
    config_path = tmp_path / "config.toml"
    write_toml(config_path, config_dict)
    assert await asyncio.to_thread(main, ["audit", "verify", "--config", str(config_path)]) == 0
    assert "acme: ok (3 entries)" in capsys.readouterr().out

    database = tmp_path / "smsgw.sqlite3"
    stored_execute(
        database,
        "UPDATE audit_log SET action = 'consent_withdrawn' WHERE action = 'opt_out_lifted'",
    )
    assert await asyncio.to_thread(main, ["audit", "verify", "--config", str(config_path)]) == 1
    assert "acme: BROKEN at seq 2" in capsys.readouterr().out
    stored_execute(
        database,
        "UPDATE audit_log SET action = 'opt_out_lifted' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 3",
    )
    assert await asyncio.to_thread(main, ["audit", "verify", "--config", str(config_path)]) == 1
    assert "acme: BROKEN" in capsys.readouterr().out
