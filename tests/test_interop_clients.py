"""node-smpp (npm) and Net::SMPP (Debian), third-party SMPP clients, against the gateway.

Each runs as a small script in tests/interop/ that binds as a transceiver, submits
one message asking for a receipt, answers each deliver_sm and reports every event as
a JSON line: the receipt must name the id the submit_sm_resp gave, and an MO from a
handset must reach the client as the handset sent it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import RunningGateway
from tests.interop.programs import INSTALL_HINT, json_lines, require_program

pytestmark = [pytest.mark.interop]

INTEROP = Path(__file__).parent / "interop"
NODE_DIR = INTEROP / "node"
SENDER = "+46700000001"  # one of the tenant's numbers
HANDSET = "+46701234567"
# Characters GSM 03.38 and ASCII encode alike: Net::SMPP sends a Perl string's bytes as
# they are, node-smpp (given data_coding 0) encodes GSM 03.38 itself.
BODY = "Your code is 1234. Welcome!"
MO_BODY = "Thanks, got it"
DELIVERED = 2  # message_state


def node_smpp() -> list[str]:
    node = require_program("node", "Node.js (Debian's nodejs)")
    if not (NODE_DIR / "node_modules" / "smpp" / "package.json").exists():
        pytest.skip(f"node-smpp is not installed in {NODE_DIR}: {INSTALL_HINT} (npm ci)")
    return [node, str(NODE_DIR / "smpp_client.js")]


def net_smpp() -> list[str]:
    perl = require_program("perl", "Debian's perl")
    if subprocess.run([perl, "-MNet::SMPP", "-e", "1"], capture_output=True).returncode:
        pytest.skip(f"Net::SMPP is missing: install Debian's libnet-smpp-perl ({INSTALL_HINT})")
    return [perl, str(INTEROP / "net_smpp_client.pl")]


@pytest.mark.parametrize("client", [node_smpp, net_smpp], ids=["node-smpp", "Net-SMPP"])
async def test_client_gets_its_receipt_and_an_mo(
    gateway: RunningGateway, tmp_path: Path, client: Callable[[], list[str]]
) -> None:
    args = [str(gateway.smpp_port), "acme", "acme-pw", SENDER[1:], HANDSET[1:], BODY, "2"]
    async with json_lines([*client(), *args], tmp_path / "client.log") as events:
        assert await events.next() == {"event": "bound", "status": 0}
        submitted = await events.next()
        assert submitted["event"] == "submit_sm_resp" and submitted["status"] == 0
        message_id = submitted["message_id"]

        receipt = await events.next()
        assert (receipt["event"], receipt["esm_class"]) == ("deliver_sm", 0x04)
        assert (receipt["receipted_message_id"], receipt["message_state"]) == (
            message_id,
            DELIVERED,
        )
        assert f"id:{message_id} " in str(receipt["short_message"])
        assert " stat:DELIVRD " in str(receipt["short_message"])
        status, inbox = await gateway.get_json(f"/v1/simulator/handsets/{HANDSET}/messages")
        assert status == 200
        assert [(m["message_id"], m["body"]) for m in inbox["messages"]] == [(message_id, BODY)]

        async with gateway.http.post(
            f"{gateway.url}/v1/simulator/inbound",
            json={"from": HANDSET, "to": SENDER, "body": MO_BODY},
            headers=gateway.headers,
        ) as response:
            assert response.status == 202
        mo = await events.next()
        assert mo == {
            "event": "deliver_sm",
            "esm_class": 0,
            "source_addr": HANDSET[1:],
            "destination_addr": SENDER[1:],
            "short_message": MO_BODY,
            "receipted_message_id": None,
            "message_state": None,
        }
        assert await events.next() == {"event": "unbound", "status": 0}
        assert await events.exit_status() == 0
