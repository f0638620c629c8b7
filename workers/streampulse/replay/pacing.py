"""When each event of the stream is due: the profile's per-second counts, a fixed rate, or now.

Pacing counts stream positions, not messages sent: filters thin a paced stream the way they
thin live Jetstream. Deadlines are offsets from one monotonic start, so sending late never
accumulates drift: a late sender catches up by sending every event already due.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass

from streampulse.replay.sources import RateProfile


class Pacer:
    """Unlimited pacing: every event is due at once."""

    def due(self, elapsed_s: float) -> int:
        """How many events (from the first) are due ``elapsed_s`` seconds after the start."""
        return 1 << 62

    def offset_of(self, position: int) -> float:
        """Seconds after the start at which event ``position`` (0-based) is due."""
        return 0.0


@dataclass(frozen=True)
class FixedRate(Pacer):
    """``per_second`` events each second, evenly spaced."""

    per_second: float

    def due(self, elapsed_s: float) -> int:
        return math.floor(elapsed_s * self.per_second) + 1

    def offset_of(self, position: int) -> float:
        return position / self.per_second


class ProfileRate(Pacer):
    """Each second sends the profile's count for it (cycling), spread evenly within it."""

    def __init__(self, profile: RateProfile) -> None:
        self.counts = [second.total for second in profile.seconds]
        self.starts = [0, *itertools.accumulate(self.counts)][:-1]  # events before each second
        self.per_cycle = sum(self.counts)

    def due(self, elapsed_s: float) -> int:
        cycles, within = divmod(elapsed_s, len(self.counts))
        second = int(within)
        fraction = within - second
        count = self.counts[second]
        due_here = min(count, math.floor(fraction * count) + 1)
        return int(cycles) * self.per_cycle + self.starts[second] + due_here

    def offset_of(self, position: int) -> float:
        cycles, rest = divmod(position, self.per_cycle)
        second = bisect.bisect_right(self.starts, rest) - 1
        return (
            cycles * len(self.counts) + second + (rest - self.starts[second]) / self.counts[second]
        )


def make_pacer(rate: str, profile: RateProfile | None) -> Pacer:
    """The pacer of the ``rate`` setting: ``profile``, ``max``, or a positive events/s number."""
    if rate == "max":
        return Pacer()
    if rate == "profile":
        if profile is None:
            raise ValueError("rate=profile needs the rate profile CSV")
        return ProfileRate(profile)
    try:
        per_second = float(rate)
    except ValueError:
        per_second = 0.0
    if not per_second > 0 or math.isinf(per_second):
        raise ValueError(f"rate must be 'profile', 'max' or a positive number, not {rate!r}")
    return FixedRate(per_second)
