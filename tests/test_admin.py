"""Operators act through the owner: the lock, the admin API, and the CLI that uses them.

The process tests run the real ``python -m gateway`` for both the gateway and the CLI,
so what is checked is what an operator gets on a terminal.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from gateway.config import config_from_dict
from gateway.events import GAP
from gateway.lock import lock_paths
from gateway.server.appkeys import EVENTS, NETWORK, SMPP_SERVER
from tests.conftest import (
    ADMIN_TOKEN,
    API_KEY,
    EVENT_TIMEOUT,
    base_config,
    merged,
    running_gateway,
    stored_keys,
    stored_rows,
)
from tests.test_process import HEADERS, gateway_process, write_toml
from tests.test_smpp_notices import stored_notices, submit_with_receipts

HANDSET = "+46701239876"
OTHER_HANDSET = "+46701239875"
SENDER = "+46700000001"  # one of the base config's senders, a number handsets can write to
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def smsgw(config_path: Path, *args: str) -> tuple[int, str, str]:
    """The real CLI, no terminal on stdin: exit status, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        "--config",
        str(config_path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), EVENT_TIMEOUT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def submit_code(http: aiohttp.ClientSession, url: str, to: str) -> str:
    """ "accepted", or the problem code the submit was refused with."""
    document = {"to": to, "from": "Acme", "body": "hello"}
    async with http.post(f"{url}/v1/messages", json=document, headers=HEADERS) as response:
        body = await response.json()
        return "accepted" if response.status == 202 else f"{response.status} {body['code']}"


async def test_cli_acts_through_the_running_gateway(tmp_path: Path) -> None:
    config_path = tmp_path / "config.toml"
    write_toml(config_path, base_config(tmp_path))
    async with aiohttp.ClientSession() as http:
        async with gateway_process(config_path) as gateway:
            # Both numbers are in the gateway's registry cache before the operator acts.
            assert await submit_code(http, gateway.url, HANDSET) == "accepted"
            assert await submit_code(http, gateway.url, OTHER_HANDSET) == "accepted"

            status, out, err = await smsgw(
                config_path, "subject", "restrict", "--tenant", "acme", HANDSET
            )
            assert (status, err) == (0, "")
            assert '"restricted": true' in out
            assert "action=subject_restrict" in await gateway.line_with("admin.action")
            assert await submit_code(http, gateway.url, HANDSET) == "403 processing_restricted"

            status, _, _ = await smsgw(
                config_path, "subject", "object", "--tenant", "acme", OTHER_HANDSET
            )
            assert status == 0
            assert await submit_code(http, gateway.url, OTHER_HANDSET) == "403 recipient_opted_out"

            status, out, err = await smsgw(config_path, "tenant", "purge", "acme", "--yes")
            assert (status, err) == (0, "")
            assert '"consent_events": 2' in out
            # Purged: the restriction went with the tenant's data, and the chain is sound.
            assert await submit_code(http, gateway.url, HANDSET) == "accepted"
            assert await smsgw(config_path, "audit", "verify") == (0, "no audit entries yet\n", "")

            inbound = {"from": HANDSET, "to": SENDER, "body": "STOP"}
            async with http.post(
                f"{gateway.url}/v1/simulator/inbound", json=inbound, headers=HEADERS
            ) as response:
                assert response.status == 202
            assert await submit_code(http, gateway.url, HANDSET) == "403 recipient_opted_out"
            status, out, _ = await smsgw(config_path, "audit", "verify")
            assert (status, out) == (0, "acme: ok (1 entries)\n")
            assert await gateway.stop() == 0

        async with gateway_process(config_path) as gateway:
            assert await submit_code(http, gateway.url, HANDSET) == "403 recipient_opted_out"


async def test_cli_works_on_the_files_when_no_gateway_runs(tmp_path: Path) -> None:
    config_path = tmp_path / "config.toml"
    write_toml(config_path, base_config(tmp_path))
    status, out, err = await smsgw(config_path, "subject", "restrict", "--tenant", "acme", HANDSET)
    assert (status, err) == (0, "")
    assert '"restricted": true' in out
    async with aiohttp.ClientSession() as http, gateway_process(config_path) as gateway:
        assert await submit_code(http, gateway.url, HANDSET) == "403 processing_restricted"


async def test_a_second_serve_on_the_same_storage_exits_2(tmp_path: Path) -> None:
    config_path = tmp_path / "config.toml"
    write_toml(config_path, base_config(tmp_path))
    # The store's lock file; on PostgreSQL, which has many owners, the key file's.
    first_lock = lock_paths(config_from_dict(base_config(tmp_path)))[0]
    async with gateway_process(config_path) as gateway:
        status, _, err = await smsgw(config_path, "serve")
        assert status == 2
        [line] = err.splitlines()
        assert f"{first_lock} is in use by pid {gateway.process.pid}" in line
        gateway.process.kill()
        await gateway.process.wait()
    # The lock file of a killed gateway is still there, and blocks nothing.
    assert first_lock.exists()
    assert await smsgw(config_path, "audit", "verify") == (0, "no audit entries yet\n", "")


@pytest.fixture
def taken_port() -> Any:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


@pytest.mark.parametrize("section", ["http", "smpp"])
async def test_a_port_in_use_exits_2_at_once(tmp_path: Path, taken_port: int, section: str) -> None:
    config_path = tmp_path / "config.toml"
    write_toml(config_path, merged(base_config(tmp_path), {section: {"port": taken_port}}))
    # A generous bound that only catches "never exits" (it used to hang).
    status, _, err = await asyncio.wait_for(smsgw(config_path, "serve"), 5)
    assert status == 2
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[-1].startswith(f"smsgw: {section}.port {taken_port}:")
    assert "address already in use" in lines[-1].lower()
    if section == "http":  # bound before anything starts, so nothing else was said
        assert len(lines) == 1
    # Nothing was left holding the storage.
    assert (await smsgw(config_path, "audit", "verify"))[0] == 0


async def test_a_key_file_others_can_read_exits_2_with_one_line(tmp_path: Path) -> None:
    config_path = tmp_path / "config.toml"
    write_toml(config_path, base_config(tmp_path))
    key_file = tmp_path / "keys.json"
    key_file.write_text('{"version": 1, "tenants": {}}')
    key_file.chmod(0o644)
    status, _, err = await asyncio.wait_for(smsgw(config_path, "serve"), 5)
    assert status == 2
    [line] = err.splitlines()
    assert f"run: chmod 600 {key_file}" in line


async def test_purging_an_unknown_tenant_is_an_error(tmp_path: Path) -> None:
    config_path = tmp_path / "config.toml"
    write_toml(config_path, base_config(tmp_path))
    status, out, err = await smsgw(config_path, "tenant", "purge", "nobody", "--yes")
    assert (status, out) == (2, "")
    assert err == "smsgw: no tenant 'nobody': not configured, no keys, no data\n"
    async with running_gateway(config_from_dict(base_config(tmp_path))) as gateway:
        status, document = await admin_call(
            gateway.http, "POST", f"{gateway.url}/admin/v1/tenants/nobody/purge"
        )
        assert (status, document["code"]) == (404, "unknown_tenant")
        status, _, err = await smsgw(config_path, "tenant", "purge", "nobody", "--yes")
        assert (status, err) == (
            2,
            "smsgw: no tenant 'nobody': not configured, no keys, no data (unknown_tenant)\n",
        )


async def test_purge_without_yes_and_no_terminal_refuses(tmp_path: Path) -> None:
    config = base_config(tmp_path)
    config_path = tmp_path / "config.toml"
    write_toml(config_path, config)
    async with running_gateway(config_from_dict(config)) as gateway:
        assert (await gateway.send()).status == 202
    status, out, err = await smsgw(config_path, "tenant", "purge", "acme")
    assert (status, out) == (2, "")
    assert "confirm on a terminal, or pass --yes" in err
    assert stored_rows(
        tmp_path / "smsgw.sqlite3", "SELECT count(*) FROM messages WHERE tenant = 'acme'"
    ) == [(1,)]


async def admin_call(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None = ADMIN_TOKEN
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def test_admin_api_wants_an_operator_token(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"second-operator-token").hexdigest()
    config = merged(base_config(tmp_path), {"admin": {"tokens": [ADMIN_TOKEN, f"sha256:{digest}"]}})
    async with running_gateway(config_from_dict(config)) as gateway:
        verify = f"{gateway.url}/admin/v1/audit/verify"
        for token in (None, "wrong-token-of-some-length", API_KEY):
            status, document = await admin_call(gateway.http, "GET", verify, token)
            assert (status, document["code"]) == (401, "unauthorized")
            assert document["title"] == "Missing or invalid operator token"
        for token in (ADMIN_TOKEN, "second-operator-token"):
            assert await admin_call(gateway.http, "GET", verify, token) == (
                200,
                {"ok": True, "tenants": []},
            )
        url = f"{gateway.url}/admin/v1/tenants/acme/subjects/0701239876/restriction"
        status, document = await admin_call(gateway.http, "PUT", url)
        assert (status, document["restricted"]) == (200, True)
        assert (await gateway.send(to=HANDSET)).status == 403


def non_loopback_address() -> str:
    """This host's address on its default route, or skip where there is none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # TEST-NET-3; a UDP connect sends nothing
        except OSError:
            pytest.skip("no non-loopback interface")
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("no non-loopback interface")
    return address


@pytest.mark.parametrize("allow_remote", [False, True])
async def test_admin_api_answers_loopback_only_unless_allowed(
    tmp_path: Path, allow_remote: bool
) -> None:
    address = non_loopback_address()
    config = merged(
        base_config(tmp_path),
        {"http": {"host": "0.0.0.0"}, "admin": {"allow_remote": allow_remote}},
    )
    async with running_gateway(config_from_dict(config)) as gateway:
        port = gateway.url.rsplit(":", 1)[1]
        status, document = await admin_call(
            gateway.http, "GET", f"http://{address}:{port}/admin/v1/audit/verify"
        )
        if allow_remote:
            assert status == 200
        else:
            assert (status, document["code"]) == (403, "admin_not_local")
        assert (await admin_call(gateway.http, "GET", f"{gateway.url}/admin/v1/audit/verify"))[
            0
        ] == 200


async def test_https_with_a_certificate_of_the_config(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    os.chmod(key_file, 0o600)
    config_path = tmp_path / "config.toml"
    tls = {"cert_file": str(cert_file), "key_file": str(key_file)}
    write_toml(config_path, merged(base_config(tmp_path), {"http": {"tls": tls}}))
    client_tls = ssl.create_default_context()
    authority.configure_trust(client_tls)
    async with aiohttp.ClientSession() as http, gateway_process(config_path) as gateway:
        https = gateway.url.replace("http://", "https://")
        async with http.get(f"{https}/healthz", ssl=client_tls) as response:
            assert response.status == 200
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"{gateway.url}/healthz") as response:
                await response.read()
        document = {"to": HANDSET, "from": "Acme", "body": "over TLS"}
        async with http.post(
            f"{https}/v1/messages", json=document, headers=HEADERS, ssl=client_tls
        ) as response:
            assert response.status == 202
        # The CLI finds the HTTPS URL in the lock file and trusts the configured certificate.
        assert await smsgw(config_path, "audit", "verify") == (0, "no audit entries yet\n", "")
        assert await gateway.stop() == 0
        assert not [line for line in gateway.log if "Traceback" in line]


async def test_audit_verify_beside_traffic_sees_no_tamper(tmp_path: Path) -> None:
    """Entries committed while a verify reads are not mistaken for a cut-off chain."""
    async with running_gateway(config_from_dict(base_config(tmp_path))) as gateway:
        verify = f"{gateway.url}/admin/v1/audit/verify"
        consent = f"{gateway.url}/v1/consents/{HANDSET}"
        changes = 200

        async def change_consent() -> None:
            for i in range(changes):
                if i % 2:
                    request = gateway.http.delete(f"{consent}?purpose=marketing", headers=HEADERS)
                else:
                    request = gateway.http.put(
                        consent, json={"purpose": "marketing"}, headers=HEADERS
                    )
                async with request as response:
                    assert response.status == 200

        traffic = asyncio.create_task(change_consent())
        verdicts = []
        while not traffic.done():
            verdicts.append(await admin_call(gateway.http, "GET", verify))
        await traffic
        assert len(verdicts) > 1
        assert [v for v in verdicts if v[1]["ok"] is not True] == []
        final = {"tenant": "acme", "entries": changes, "ok": True, "broken_at": None, "problem": ""}
        assert await admin_call(gateway.http, "GET", verify) == (
            200,
            {"ok": True, "tenants": [final]},
        )


async def test_purging_a_tenant_removed_from_the_config(tmp_path: Path) -> None:
    config = base_config(tmp_path)
    async with running_gateway(config_from_dict(config)) as gateway:
        other = {"Authorization": "Bearer other-test-key"}
        document = {"to": HANDSET, "from": "Other", "body": "hello"}
        async with gateway.http.post(
            f"{gateway.url}/v1/messages", json=document, headers=other
        ) as response:
            assert response.status == 202
    config["tenants"] = config["tenants"][:1]  # "other" is gone from the config, not from disk
    async with running_gateway(config_from_dict(config)) as gateway:
        url = f"{gateway.url}/admin/v1/tenants/other/purge"
        status, counts = await admin_call(gateway.http, "POST", url)
        assert (status, counts["messages"]) == (200, 1)
        assert (await admin_call(gateway.http, "POST", url))[1]["code"] == "unknown_tenant"
    keys = stored_keys(tmp_path)
    assert "other" not in keys and "acme" in keys


async def test_purge_drops_the_tenants_messages_and_receipts_held_in_memory(
    tmp_path: Path,
) -> None:
    """Nothing of a purged tenant is written after its purge: no in-flight message ends
    (no inbox row, no receipt), receipts held for its receiver are gone from the queue,
    and so are the refused submits kept for its inbox."""
    slow = {"number": "+46709980003", "outcome": "delivered", "latency": ["1h", "1h"]}
    config = merged(base_config(tmp_path), {"simulator": {"rules": [slow]}})
    async with running_gateway(config_from_dict(config)) as gateway:
        gateway.app[EVENTS].subscribe("acme").close()  # a follower: its ring fills
        await submit_with_receipts(gateway, 3)  # receipts kept for acme, no receiver bound
        async with gateway.http.post(
            f"{gateway.url}/v1/messages",
            json={"to": "+46709980003", "from": "Acme", "body": "never"},
            headers=gateway.headers,
        ) as response:
            assert response.status == 202
        blocked = "+46709980004"
        async with gateway.http.post(
            f"{gateway.url}/v1/opt-outs", json={"msisdns": [blocked]}, headers=gateway.headers
        ) as response:
            assert response.status == 200
        assert (await gateway.send(to=blocked)).status == 403  # a refused submit, kept
        thread = f"/v1/simulator/handsets/{blocked}/thread"
        assert len((await gateway.get_json(thread))[1]["items"]) == 1
        queue, network = gateway.app[SMPP_SERVER].notices, gateway.app[NETWORK]
        assert queue.pending == 3 and network.pending_to("acme", "+46709980003")

        status, counts = await admin_call(
            gateway.http, "POST", f"{gateway.url}/admin/v1/tenants/acme/purge"
        )
        assert (status, counts["notices"]) == (200, 3)
        assert queue.pending == 0
        assert network.pending_to("acme", "+46709980003") == []
        # Its recent events (they name its handsets) are gone from the stream's ring: a
        # resume from the start is told it missed them, and gets none.
        resumed = gateway.app[EVENTS].subscribe("acme", after=0)
        batch = await asyncio.wait_for(resumed.next_batch(), EVENT_TIMEOUT)
        assert [event.kind for event in batch] == [GAP]
        assert (await gateway.get_json(thread))[1]["items"] == []
        assert await stored_notices(gateway) == 0


async def test_operator_tokens_are_guessed_no_faster_than_api_keys(tmp_path: Path) -> None:
    throttle = {"failed_auth_delay": "50ms", "max_auth_delay": "100ms", "max_auth_wait": "150ms"}
    config = merged(base_config(tmp_path), {"http": throttle})
    async with running_gateway(config_from_dict(config)) as gateway:
        verify = f"{gateway.url}/admin/v1/audit/verify"
        answers = await asyncio.gather(
            *(admin_call(gateway.http, "GET", verify, f"guess-{n:016d}") for n in range(20))
        )
        statuses = sorted({status for status, _ in answers})
        assert statuses == [401, 429]
