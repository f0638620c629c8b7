"""A circuit breaker in front of the model gateway.

closed: requests flow; ``failures`` consecutive failures open it.
open: no requests for ``open_s``; callers wait instead of hammering a dead server.
half-open: one probe request; success closes the breaker, failure opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import IntEnum


class BreakerState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        failures: int,
        open_s: float,
        on_change: Callable[[BreakerState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failures
        self._open_s = open_s
        self._on_change = on_change
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.state = BreakerState.CLOSED

    def _set(self, state: BreakerState) -> None:
        if state is not self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(state)

    def allows(self) -> bool:
        """Whether a request may go now (in half-open, only one probe at a time)."""
        if self.state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self._open_s:
                return False
            self._set(BreakerState.HALF_OPEN)
        if self.state is BreakerState.HALF_OPEN:
            if self._probing:
                return False
            self._probing = True
        return True

    def success(self) -> None:
        self._failures = 0
        self._probing = False
        self._set(BreakerState.CLOSED)

    def failure(self) -> None:
        self._probing = False
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self._opened_at = self._clock()
            self._set(BreakerState.OPEN)

    def abandon_probe(self) -> None:
        """A request that neither succeeded nor failed (e.g. cancelled) frees the probe slot."""
        self._probing = False
