"""smsgw_config overridden for one module: that module gets a gateway of its own."""

from __future__ import annotations

import pytest

SEEN_URLS: set[str] = set()


@pytest.fixture(scope="module")
def smsgw_config():
    return {
        "tenants": [
            {
                "id": "shop",
                "api_keys": ["shop-secret-key"],
                "senders": ["Shop"],
                "default_country": "SE",
            }
        ]
    }


def test_the_module_config_is_merged_over_the_defaults(smsgw) -> None:
    assert (smsgw.tenant.id, smsgw.tenant.senders, smsgw.tenant.system_id) == (
        "shop",
        ("Shop",),
        None,
    )
    assert smsgw.smpp_port > 0  # the default [smpp] stays
    sent = smsgw.send("070-111 30 01", "Hej")  # a national form: default_country applies
    assert (sent["to"], sent["from"]) == ("+46701113001", "Shop")
    SEEN_URLS.add(smsgw.http_url)


def test_tests_of_one_module_share_its_gateway(smsgw) -> None:
    SEEN_URLS.add(smsgw.http_url)
    assert len(SEEN_URLS) == 1
