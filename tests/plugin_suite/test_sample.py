"""The whole story, as docs/testing.md tells it: nothing but the plugin and an SMPP client."""

from __future__ import annotations

import pytest
import smpplib.client

from gateway.testing import ApiError

CUSTOMER = "+46701130001"
OTHER_CUSTOMER = "+46701130002"


def test_send_deliver_reply_stop_chaos_and_reset(smsgw) -> None:
    # Over HTTP: sent, delivered, in the handset's inbox.
    sent = smsgw.send(CUSTOMER, "Your code is 1234")
    assert smsgw.wait_for_status(sent["id"], "delivered")["final_at"] is not None
    assert smsgw.wait_for_message(CUSTOMER, contains="1234")["body"] == "Your code is 1234"

    # Over SMPP, bound as the tenant.
    esme = smpplib.client.Client(
        smsgw.smpp_host, smsgw.smpp_port, timeout=10, allow_unknown_opt_params=True
    )
    esme.connect()
    esme.bind_transceiver(system_id=smsgw.tenant.system_id, password=smsgw.tenant.password)
    esme.send_message(
        source_addr_ton=5,
        source_addr=smsgw.tenant.senders[0],
        dest_addr_ton=1,
        destination_addr=OTHER_CUSTOMER.removeprefix("+"),
        short_message=b"Sent over SMPP",
    )
    message_id = esme.read_pdu().message_id.decode()
    esme.unbind()
    esme.disconnect()
    smsgw.wait_for_status(message_id, "delivered")
    assert smsgw.wait_for_message(OTHER_CUSTOMER)["body"] == "Sent over SMPP"

    # The customer replies STOP: the next send to them is refused.
    smsgw.reply(CUSTOMER, smsgw.tenant.senders[1], "STOP")
    with pytest.raises(ApiError) as refused:
        smsgw.send(CUSTOMER, "A special offer")
    assert refused.value.code == "recipient_opted_out"

    # Chaos: every submit throttled, until it is turned off.
    smsgw.set_chaos(submit_errors={"throttled": 1.0})
    with pytest.raises(ApiError) as throttled:
        smsgw.send(OTHER_CUSTOMER, "Under load")
    assert (throttled.value.status, throttled.value.code) == (429, "throttled")
    smsgw.clear_chaos()

    # A reset empties the tenant's handsets.
    smsgw.reset()
    assert smsgw.inbox(OTHER_CUSTOMER) == []
