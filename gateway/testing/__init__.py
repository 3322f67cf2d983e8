"""smsgw in a developer's test suite: the pytest plugin (`gateway.testing.plugin`) and its harness.

What a test may import: `ApiError` (a refused call: ``status``, ``code``, ``detail``),
`WaitTimeout` (a wait that ran out), `Smsgw` (the ``smsgw`` fixture's type).
"""

from gateway.server.client import ApiError
from gateway.testing.harness import Smsgw, Tenant, WaitTimeout

__all__ = ["ApiError", "Smsgw", "Tenant", "WaitTimeout"]
