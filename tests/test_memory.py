"""What the gateway keeps per subject is compact, found by the soak (bench/soak.py)."""

from __future__ import annotations

import gc

from privacy.registry import SubjectState
from tests.conftest import RunningGateway
from tests.test_consent import call, submit_code


async def test_subjects_without_a_record_share_one_cached_state(gateway: RunningGateway) -> None:
    numbers = [f"+4670555{i:04d}" for i in range(300)]
    status, result = await call(
        gateway,
        "POST",
        "/v1/messages/batch",
        json={"messages": [{"to": n, "from": "Acme", "body": "hi"} for n in numbers]},
    )
    assert (status, result["accepted"]) == (200, len(numbers))
    states = [o for o in gc.get_objects() if isinstance(o, SubjectState)]
    assert len(states) < 10, f"{len(states)} state objects for subjects with no record"

    # The shared state is never changed in place: an opt-out of one is only its own.
    status, _ = await call(gateway, "POST", "/v1/opt-outs", json={"msisdns": numbers[:1]})
    assert status == 200
    assert await submit_code(gateway, to=numbers[0]) == "recipient_opted_out"
    assert await submit_code(gateway, to=numbers[1]) == "accepted"
