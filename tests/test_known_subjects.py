"""The registry's filter of known subjects: no read for a number never recorded, no miss."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import StorageBackend, config_from_dict
from gateway.server.appkeys import REGISTRY
from privacy.known_subjects import MIN_CAPACITY, KnownSubjects
from privacy.registry import ConsentRegistry, SubjectState
from tests.conftest import BACKEND, RunningGateway, running_gateway
from tests.test_consent import call, inbound, submit_code

HANDSET = "+46701112233"


def pseudonym() -> str:
    return "p1:" + secrets.token_hex(16)


# A store several instances may share is read at every check: no filter is built for it.
only_on_sqlite = pytest.mark.skipif(
    BACKEND is StorageBackend.POSTGRES,
    reason="on PostgreSQL every check reads the shared registry (docs/consent.md)",
)


@given(st.lists(st.text(min_size=1), max_size=200))
def test_every_subject_added_is_found(subjects: list[str]) -> None:
    known = KnownSubjects()
    for subject in subjects:
        known.add(subject)
    assert all(subject in known for subject in subjects)


def test_a_full_filter_grows_a_layer_and_still_finds_everything() -> None:
    known = KnownSubjects()
    subjects = [pseudonym() for _ in range(MIN_CAPACITY + 1000)]
    for subject in subjects:
        known.add(subject)
    assert known.nbytes > KnownSubjects().nbytes
    assert all(subject in known for subject in subjects)
    # Full at 10 bits a subject, a layer answers "maybe" for under 1% of strangers.
    strangers = [pseudonym() for _ in range(20_000)]
    assert sum(subject in known for subject in strangers) < 0.02 * len(strangers)


def finished_at_once(lookup: Coroutine[Any, Any, list[SubjectState]]) -> list[SubjectState]:
    """The states, if the lookup finished without suspending (no database read)."""
    try:
        lookup.send(None)
    except StopIteration as done:
        states: list[SubjectState] = done.value
        return states
    lookup.close()
    raise AssertionError("the lookup went to the database")


@only_on_sqlite
async def test_a_number_never_recorded_is_checked_without_a_read(gateway: RunningGateway) -> None:
    registry: ConsentRegistry = gateway.app[REGISTRY]
    await registry.learned()
    subject = registry.subject("acme", "+46709998877")
    [state] = finished_at_once(registry.states("acme", [subject]))
    assert not state.opted_out and state.restricted is None
    assert await submit_code(gateway, to="+46709998877") == "accepted"


@only_on_sqlite
async def test_an_opt_out_is_known_at_once_and_after_a_restart(
    config_dict: dict[str, Any],
) -> None:
    config = config_from_dict(config_dict)
    async with running_gateway(config) as gateway:
        await gateway.app[REGISTRY].learned()
        await inbound(gateway, "STOP")
        status, _ = await call(
            gateway, "POST", "/v1/opt-outs", json={"msisdns": ["+46700000077"], "evidence": "x"}
        )
        assert status == 200
        assert await submit_code(gateway, to=HANDSET) == "recipient_opted_out"
        assert await submit_code(gateway, to="+46700000077") == "recipient_opted_out"
    async with running_gateway(config) as gateway:
        registry: ConsentRegistry = gateway.app[REGISTRY]
        await registry.learned()
        # Built from the table: the subject is a maybe, and the read finds the opt-out.
        assert registry.subject("acme", HANDSET) in registry._known_subjects["acme"]
        assert await submit_code(gateway, to=HANDSET) == "recipient_opted_out"
        assert await submit_code(gateway, to="+46700000077") == "recipient_opted_out"
        assert await submit_code(gateway, to="+46709998877") == "accepted"


async def test_records_made_while_the_filter_is_built_are_not_missed(
    gateway: RunningGateway,
) -> None:
    registry: ConsentRegistry = gateway.app[REGISTRY]
    await registry.learned()
    rebuilding = asyncio.create_task(registry.learn_known_subjects(page=1))
    await asyncio.sleep(0)  # one step: the build has begun and waits for its first read
    assert registry._learning
    status, _ = await call(
        gateway, "POST", "/v1/opt-outs", json={"msisdns": ["+46700000078"], "evidence": "x"}
    )
    assert status == 200
    await rebuilding
    assert registry.subject("acme", "+46700000078") in registry._known_subjects["acme"]
    assert await submit_code(gateway, to="+46700000078") == "recipient_opted_out"
