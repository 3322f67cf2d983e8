"""What the gateway keeps per subject is compact, found by the soak (bench/soak.py)."""

from __future__ import annotations

import gc

from privacy.registry import SubjectState
from tests.conftest import RunningGateway
from tests.test_consent import call, submit_code


def state_objects() -> int:
    gc.collect()
    return sum(isinstance(o, SubjectState) for o in gc.get_objects())


async def test_subjects_without_a_record_share_one_cached_state(gateway: RunningGateway) -> None:
    numbers = [f"+4670555{i:04d}" for i in range(300)]
    before = state_objects()
    status, result = await call(
        gateway,
        "POST",
        "/v1/messages/batch",
        json={"messages": [{"to": n, "from": "Acme", "body": "hi"} for n in numbers]},
    )
    assert (status, result["accepted"]) == (200, len(numbers))
    added = state_objects() - before
    assert added < 10, f"{added} state objects for subjects with no record"

    # The shared state is never changed in place: an opt-out of one is only its own.
    status, _ = await call(gateway, "POST", "/v1/opt-outs", json={"msisdns": numbers[:1]})
    assert status == 200
    assert await submit_code(gateway, to=numbers[0]) == "recipient_opted_out"
    assert await submit_code(gateway, to=numbers[1]) == "accepted"
