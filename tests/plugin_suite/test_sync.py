"""The plugin from plain sync tests: send, the handset's inbox, a STOP reply, an opt-out."""

from __future__ import annotations

import pytest

from gateway.testing import ApiError


def test_a_sent_message_reaches_the_handset_inbox(smsgw, callbacks) -> None:
    sent = smsgw.send("+46701110001", "Your code is 1234", callback_url=callbacks.url)
    assert sent["status"] == "accepted" and sent["from"] == smsgw.tenant.senders[0]
    assert callbacks.next()["status"] == "delivered"
    (received,) = smsgw.inbox("+46701110001")
    assert received["body"] == "Your code is 1234"
    assert received["message_id"] == sent["id"]


def test_a_stop_reply_opts_the_handset_out(smsgw) -> None:
    mo = smsgw.reply("+46701110002", "+46700000001", "STOP")
    assert mo["keyword"] == "stop"
    with pytest.raises(ApiError) as refused:
        smsgw.send("+46701110002", "One more offer")
    assert refused.value.code == "recipient_opted_out"


def test_an_opt_out_refuses_the_next_send(smsgw) -> None:
    smsgw.opt_out("+46701110003")
    with pytest.raises(ApiError) as refused:
        smsgw.send("+46701110003", "Hello")
    assert (refused.value.status, refused.value.code) == (403, "recipient_opted_out")


def test_the_handle_names_the_listeners_and_the_tenant(smsgw) -> None:
    assert smsgw.http_url.startswith("http://127.0.0.1:")
    assert smsgw.smpp_host == "127.0.0.1" and smsgw.smpp_port > 0
    tenant = smsgw.tenant
    assert (tenant.id, tenant.api_key, tenant.system_id, tenant.password) == (
        "test",
        "smsgw-test-key",
        "test",
        "test-pw",
    )
