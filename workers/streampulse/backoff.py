"""Exponential backoff with jitter, shared by every stage that retries."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with equal jitter: half fixed, half random, capped.

    Equal jitter keeps a floor under each delay (no hot retry loops) while still spreading
    the retries of many clients that failed at the same moment.
    """

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self._initial = initial_s
        self._max = max_s
        self._attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self._max, self._initial * float(2**self._attempt))
        self._attempt += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self._attempt = 0
