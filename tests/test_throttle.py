"""The guess throttle spaces out credential checks, stays bounded and never overflows."""

from __future__ import annotations

from gateway.throttle import GuessThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_no_failures_no_wait() -> None:
    throttle = GuessThrottle(0.5, 8.0, clock=Clock())
    assert throttle.reserve("10.0.0.1", "acme") == 0.0


def test_checks_are_spaced_by_the_doubling_delay_up_to_the_cap() -> None:
    clock = Clock()
    throttle = GuessThrottle(0.5, 8.0, max_wait=1e9, clock=clock)
    for _ in range(5):
        throttle.failed("peer", "acme")
    # Five failures: 0.5 * 2**4 = 8 s, the cap. Concurrent checks queue one behind another.
    waits = [throttle.reserve("peer", "acme") for _ in range(3)]
    assert waits == [8.0, 16.0, 24.0]


def test_thousands_of_failures_do_not_overflow() -> None:
    clock = Clock()
    throttle = GuessThrottle(0.5, 8.0, max_wait=1e9, clock=clock)
    for _ in range(5000):
        throttle.failed("peer")
    assert throttle.delay_after(5000) == 8.0


def test_a_check_too_far_away_is_refused_unchecked() -> None:
    clock = Clock()
    throttle = GuessThrottle(1.0, 8.0, max_wait=10.0, clock=clock)
    for _ in range(4):
        throttle.failed("peer", "acme")
    assert throttle.reserve("peer", "acme") == 8.0
    assert throttle.reserve("peer", "acme") is None


def test_an_identity_is_throttled_from_every_peer() -> None:
    throttle = GuessThrottle(1.0, 8.0, clock=Clock())
    throttle.failed("peer-a", "acme")
    assert throttle.reserve("peer-b", "acme") == 1.0
    assert throttle.reserve("peer-b", None) == 0.0


def test_success_clears_only_its_own_keys() -> None:
    throttle = GuessThrottle(1.0, 8.0, clock=Clock())
    throttle.failed("peer", "acme")
    throttle.succeeded("peer", "other")
    assert throttle.reserve("peer-b", "acme") == 1.0


def test_the_peer_table_is_bounded() -> None:
    throttle = GuessThrottle(1.0, 8.0, max_peers=100, clock=Clock())
    for n in range(10_000):
        throttle.failed(f"peer-{n}")
    assert len(throttle) == 100
