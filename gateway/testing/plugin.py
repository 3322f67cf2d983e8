"""The pytest plugin, registered through the ``pytest11`` entry point: installing smsgw enables it.

Fixtures: ``smsgw_config`` (the config a test module wants, merged over the
plugin's defaults; override it in a module or conftest), ``smsgw_server`` (the
session's gateway host: a gateway in this process on its own event-loop thread,
restarted only for a module whose config differs) and ``smsgw`` (a `Smsgw` handle
on the gateway for one test, the tenant's simulator state reset before it and its
chaos turned off after it). docs/testing.md has an example and the whole API.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gateway.testing.harness import RESET_OPTIONS, GatewayServer, Smsgw


@pytest.fixture(scope="session")
def smsgw_config() -> dict[str, Any]:
    """Config overrides merged over the defaults; ``{}``: the defaults as they are."""
    return {}


@pytest.fixture(scope="session")
def smsgw_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """The event-loop thread the session's gateways run on; stopped at the session's end."""
    server = GatewayServer(lambda: tmp_path_factory.mktemp("smsgw"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def smsgw(smsgw_server: GatewayServer, smsgw_config: dict[str, Any]) -> Iterator[Smsgw]:
    """The gateway for this test's ``smsgw_config``, its tenant's simulator state reset."""
    handle = Smsgw(smsgw_server, smsgw_server.gateway(smsgw_config))
    handle.reset(**RESET_OPTIONS)
    yield handle
    if handle.chaos_set:
        handle.clear_chaos()
