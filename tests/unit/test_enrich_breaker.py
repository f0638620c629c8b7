"""The circuit breaker in front of the model gateway, on a clock the tests move."""

from __future__ import annotations

import pytest

from streampulse.enrich.breaker import BreakerState, CircuitBreaker

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state(b: CircuitBreaker) -> BreakerState:
    """The state now (read through a call, so type checkers do not pin it between steps)."""
    return b.state


def breaker(failures: int = 3, open_s: float = 2.0) -> tuple[CircuitBreaker, Clock, list[str]]:
    clock = Clock()
    changes: list[str] = []
    return (
        CircuitBreaker(failures, open_s, lambda s: changes.append(s.name), clock=clock),
        clock,
        changes,
    )


def test_consecutive_failures_open_it_and_a_success_in_between_resets_the_count() -> None:
    b, _clock, changes = breaker(failures=3)
    b.failure()
    b.failure()
    b.success()
    b.failure()
    b.failure()
    assert state(b) is BreakerState.CLOSED
    assert b.allows()
    b.failure()
    assert state(b) is BreakerState.OPEN
    assert changes == ["OPEN"]


def test_open_refuses_until_its_time_is_up_then_lets_exactly_one_probe_through() -> None:
    b, clock, changes = breaker(failures=1, open_s=2.0)
    b.failure()
    assert not b.allows()
    clock.now += 1.99
    assert not b.allows()
    clock.now += 0.02
    assert b.allows()  # the probe
    assert state(b) is BreakerState.HALF_OPEN
    assert not b.allows()  # one probe at a time
    assert changes == ["OPEN", "HALF_OPEN"]


@pytest.mark.parametrize(
    ("outcome", "state", "allows_next"),
    [("success", BreakerState.CLOSED, True), ("failure", BreakerState.OPEN, False)],
)
def test_the_probe_decides(outcome: str, state: BreakerState, allows_next: bool) -> None:
    b, clock, _changes = breaker(failures=5, open_s=1.0)
    for _ in range(5):
        b.failure()
    clock.now += 1.0
    assert b.allows()
    getattr(b, outcome)()  # a failed probe reopens at once, whatever the count
    assert b.state is state
    assert b.allows() is allows_next


def test_a_failed_probe_opens_for_a_whole_new_period() -> None:
    b, clock, _changes = breaker(failures=1, open_s=1.0)
    b.failure()
    clock.now += 5.0
    assert b.allows()
    b.failure()
    clock.now += 0.5
    assert not b.allows()
    clock.now += 0.5
    assert b.allows()


def test_an_abandoned_probe_frees_the_slot() -> None:
    b, clock, _changes = breaker(failures=1, open_s=1.0)
    b.failure()
    clock.now += 1.0
    assert b.allows()
    assert not b.allows()
    b.abandon_probe()  # cancelled: neither success nor failure
    assert state(b) is BreakerState.HALF_OPEN
    assert b.allows()


def test_no_callback_for_a_state_it_is_already_in() -> None:
    b, _clock, changes = breaker(failures=1)
    b.success()
    b.success()
    b.failure()
    b.failure()
    assert changes == ["OPEN"]
