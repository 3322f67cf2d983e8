"""The operator's views for the web inbox (gateway/server/http_admin_views.py), over sockets."""

from __future__ import annotations

from typing import Any

from tests.conftest import ADMIN_TOKEN, RunningGateway
from tests.smpp_clients import smpplib_esme
from tests.test_http_inbox import deliver_one, post_json
from tests.test_simulator_reset import resettable

__all__ = ["resettable"]  # a fixture: test controls on

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def _admin_get(gateway: RunningGateway, path: str) -> tuple[int, Any]:
    async with gateway.http.get(f"{gateway.url}/admin/v1{path}", headers=ADMIN) as response:
        return response.status, await response.json(content_type=None)


async def test_tenants_and_links(gateway: RunningGateway) -> None:
    assert await _admin_get(gateway, "/tenants") == (200, {"tenants": ["acme", "other"]})
    status, links = await _admin_get(gateway, "/links")
    assert (status, links["metrics"], links["grafana_dashboard"]) == (
        200,
        "/metrics",
        "dashboards/smsgw.json",
    )
    async with gateway.http.get(f"{gateway.url}{links['metrics']}") as response:
        assert response.status == 200
    # A tenant's API key is no operator token.
    status, problem = await gateway.get_json("/admin/v1/tenants")
    assert (status, problem["code"]) == (401, "unauthorized")


async def test_smpp_sessions_show_bind_and_windows(gateway: RunningGateway) -> None:
    assert await _admin_get(gateway, "/smpp/sessions") == (200, {"sessions": []})
    async with (
        smpplib_esme(gateway.smpp_port, kind="transmitter"),
        smpplib_esme(gateway.smpp_port, kind="receiver", system_id="other", password="other-pw"),
    ):
        status, page = await _admin_get(gateway, "/smpp/sessions")
    assert status == 200
    sessions = {s["system_id"]: s for s in page["sessions"]}
    assert sessions.keys() == {"acme", "other"}
    transmitter, receiver = sessions["acme"], sessions["other"]
    assert (transmitter["tenant"], transmitter["bind_type"]) == ("acme", "transmitter")
    assert transmitter["deliver_window"]["outstanding"] is None  # a transmitter receives none
    assert receiver["bind_type"] == "receiver"
    assert receiver["deliver_window"]["outstanding"] == 0
    assert receiver["deliver_window"]["size"] == 64
    assert receiver["since"] and receiver["tls"] is False
    assert transmitter["submits"]["pending"] == 0


async def test_chaos_read_for_all_and_changed_for_one(resettable: RunningGateway) -> None:
    gateway = resettable
    status, chaos = await _admin_get(gateway, "/chaos")
    assert status == 200 and chaos["tenants"].keys() == {"acme", "other"}
    async with gateway.http.put(
        f"{gateway.url}/admin/v1/tenants/other/chaos",
        json={"outcomes": {"expired": 1}},
        headers=ADMIN,
    ) as response:
        assert response.status == 200
    _, chaos = await _admin_get(gateway, "/chaos")
    assert chaos["tenants"]["other"]["outcomes"]["expired"] == 1
    assert chaos["tenants"]["acme"] != chaos["tenants"]["other"]
    async with gateway.http.delete(
        f"{gateway.url}/admin/v1/tenants/nobody/chaos", headers=ADMIN
    ) as response:
        assert (response.status, (await response.json())["code"]) == (404, "unknown_tenant")
    async with gateway.http.put(
        f"{gateway.url}/admin/v1/tenants/other/chaos", json={"outcomes": 3}, headers=ADMIN
    ) as response:
        assert (response.status, (await response.json())["code"]) == (400, "invalid_request")


async def test_changing_chaos_needs_allow_reset(gateway: RunningGateway) -> None:
    async with gateway.http.delete(
        f"{gateway.url}/admin/v1/tenants/acme/chaos", headers=ADMIN
    ) as response:
        assert (response.status, (await response.json())["code"]) == (403, "reset_disabled")


async def test_retention_status_after_a_run(gateway: RunningGateway) -> None:
    status, before = await _admin_get(gateway, "/retention")
    assert status == 200 and before["last_run"] is None
    await deliver_one(gateway)
    async with gateway.http.post(f"{gateway.url}/admin/v1/retention/run", headers=ADMIN) as run:
        assert run.status == 200
    _, after = await _admin_get(gateway, "/retention")
    assert after["last_run"]["pseudonymised"] == 0 and after["last_run"]["at"]
    assert after["oldest_identifiable_at"] is not None and after["within_window"] is True
    assert after["pseudonymise_after_seconds"] > 0


async def test_consent_counts_per_tenant(gateway: RunningGateway) -> None:
    status, _ = await post_json(
        gateway, "/v1/opt-outs", {"msisdns": ["+46701234567", "+46701234568"]}
    )
    assert status == 200
    async with gateway.http.put(
        f"{gateway.url}/v1/subjects/+46701234569/restriction", headers=gateway.headers
    ) as response:
        assert response.status == 200
    status, counts = await _admin_get(gateway, "/consents")
    assert status == 200
    assert counts["tenants"]["acme"] == {
        "subjects": 3,
        "opted_out": 2,
        "with_consent": 0,
        "restricted": 1,
    }
    assert counts["tenants"]["other"]["subjects"] == 0
