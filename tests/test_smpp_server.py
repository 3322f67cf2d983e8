"""The SMPP server driven by the real smpplib client (and raw sockets for abuse)."""

from __future__ import annotations

import asyncio
import struct
import threading
from typing import Any

import pytest
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp

from gateway.config import config_from_dict
from gateway.encoding import gsm7_decode, gsm7_encode
from smpp.bodies import SubmitMultiResp
from smpp.pdu import CommandId, CommandStatus, DistributionList, Pdu, SmeAddress, Tag
from tests.conftest import EVENT_TIMEOUT, CallbackReceiver, RunningGateway, running_gateway
from tests.smpp_clients import RawEsme, SmpplibEsme, smpplib_esme

C = CommandId
S = CommandStatus
INTERNATIONAL = smpplib.consts.SMPP_TON_INTL
ALPHANUMERIC = smpplib.consts.SMPP_TON_ALNUM
DELIVERY_RECEIPT = 0x04


def submit_fields(to: str = "46701234567", text: bytes = b"hello", **extra: Any) -> dict[str, Any]:
    return {
        "source_addr_ton": ALPHANUMERIC,
        "source_addr": "Acme",
        "dest_addr_ton": INTERNATIONAL,
        "dest_addr_npi": smpplib.consts.SMPP_NPI_ISDN,
        "destination_addr": to,
        "short_message": text,
        **extra,
    }


async def test_long_ucs2_message_receipts_query_and_cancel(gateway: RunningGateway) -> None:
    text = "Привет, это длинное сообщение! " * 6  # 186 UCS-2 characters: three parts
    parts, data_coding, esm_class = smpplib.gsm.make_parts(text)
    assert len(parts) == 3
    async with smpplib_esme(gateway.smpp_port) as esme:
        for part in parts:
            await esme.send(
                **submit_fields(
                    text=part, data_coding=data_coding, esm_class=esm_class, registered_delivery=1
                )
            )
        responses = [await esme.next("submit_sm_resp") for _ in parts]
        assert all(r.status == S.ESME_ROK for r in responses)
        ids = [r.message_id.decode() for r in responses]
        assert len(set(ids)) == 3

        receipts = [await esme.next("deliver_sm") for _ in parts]
        for receipt in receipts:
            assert receipt.esm_class == DELIVERY_RECEIPT
            assert b"stat:DELIVRD" in receipt.short_message
            assert receipt.receipted_message_id.decode() in ids
            assert receipt.short_message.startswith(
                f"id:{receipt.receipted_message_id.decode()}".encode()
            )
            assert receipt.message_state == 2
        assert {r.receipted_message_id.decode() for r in receipts} == set(ids)

        await esme.send(
            command="query_sm", message_id=ids[0], source_addr_ton=ALPHANUMERIC, source_addr="Acme"
        )
        query = await esme.next("query_sm_resp")
        assert (query.status, query.message_state) == (S.ESME_ROK, 2)

    # smpplib has no cancel_sm: a second session of the tenant sends it with our codec.
    raw = await RawEsme.connect(gateway.smpp_port)
    assert (await raw.bind()).command_status == S.ESME_ROK
    cancel = await raw.request(
        Pdu.make(
            C.cancel_sm, 2, message_id=ids[0], source_addr_ton=ALPHANUMERIC, source_addr="Acme"
        )
    )
    assert (cancel.command_id, cancel.command_status) == (C.cancel_sm_resp, S.ESME_RCANCELFAIL)
    await raw.close()

    status, inbox = await gateway.get_json("/v1/simulator/handsets/+46701234567/messages")
    assert status == 200
    [message] = inbox["messages"]
    assert message["body"] == text
    assert sorted(message["message_ids"]) == sorted(ids)
    assert message["parts_missing"] == 0


async def test_abuse_is_answered_and_other_sessions_keep_serving(gateway: RunningGateway) -> None:
    port = gateway.smpp_port
    async with smpplib_esme(port) as good:
        bad = SmpplibEsme(port)
        with pytest.raises(smpplib.exceptions.PDUError) as refused:
            await bad.bind(password="wrong")
        assert refused.value.args[1] == S.ESME_RINVPASWD
        bad.close()

        raw = await RawEsme.connect(port)
        submit = Pdu.make(C.submit_sm, 5, **submit_fields())
        answer = await raw.request(submit)
        assert (answer.command_id, answer.command_status) == (C.submit_sm_resp, S.ESME_RINVBNDSTS)
        assert (await raw.bind(system_id="nobody")).command_status == S.ESME_RINVSYSID
        assert (await raw.bind(sequence=2)).command_status == S.ESME_ROK
        again = await raw.bind(sequence=3)
        assert (again.command_id, again.command_status) == (C.bind_transceiver_resp, S.ESME_RALYBND)

        await raw.send_bytes(struct.pack(">IIII", 16, 0x00000077, 0, 9))
        nack = await raw.next()
        assert (nack.command_id, nack.command_status, nack.sequence_number) == (
            C.generic_nack,
            S.ESME_RINVCMDID,
            9,
        )
        # A submit_sm whose body stops in the middle of its mandatory fields.
        await raw.send_bytes(struct.pack(">IIII", 21, C.submit_sm, 0, 10) + b"\0\x01\x01ab")
        truncated = await raw.next()
        assert truncated.sequence_number == 10 and truncated.command_status != S.ESME_ROK
        assert (await raw.request(Pdu.make(C.enquire_link, 11))).command_id == C.enquire_link_resp
        await raw.close()

        for garbage in (
            struct.pack(">IIII", 2**31, C.submit_sm, 0, 7),  # a command_length of 2 GB
            b"\xff\xfe" + bytes(range(62)),
        ):
            raw = await RawEsme.connect(port)
            await raw.send_bytes(garbage)
            nack = await raw.next()
            assert (nack.command_id, nack.command_status) == (C.generic_nack, S.ESME_RINVCMDLEN)
            assert await raw.closed_by_peer()
            await raw.close()

        await good.send(**submit_fields())
        assert (await good.next("submit_sm_resp")).status == S.ESME_ROK


async def test_receipt_is_kept_until_a_receiver_binds_even_across_restarts(
    config_dict: dict[str, Any],
) -> None:
    config = config_from_dict(config_dict)
    async with running_gateway(config) as gateway:
        finals = gateway.finals()
        async with smpplib_esme(gateway.smpp_port, kind="transmitter") as transmitter:
            await transmitter.send(**submit_fields(registered_delivery=1))
            message_id = (await transmitter.next("submit_sm_resp")).message_id.decode()
        final = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
        assert (final.id, final.status) == (message_id, "delivered")

    async with (
        running_gateway(config) as gateway,
        smpplib_esme(gateway.smpp_port, kind="receiver") as receiver,
    ):
        receipt = await receiver.next("deliver_sm")
        assert receipt.receipted_message_id.decode() == message_id
        assert b"stat:DELIVRD" in receipt.short_message


async def test_ten_thousand_submits_with_a_window_of_fifty(gateway: RunningGateway) -> None:
    count = 10_000
    async with smpplib_esme(gateway.smpp_port) as esme:
        esme.window = threading.Semaphore(50)

        def blast() -> None:
            assert esme.window is not None
            for i in range(count):
                if not esme.window.acquire(timeout=EVENT_TIMEOUT):
                    raise TimeoutError(f"no submit_sm_resp within the window after {i}")
                pdu = smpplib.smpp.make_pdu(
                    "submit_sm",
                    client=esme.client,
                    **submit_fields(to=f"4670{i:07d}", registered_delivery=1),
                )
                esme.client.send_pdu(pdu)

        sender = asyncio.create_task(asyncio.to_thread(blast))
        ids: set[str] = set()
        receipted: set[str] = set()
        while len(ids) < count or len(receipted) < count:
            pdu = await esme.next()
            if pdu.command == "submit_sm_resp":
                assert pdu.status == S.ESME_ROK
                ids.add(pdu.message_id.decode())
            elif pdu.command == "deliver_sm":
                receipted.add(pdu.receipted_message_id.decode())
        await sender
    assert len(ids) == count
    assert receipted == ids


async def test_mobile_originated_reaches_receivers_now_and_later(
    gateway: RunningGateway,
) -> None:
    async def inbound(body: str) -> dict[str, Any]:
        async with gateway.http.post(
            f"{gateway.url}/v1/simulator/inbound",
            json={"from": "+46701112233", "to": "+46700000001", "body": body},
            headers=gateway.headers,
        ) as response:
            assert response.status == 202
            return dict(await response.json())

    async with smpplib_esme(gateway.smpp_port, kind="receiver") as receiver:
        sent = await inbound("Hej då")
        mo = await receiver.next("deliver_sm")
        assert (mo.esm_class, mo.data_coding) == (0, 0)
        assert mo.source_addr.decode() == "46701112233"
        assert mo.destination_addr.decode() == "46700000001"
        assert gsm7_decode(mo.short_message) == "Hej då"
        assert sent["from"] == "+46701112233"

    await inbound("Привет")
    async with smpplib_esme(gateway.smpp_port, kind="receiver") as receiver:
        # Delivery is at least once: "Hej då" comes again if its deliver_sm_resp was
        # still on its way when the first receiver went.
        while (mo := await receiver.next("deliver_sm")).data_coding != 8:
            assert gsm7_decode(mo.short_message) == "Hej då"
        assert mo.short_message.decode("utf-16-be") == "Привет"

    async with gateway.http.post(
        f"{gateway.url}/v1/simulator/inbound",
        json={"from": "+46701112233", "to": "NotOurs", "body": "x"},
        headers=gateway.headers,
    ) as response:
        assert (response.status, (await response.json())["code"]) == (400, "unknown_sender")


async def test_mobile_originated_webhook(
    config_dict: dict[str, Any], callback_receiver: CallbackReceiver
) -> None:
    config_dict["tenants"][0]["mo_url"] = callback_receiver.url
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        async with gateway.http.post(
            f"{gateway.url}/v1/simulator/inbound",
            json={"from": "0701112233", "to": "+46700000001", "body": "STOP"},
            headers=gateway.headers,
        ) as response:
            assert response.status == 202
        hook = await callback_receiver.next()
        assert (hook["from"], hook["to"], hook["body"]) == ("+46701112233", "+46700000001", "STOP")


async def test_submit_multi_refuses_only_the_bad_destinations(gateway: RunningGateway) -> None:
    raw = await RawEsme.connect(gateway.smpp_port)
    await raw.bind()
    fields = submit_fields()
    for name in ("dest_addr_ton", "dest_addr_npi", "destination_addr"):
        fields.pop(name)
    answer = await raw.request(
        Pdu.make(
            C.submit_multi,
            2,
            dest_address=(
                SmeAddress(1, 1, "46701234567"),
                SmeAddress(1, 1, "12"),
                DistributionList("friends"),
            ),
            **fields,
        )
    )
    assert (answer.command_id, answer.command_status) == (C.submit_multi_resp, S.ESME_ROK)
    assert answer.params["message_id"]
    refused = {
        (u.destination_addr, u.error_status_code)
        for u in answer.body(SubmitMultiResp)["unsuccess_sme"]
    }
    assert refused == {("12", S.ESME_RINVDSTADR), ("friends", S.ESME_RINVDLNAME)}
    await raw.close()


async def test_every_submit_multi_receipt_carries_its_response_id(
    gateway: RunningGateway,
) -> None:
    """One id for the submit_multi: each destination's receipt and query_sm answer to it."""
    fields = submit_fields(registered_delivery=1)
    for name in ("dest_addr_ton", "dest_addr_npi", "destination_addr"):
        fields.pop(name)
    destinations = ("46701230101", "46701230102", "46709990103")  # the last: undeliverable
    finals = gateway.finals()
    raw = await RawEsme.connect(gateway.smpp_port)
    await raw.bind()
    answer = await raw.request(
        Pdu.make(
            C.submit_multi,
            2,
            dest_address=tuple(SmeAddress(1, 1, d) for d in destinations),
            **fields,
        )
    )
    assert answer.command_status == S.ESME_ROK
    submission = answer.params["message_id"]
    assert isinstance(submission, str) and submission
    receipts = [await raw.next() for _ in destinations]
    for receipt in receipts:
        assert receipt.command_id == C.deliver_sm
        await raw.send(Pdu.make(C.deliver_sm_resp, receipt.sequence_number, message_id=""))
    by_handset = {r.params["source_addr"]: r for r in receipts}
    assert set(by_handset) == set(destinations)
    for handset, receipt in by_handset.items():
        text = receipt.params["short_message"]
        assert isinstance(text, bytes) and isinstance(handset, str)
        assert receipt.tlvs[Tag.receipted_message_id] == submission
        assert text.startswith(f"id:{submission} ".encode())
        assert (b"stat:UNDELIV" if handset.startswith("4670999") else b"stat:DELIVRD") in text
    for _ in destinations:
        await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    query = await raw.request(
        Pdu.make(C.query_sm, 3, message_id=submission, source_addr_ton=5, source_addr="Acme")
    )
    # The whole submission: one destination failed, so the answer is its state.
    assert (query.command_status, query.params["message_id"]) == (S.ESME_ROK, submission)
    assert query.params["message_state"] == 5
    await raw.close()


async def test_simulated_submit_failures(config_dict: dict[str, Any]) -> None:
    rules = [
        {"number": "+46709970001", "submit_error": "throttled"},
        {"number": "+46709970002", "submit_error": "queue_full"},
        {"number": "+46709970003", "submit_error": "system_error"},
        {"number": "+46709970004", "submit_error": "no_response"},
    ]
    config_dict["simulator"]["rules"] += rules
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        raw = await RawEsme.connect(gateway.smpp_port)
        await raw.bind()
        for sequence, status in ((2, S.ESME_RTHROTTLED), (3, S.ESME_RMSGQFUL), (4, S.ESME_RSYSERR)):
            answer = await raw.request(
                Pdu.make(C.submit_sm, sequence, **submit_fields(to=f"4670997000{sequence - 1}"))
            )
            assert (answer.sequence_number, answer.command_status) == (sequence, status)
        await raw.send(Pdu.make(C.submit_sm, 5, **submit_fields(to="46709970004")))
        # No answer to 5: the next PDU to arrive is the answer to 6.
        assert (await raw.request(Pdu.make(C.enquire_link, 6))).sequence_number == 6
        await raw.close()
        response = await gateway.send(to="+46709970001")
        assert (response.status, (await response.json())["code"]) == (429, "throttled")


async def test_tenant_limits_sessions_and_rate(config_dict: dict[str, Any]) -> None:
    config_dict["tenants"][0]["smpp"].update({"max_sessions": 1, "max_submit_rate": 5})
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        first = await RawEsme.connect(gateway.smpp_port)
        assert (await first.bind()).command_status == S.ESME_ROK
        second = await RawEsme.connect(gateway.smpp_port)
        assert (await second.bind()).command_status == S.ESME_RBINDFAIL
        await second.close()
        for sequence in range(2, 22):
            await first.send(Pdu.make(C.submit_sm, sequence, **submit_fields()))
        statuses = [(await first.next()).command_status for _ in range(20)]
        assert S.ESME_RTHROTTLED in statuses and S.ESME_ROK in statuses
        await first.close()


async def test_idle_and_silent_peers_are_closed(config_dict: dict[str, Any]) -> None:
    config_dict["smpp"].update(
        {"bind_timeout": "200ms", "enquire_link_interval": "100ms", "response_timeout": "200ms"}
    )
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        never_binds = await RawEsme.connect(gateway.smpp_port)
        assert await never_binds.closed_by_peer()
        silent = await RawEsme.connect(gateway.smpp_port)
        await silent.bind()
        assert (await silent.next()).command_id == C.enquire_link
        assert await silent.closed_by_peer()
        await never_binds.close()
        await silent.close()


async def test_addresses_and_data_codings(gateway: RunningGateway) -> None:
    raw = await RawEsme.connect(gateway.smpp_port)
    await raw.bind()
    cases = [
        (2, "0701230001", 3, "café".encode("latin-1"), "café"),  # national number, Latin-1
        (1, "46701230002", 0, gsm7_encode("€5 {ok}"), "€5 {ok}"),  # GSM 03.38 extension
        (1, "46701230003", 8, "日本".encode("utf-16-be"), "日本"),
    ]
    finals = gateway.finals()
    for sequence, (ton, to, coding, data, _) in enumerate(cases, start=2):
        fields = submit_fields(to=to, text=data, data_coding=coding, dest_addr_ton=ton)
        answer = await raw.request(Pdu.make(C.submit_sm, sequence, **fields))
        assert answer.command_status == S.ESME_ROK
    for _ in cases:
        await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    for ton, to, _, _, text in cases:
        e164 = "+46" + to[1:] if ton == 2 else "+" + to
        _, inbox = await gateway.get_json(f"/v1/simulator/handsets/{e164}/messages")
        assert [m["body"] for m in inbox["messages"]] == [text]
    bad = await raw.request(Pdu.make(C.submit_sm, 9, **submit_fields(data_coding=0x05)))
    assert bad.command_status == S.ESME_RSUBMITFAIL
    await raw.close()


async def test_replace_before_delivery_and_cancel(config_dict: dict[str, Any]) -> None:
    config_dict["simulator"]["rules"].append(
        {"prefix": "+46709960", "outcome": "delivered", "latency": ["300ms", "300ms"]}
    )
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        finals = gateway.finals()
        raw = await RawEsme.connect(gateway.smpp_port)
        await raw.bind()
        first = await raw.request(Pdu.make(C.submit_sm, 2, **submit_fields(to="46709960001")))
        second = await raw.request(Pdu.make(C.submit_sm, 3, **submit_fields(to="46709960002")))
        replaced = await raw.request(
            Pdu.make(
                C.replace_sm,
                4,
                message_id=first.params["message_id"],
                source_addr="Acme",
                short_message=b"new text",
            )
        )
        assert replaced.command_status == S.ESME_ROK
        cancelled = await raw.request(
            Pdu.make(C.cancel_sm, 5, message_id=second.params["message_id"], source_addr="Acme")
        )
        assert cancelled.command_status == S.ESME_ROK
        outcomes = {}
        for _ in range(2):
            message = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
            outcomes[message.id] = message.status
        assert outcomes == {
            first.params["message_id"]: "delivered",
            second.params["message_id"]: "deleted",
        }
        _, inbox = await gateway.get_json("/v1/simulator/handsets/+46709960001/messages")
        assert [m["body"] for m in inbox["messages"]] == ["new text"]
        other = await RawEsme.connect(gateway.smpp_port)
        await other.bind(system_id="other", password="other-pw")
        foreign = await other.request(
            Pdu.make(C.query_sm, 2, message_id=first.params["message_id"], source_addr="Acme")
        )
        assert foreign.command_status == S.ESME_RQUERYFAIL
        await other.close()
        await raw.close()


async def test_receipt_only_on_failure_when_asked(gateway: RunningGateway) -> None:
    finals = gateway.finals()
    async with smpplib_esme(gateway.smpp_port) as esme:
        await esme.send(**submit_fields(to="46701234567", registered_delivery=2))
        await esme.send(**submit_fields(to="46709990001", registered_delivery=2))
        for _ in range(2):
            await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
        await esme.send(command="query_sm", message_id="0", source_addr="Acme")
        seen = []
        while (pdu := await esme.next()).command != "query_sm_resp":
            seen.append(pdu)
        receipts = [p for p in seen if p.command == "deliver_sm"]
        assert len(receipts) == 1
        assert b"stat:UNDELIV" in receipts[0].short_message
        assert receipts[0].message_state == 5


async def test_smpp_metrics(gateway: RunningGateway) -> None:
    async with smpplib_esme(gateway.smpp_port) as esme:
        await esme.send(**submit_fields())
        await esme.next("submit_sm_resp")
        metrics = await (await gateway.http.get(f"{gateway.url}/metrics")).text()
    assert 'smsgw_smpp_sessions{bind_type="transceiver",tenant="acme"} 1.0' in metrics
    assert (
        'smsgw_smpp_pdus_total{command="submit_sm_resp",direction="out",status="ESME_ROK"} 1.0'
        in metrics
    )
    assert 'smsgw_messages_total{interface="smpp",outcome="accepted",tenant="acme"} 1.0' in metrics
    assert "46701234567" not in metrics


async def test_sar_payload_16bit_udh_and_service_type(gateway: RunningGateway) -> None:
    raw = await RawEsme.connect(gateway.smpp_port)
    await raw.bind()
    finals = gateway.finals()
    sar = [
        Pdu.make(
            C.submit_sm,
            2 + i,
            tlvs={
                Tag.sar_msg_ref_num: 77,
                Tag.sar_total_segments: 2,
                Tag.sar_segment_seqnum: i + 1,
            },
            **submit_fields(to="46701230010", text=text),
        )
        for i, text in enumerate((b"first half, ", b"second half"))
    ]
    udh16 = [
        Pdu.make(
            C.submit_sm,
            4 + i,
            **submit_fields(
                to="46701230011",
                esm_class=0x40,
                text=bytes([6, 8, 4, 0x12, 0x34, 2, i + 1]) + text,
            ),
        )
        for i, text in enumerate((b"sixteen ", b"bit ref"))
    ]
    payload = Pdu.make(
        C.submit_sm,
        6,
        tlvs={Tag.message_payload: b"p" * 300},
        **submit_fields(to="46701230012", text=b"", service_type="MKT"),
    )
    async with gateway.http.put(
        f"{gateway.url}/v1/consents/+46701230012",
        json={"purpose": "marketing"},
        headers=gateway.headers,
    ) as response:
        assert response.status == 200
    for pdu in (*sar, *udh16, payload):
        assert (await raw.request(pdu)).command_status == S.ESME_ROK
    for _ in range(5):
        await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    for number, body in (
        ("+46701230010", "first half, second half"),
        ("+46701230011", "sixteen bit ref"),
        ("+46701230012", "p" * 300),
    ):
        _, inbox = await gateway.get_json(f"/v1/simulator/handsets/{number}/messages")
        assert [(m["body"], m["parts_missing"]) for m in inbox["messages"]] == [(body, 0)]
    _, listing = await gateway.get_json("/v1/messages?to=%2B46701230012")
    assert [(m["purpose"], m["segments"]) for m in listing["messages"]] == [("marketing", 2)]
    unknown = await raw.request(Pdu.make(C.submit_sm, 7, **submit_fields(service_type="XYZ")))
    assert unknown.command_status == S.ESME_RINVSERTYP
    await raw.close()


async def test_cancel_is_answered_after_its_commit(config_dict: dict[str, Any]) -> None:
    config_dict["simulator"]["rules"].append({"prefix": "+46709950", "latency": ["1h", "1h"]})
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        raw = await RawEsme.connect(gateway.smpp_port)
        await raw.bind()
        for i in range(30):
            sequence = 2 + 3 * i
            submit = Pdu.make(C.submit_sm, sequence, **submit_fields(to=f"467099500{i:02d}"))
            message_id = (await raw.request(submit)).params["message_id"]
            cancel = Pdu.make(C.cancel_sm, sequence + 1, message_id=message_id, source_addr="Acme")
            assert (await raw.request(cancel)).command_status == S.ESME_ROK
            query = Pdu.make(C.query_sm, sequence + 2, message_id=message_id, source_addr="Acme")
            assert (await raw.request(query)).params["message_state"] == 4  # DELETED
        await raw.close()


async def test_concatenation_and_gsm_octets_are_checked(gateway: RunningGateway) -> None:
    raw = await RawEsme.connect(gateway.smpp_port)
    await raw.bind()
    for sequence, (ref, seq, total) in enumerate(((7, 0, 0), (7, 0, 2), (7, 3, 2)), start=2):
        sar: dict[int, object] = {
            Tag.sar_msg_ref_num: ref,
            Tag.sar_segment_seqnum: seq,
            Tag.sar_total_segments: total,
        }
        answer = await raw.request(Pdu.make(C.submit_sm, sequence, tlvs=sar, **submit_fields()))
        assert answer.command_status == S.ESME_RINVOPTPARAMVAL
        # The same part numbers in a user data header are refused too.
        udh = bytes([5, 0, 3, ref, total, seq])
        answer = await raw.request(
            Pdu.make(C.submit_sm, sequence, **submit_fields(esm_class=0x40, text=udh + b"x"))
        )
        assert answer.command_status == S.ESME_RINVESMCLASS
    for coding in (0x00, 0xF0):
        high = Pdu.make(C.submit_sm, 9, **submit_fields(text=b"caf\xe9", data_coding=coding))
        assert (await raw.request(high)).command_status == S.ESME_RSUBMITFAIL
    await raw.close()
