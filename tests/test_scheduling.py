"""Scheduled and expiring messages over real sockets: SMPP (smpplib, our codec) and HTTP.

Each test awaits the event it needs (the event stream, a receipt, a final state)
with a timeout; schedules are a second or two ahead, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.config import config_from_dict
from gateway.logs import FIELDS
from smpp.pdu import CommandId, CommandStatus, Pdu, SmeAddress, Tag
from smpp.times import RelativeTime, absolute_time, relative_time
from tests.conftest import (
    EVENT_TIMEOUT,
    OTHER_KEY,
    CallbackReceiver,
    ManualClock,
    RunningGateway,
    base_config,
    running_gateway,
)
from tests.smpp_clients import RawEsme, smpplib_esme
from tests.sse import open_stream
from tests.test_smpp_server import submit_fields

C = CommandId
S = CommandStatus
SLOW = "4670997"  # a rule delivers these after 5 s
INBOX = "/v1/simulator/handsets/+{}/messages"


def scheduling_config(tmp_path: Path, **messages: Any) -> dict[str, Any]:
    config = base_config(tmp_path)
    config["simulator"]["rules"].append(
        {"prefix": f"+{SLOW}", "outcome": "delivered", "latency": ["5s", "5s"]}
    )
    config["messages"] = messages
    return config


def seconds_ahead(seconds: float) -> str:
    return relative_time(RelativeTime(seconds=int(seconds)))


def hour_ahead() -> str:
    """An absolute time an hour ahead, written one hour ahead of UTC (as a CET SMSC would)."""
    return absolute_time(datetime.now(UTC) + timedelta(hours=1), 4)


def moment(document: dict[str, Any], name: str) -> datetime:
    return datetime.fromisoformat(document[name])


async def inbox(gateway: RunningGateway, number: str) -> list[str]:
    status, document = await gateway.get_json(INBOX.format(number))
    assert status == 200
    return [m["body"] for m in document["messages"]]


async def test_a_scheduled_message_reaches_the_handset_only_at_its_time(tmp_path: Path) -> None:
    async with (
        running_gateway(config_from_dict(scheduling_config(tmp_path))) as gateway,
        open_stream(gateway) as stream,
        smpplib_esme(gateway.smpp_port) as esme,
    ):
        await esme.send(
            **submit_fields(
                to="46701230001",
                text=b"at its time",
                registered_delivery=1,
                schedule_delivery_time=seconds_ahead(2),
            )
        )
        answer = await esme.next("submit_sm_resp")
        assert answer.status == S.ESME_ROK
        message_id = answer.message_id.decode()

        status, document = await gateway.get_json(f"/v1/messages/{message_id}")
        assert (status, document["status"]) == (200, "scheduled")
        assert moment(document, "send_at") > moment(document, "submitted_at")
        assert moment(document, "expires_at") > moment(document, "send_at")
        assert await inbox(gateway, "46701230001") == []
        await esme.send(command="query_sm", message_id=message_id, source_addr="Acme")
        query = await esme.next("query_sm_resp")
        assert (query.status, query.message_state) == (S.ESME_ROK, 1)  # ENROUTE for 3.4

        accepted = await stream.until("message.accepted", message_id=message_id)
        assert accepted[-1].data["status"] == "scheduled"
        await stream.until("handset.received", message_ids=[message_id])
        assert await inbox(gateway, "46701230001") == ["at its time"]
        receipt = await esme.next("deliver_sm")
        assert b"stat:DELIVRD" in receipt.short_message


async def test_validity_shorter_than_the_latency_ends_expired(tmp_path: Path) -> None:
    """A rule's 5 s latency with a 2 s validity ends EXPIRED when the validity ends."""
    async with (
        running_gateway(config_from_dict(scheduling_config(tmp_path))) as gateway,
        smpplib_esme(gateway.smpp_port) as esme,
    ):
        finals = gateway.finals()
        await esme.send(
            **submit_fields(to=f"{SLOW}01", registered_delivery=1, validity_period=seconds_ahead(2))
        )
        answer = await esme.next("submit_sm_resp")
        assert answer.status == S.ESME_ROK
        message_id = answer.message_id.decode()
        receipt = await esme.next("deliver_sm")
        assert b"stat:EXPIRED" in receipt.short_message
        assert receipt.message_state == 3
        assert receipt.receipted_message_id.decode() == message_id
        final = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
        assert (final.id, final.status, final.error) == (
            message_id,
            "expired",
            "validity_period_expired",
        )
        assert final.expires_at is not None and final.final_at is not None
        # Ended by its validity, not after the rule's latency.
        assert final.expires_at <= final.final_at < final.submitted_at + 5
        assert await inbox(gateway, f"{SLOW}01") == []


async def test_data_sm_validity_is_its_time_to_live(tmp_path: Path) -> None:
    async with running_gateway(config_from_dict(scheduling_config(tmp_path))) as gateway:
        finals = gateway.finals()
        raw = await RawEsme.connect(gateway.smpp_port)
        await raw.bind()
        fields = submit_fields(to=f"{SLOW}02")
        del fields["short_message"]  # data_sm has none: its text is in message_payload
        tlvs: dict[int, object] = {Tag.message_payload: b"short-lived", Tag.qos_time_to_live: 1}
        answer = await raw.request(Pdu.make(C.data_sm, 2, tlvs=tlvs, **fields))
        assert answer.command_status == S.ESME_ROK
        final = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
        assert (final.id, final.status) == (answer.params["message_id"], "expired")
        await raw.close()


async def test_malformed_and_impossible_times_are_refused_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="smpp.server")
    past = absolute_time(datetime.now(UTC) - timedelta(minutes=5))
    cases: list[tuple[dict[str, Any], int]] = [
        ({"schedule_delivery_time": "2612011200000"}, S.ESME_RINVSCHED),
        ({"schedule_delivery_time": "261301120000000+"}, S.ESME_RINVSCHED),
        ({"validity_period": "000000000002100R"}, S.ESME_RINVEXPIRY),
        ({"validity_period": past}, S.ESME_RINVEXPIRY),
        # The validity ends before the schedule: refused, never held to expire.
        (
            {"schedule_delivery_time": hour_ahead(), "validity_period": seconds_ahead(60)},
            S.ESME_RINVEXPIRY,
        ),
    ]
    async with running_gateway(config_from_dict(scheduling_config(tmp_path))) as gateway:
        finals = gateway.finals()
        raw = await RawEsme.connect(gateway.smpp_port)
        await raw.bind()
        for sequence, (times, expected) in enumerate(cases, start=2):
            answer = await raw.request(Pdu.make(C.submit_sm, sequence, **submit_fields(**times)))
            assert answer.command_status == expected, times
        # A schedule in the past sends at once.
        at_once = await raw.request(
            Pdu.make(C.submit_sm, 20, **submit_fields(schedule_delivery_time=past))
        )
        assert at_once.command_status == S.ESME_ROK
        final = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
        assert (final.id, final.status) == (at_once.params["message_id"], "delivered")
        await raw.close()
        async with gateway.http.get(f"{gateway.url}/metrics") as response:
            metrics = await response.text()
    for status, count in (("ESME_RINVSCHED", 2), ("ESME_RINVEXPIRY", 3)):
        line = (
            f'smsgw_smpp_pdus_total{{command="submit_sm_resp",direction="out",status="{status}"}}'
        )
        assert f"{line} {count}.0" in metrics
    logged = [
        getattr(r, FIELDS)["status"] for r in caplog.records if r.getMessage() == "smpp.refused"
    ]
    assert sorted(logged) == ["ESME_RINVEXPIRY"] * 3 + ["ESME_RINVSCHED"] * 2


async def test_cancel_and_replace_a_scheduled_message(tmp_path: Path) -> None:
    async with running_gateway(config_from_dict(scheduling_config(tmp_path))) as gateway:
        finals = gateway.finals()
        raw = await RawEsme.connect(gateway.smpp_port)
        await raw.bind()
        later: dict[str, Any] = {"schedule_delivery_time": hour_ahead()}
        first = await raw.request(
            Pdu.make(C.submit_sm, 2, **submit_fields(to="46701230011", **later))
        )
        second = await raw.request(
            Pdu.make(C.submit_sm, 3, **submit_fields(to="46701230012", text=b"old", **later))
        )
        cancelled_id, replaced_id = first.params["message_id"], second.params["message_id"]

        cancel = await raw.request(
            Pdu.make(C.cancel_sm, 4, message_id=cancelled_id, source_addr="Acme")
        )
        assert cancel.command_status == S.ESME_ROK
        final = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
        assert (final.id, final.status) == (cancelled_id, "deleted")

        expired = absolute_time(datetime.now(UTC) - timedelta(minutes=1))
        refused = await raw.request(
            Pdu.make(C.replace_sm, 5, message_id=replaced_id, validity_period=expired)
        )
        assert refused.command_status == S.ESME_RINVEXPIRY
        _, before = await gateway.get_json(f"/v1/messages/{replaced_id}")
        async with open_stream(gateway) as stream:
            replaced = await raw.request(
                Pdu.make(
                    C.replace_sm,
                    6,
                    message_id=replaced_id,
                    source_addr="Acme",
                    short_message=b"new",
                    schedule_delivery_time=seconds_ahead(1),
                )
            )
            assert replaced.command_status == S.ESME_ROK
            _, moved = await gateway.get_json(f"/v1/messages/{replaced_id}")
            assert moment(moved, "send_at") < moment(before, "send_at")
            # The validity keeps its length: it moved with the schedule.
            assert moment(moved, "expires_at") - moment(moved, "send_at") == moment(
                before, "expires_at"
            ) - moment(before, "send_at")
            await stream.until("handset.received", message_ids=[replaced_id])
        assert await inbox(gateway, "46701230012") == ["new"]
        assert await inbox(gateway, "46701230011") == []

        # Once on its way, a message's schedule can no longer change.
        slow = await raw.request(Pdu.make(C.submit_sm, 7, **submit_fields(to=f"{SLOW}03")))
        too_late = await raw.request(
            Pdu.make(
                C.replace_sm,
                8,
                message_id=slow.params["message_id"],
                short_message=b"x",
                schedule_delivery_time=seconds_ahead(60),
            )
        )
        assert too_late.command_status == S.ESME_RREPLACEFAIL
        await raw.close()


async def test_submit_multi_schedules_every_destination(tmp_path: Path) -> None:
    fields = submit_fields(schedule_delivery_time=hour_ahead())
    for name in ("dest_addr_ton", "dest_addr_npi", "destination_addr"):
        fields.pop(name)
    async with running_gateway(config_from_dict(scheduling_config(tmp_path))) as gateway:
        raw = await RawEsme.connect(gateway.smpp_port)
        await raw.bind()
        destinations = ("46701230021", "46701230022")
        answer = await raw.request(
            Pdu.make(
                C.submit_multi,
                2,
                dest_address=tuple(SmeAddress(1, 1, d) for d in destinations),
                **fields,
            )
        )
        assert answer.command_status == S.ESME_ROK
        _, listed = await gateway.get_json("/v1/messages?status=scheduled")
        assert sorted(m["to"] for m in listed["messages"]) == [f"+{d}" for d in destinations]
        await raw.close()


async def test_http_send_at_validity_and_cancel(tmp_path: Path) -> None:
    config = config_from_dict(scheduling_config(tmp_path, max_validity="1h"))
    async with running_gateway(config) as gateway:
        soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        async with open_stream(gateway) as stream:
            response = await gateway.send(to="+46701230031", send_at=soon, validity=60)
            assert response.status == 202
            document = await response.json()
            assert document["status"] == "scheduled"
            assert moment(document, "send_at") == datetime.fromisoformat(soon).replace(
                microsecond=datetime.fromisoformat(soon).microsecond // 1000 * 1000
            )
            assert moment(document, "expires_at") - moment(document, "send_at") == timedelta(
                seconds=60
            )
            assert await inbox(gateway, "46701230031") == []
            await stream.until("handset.received", message_ids=[document["id"]])
        assert await inbox(gateway, "46701230031") == ["hello"]

        # No validity: messages.max_validity; a longer one is capped at it.
        for validity in (None, 7200):
            response = await gateway.send(validity=validity)
            document = await response.json()
            lasting = moment(document, "expires_at") - moment(document, "submitted_at")
            assert lasting == timedelta(hours=1)

        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        document = await (await gateway.send(to="+46701230032", send_at=later)).json()
        cancel_url = f"{gateway.url}/v1/messages/{document['id']}/cancel"
        async with gateway.http.post(cancel_url, headers=gateway.headers) as response:
            assert response.status == 200
            assert (await response.json())["status"] == "deleted"
        async with gateway.http.post(cancel_url, headers=gateway.headers) as response:
            assert (response.status, (await response.json())["code"]) == (409, "not_pending")
        other = {"Authorization": f"Bearer {OTHER_KEY}"}
        async with gateway.http.post(cancel_url, headers=other) as response:
            assert response.status == 404
        assert await inbox(gateway, "46701230032") == []


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"send_at": "tomorrow"}, "invalid_send_at"),
        ({"send_at": "2026-12-01T15:00:00"}, "invalid_send_at"),  # no zone
        ({"send_at": 1764601200}, "invalid_send_at"),
        ({"validity": "60"}, "invalid_validity"),
        ({"validity": 0}, "invalid_validity"),
        ({"validity": True}, "invalid_validity"),
        ({"validity": 1.5}, "invalid_validity"),
        ({"send_at": "2030-01-01T00:00:00Z", "validity": None}, None),
    ],
)
async def test_http_malformed_times(
    gateway: RunningGateway, fields: dict[str, Any], code: str | None
) -> None:
    response = await gateway.send(**fields)
    document = await response.json()
    if code is None:
        assert (response.status, document["status"]) == (202, "scheduled")
        return
    assert (response.status, document["code"]) == (400, code)
    async with gateway.http.post(
        f"{gateway.url}/v1/messages/batch",
        json={"messages": [{"to": "+46701234567", "from": "Acme", "body": "x", **fields}]},
        headers=gateway.headers,
    ) as batch:
        [item] = (await batch.json())["results"]
    assert item["problem"]["code"] == code


async def test_scheduled_messages_are_bounded_per_tenant(tmp_path: Path) -> None:
    config = config_from_dict(scheduling_config(tmp_path, max_scheduled=2))
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    async with running_gateway(config) as gateway:
        ids = [(await (await gateway.send(send_at=later)).json())["id"] for _ in range(2)]
        response = await gateway.send(send_at=later)
        assert (response.status, (await response.json())["code"]) == (429, "too_many_scheduled")
        raw = await RawEsme.connect(gateway.smpp_port)
        await raw.bind()
        refused = await raw.request(
            Pdu.make(C.submit_sm, 2, **submit_fields(schedule_delivery_time=hour_ahead()))
        )
        assert refused.command_status == S.ESME_RMSGQFUL
        unscheduled = await raw.request(Pdu.make(C.submit_sm, 3, **submit_fields()))
        assert unscheduled.command_status == S.ESME_ROK
        await raw.close()
        # Another tenant's room is its own.
        other = {"Authorization": f"Bearer {OTHER_KEY}"}
        document = {"to": "+46701234567", "from": "Other", "body": "x", "send_at": later}
        async with gateway.http.post(
            f"{gateway.url}/v1/messages", json=document, headers=other
        ) as response:
            assert response.status == 202
        # A cancel makes room again.
        cancel_url = f"{gateway.url}/v1/messages/{ids[0]}/cancel"
        async with gateway.http.post(cancel_url, headers=gateway.headers) as response:
            assert response.status == 200
        assert (await gateway.send(send_at=later)).status == 202
        async with gateway.http.get(f"{gateway.url}/metrics") as response:
            assert "smsgw_messages_scheduled 3.0" in await response.text()


async def test_an_opt_out_long_after_the_submit_still_stops_a_scheduled_message(
    tmp_path: Path,
) -> None:
    """The gates are asked again when its time comes, not only the network's memory of
    recent changes (which lasts as long as a message can be on its way, here a minute)."""
    clock = ManualClock(time.time())
    async with running_gateway(config_from_dict(scheduling_config(tmp_path)), clock) as gateway:
        finals = gateway.finals()

        def at(seconds: float) -> str:
            return datetime.fromtimestamp(clock.now + seconds, UTC).isoformat()

        async def opt_out(number: str) -> None:
            async with gateway.http.post(
                f"{gateway.url}/v1/opt-outs", json={"msisdns": [number]}, headers=gateway.headers
            ) as response:
                assert response.status == 200

        stopped = await (await gateway.send(to="+46701230041", send_at=at(3600))).json()
        await opt_out("+46701230041")
        clock.advance(3700)
        await opt_out("+46701230042")  # a later change: the network forgets the first
        # The gateway's timer runs on the loop's clock, not this one: move the message to
        # "now" so that it comes up at once.
        raw = await RawEsme.connect(gateway.smpp_port)
        await raw.bind()
        now = relative_time(RelativeTime())
        replace = Pdu.make(
            C.replace_sm,
            2,
            message_id=stopped["id"],
            short_message=b"x",
            schedule_delivery_time=now,
        )
        assert (await raw.request(replace)).command_status == S.ESME_ROK
        await raw.close()
        final = await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
        assert (final.id, final.status, final.error) == (
            stopped["id"],
            "rejected",
            "recipient_opted_out",
        )
        assert await inbox(gateway, "46701230041") == []


async def force(gateway: RunningGateway, message_id: str, outcome: str) -> dict[str, Any]:
    """The web inbox's "deliver now / fail / expire"; the message document it answers."""
    async with gateway.http.post(
        f"{gateway.url}/v1/messages/{message_id}/outcome",
        json={"outcome": outcome},
        headers=gateway.headers,
    ) as response:
        assert response.status == 200, await response.text()
        document: dict[str, Any] = await response.json()
        return document


async def test_a_scheduled_message_is_delivered_failed_or_expired_now(
    tmp_path: Path, callback_receiver: CallbackReceiver
) -> None:
    config = scheduling_config(tmp_path)
    config["simulator"]["allow_reset"] = True
    async with running_gateway(config_from_dict(config)) as gateway:
        later = datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()
        ids = {}
        for number, outcome in (("46701230051", "delivered"), ("46701230052", "failed")):
            sent = await gateway.send(
                to=f"+{number}", body=outcome, send_at=later, callback_url=callback_receiver.url
            )
            ids[outcome] = (number, (await sent.json())["id"])
        expiring = await (await gateway.send(to="+46701230053", send_at=later)).json()

        number, message_id = ids["delivered"]
        document = await force(gateway, message_id, "delivered")
        assert (document["status"], document["error"]) == ("delivered", None)
        assert await inbox(gateway, number) == ["delivered"]  # committed before the 200
        assert (await callback_receiver.next())["status"] == "delivered"
        _, detail = await gateway.get_json(f"/v1/messages/{message_id}/detail")
        steps = [step["status"] for step in detail["timeline"]]
        assert steps == ["accepted", "scheduled", "enroute", "delivered"]

        number, message_id = ids["failed"]
        document = await force(gateway, message_id, "failed")
        assert (document["status"], document["error"]) == ("undeliverable", "unknown_subscriber")
        callback = await callback_receiver.next()
        assert (callback["id"], callback["status"]) == (message_id, "undeliverable")
        assert await inbox(gateway, number) == []

        document = await force(gateway, expiring["id"], "expired")
        assert (document["status"], document["error"]) == ("expired", "validity_period_expired")
        async with gateway.http.get(f"{gateway.url}/metrics") as response:
            assert "smsgw_messages_scheduled 0.0" in await response.text()  # none left waiting


async def test_a_scheduled_message_delivered_now_passes_the_gates_again(
    tmp_path: Path,
) -> None:
    """As at its time: an opt-out the network's memory of recent changes has forgotten
    still stops it."""
    config = scheduling_config(tmp_path)
    config["simulator"]["allow_reset"] = True
    clock = ManualClock(time.time())
    async with running_gateway(config_from_dict(config), clock) as gateway:

        async def opt_out(number: str) -> None:
            async with gateway.http.post(
                f"{gateway.url}/v1/opt-outs", json={"msisdns": [number]}, headers=gateway.headers
            ) as response:
                assert response.status == 200

        later = datetime.fromtimestamp(clock.now + 7200, UTC).isoformat()
        stopped = await (await gateway.send(to="+46701230061", send_at=later)).json()
        await opt_out("+46701230061")
        clock.advance(3700)
        await opt_out("+46701230062")  # a later change: the network forgets the first
        document = await force(gateway, stopped["id"], "delivered")
        assert (document["status"], document["error"]) == ("rejected", "recipient_opted_out")
        assert await inbox(gateway, "46701230061") == []
