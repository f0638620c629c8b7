"""The ordered events a replay server serves, built once from settings by a pure function.

Order is ``time_us`` order (a stable sort): captures are in arrival order, which is not time
order, and a cursor ("every event with ``time_us >= cursor``") needs one. ``loop`` repeats the
stream forever; cycle ``n`` is the stream shifted ``n`` periods later, with its revs, TID
record keys, at:// references and sequence numbers shifted too, so event ids stay unique.
"""

from __future__ import annotations

import bisect
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import orjson

from streampulse.replay.identifiers import tid_text, tid_value
from streampulse.replay.sources import ReplaySetupError, load_profile, read_captures, require_dir
from streampulse.replay.synthesis import generate
from streampulse.settings import ReplaySettings

log = logging.getLogger(__name__)

CYCLE_GAP_US = 1_000_000  # least time between the last event of a cycle and the next's first
# Cycles start whole multiples of 2**20 us apart, so a TID (us << 10 | clock) moves by a
# multiple of 2**30: only its first 7 characters change, and rendering a cycle stays cheap.
PERIOD_QUANTUM_US = 1 << 20
SEQ_STRIDE = 10**12  # identity/account seq offset per cycle


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event: the bytes sent on the wire and the fields filters and cursors look at."""

    raw: bytes
    time_us: int
    did: str
    kind: str
    collection: str | None  # commits only; identity and account events pass collection filters

    @classmethod
    def parse(cls, raw: bytes) -> StreamEvent | None:
        """The event of a JSON line, or None for lines without ``time_us`` (heartbeats)."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ReplaySetupError(f"capture line is not JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("time_us"), int):
            return None
        commit = data.get("commit")
        collection = commit.get("collection") if isinstance(commit, dict) else None
        return cls(
            raw, data["time_us"], str(data.get("did", "")), str(data.get("kind")), collection
        )

    def event_id(self) -> str:
        """The stable id ingest derives: ``did/collection/rkey@rev``, or ``did/kind@seq``."""
        data = orjson.loads(self.raw)
        commit = data.get("commit")
        if commit is not None:
            return f"{data['did']}/{commit['collection']}/{commit['rkey']}@{commit['rev']}"
        return f"{data['did']}/{data['kind']}@{data[data['kind']]['seq']}"


@dataclass(frozen=True)
class Stream:
    """Events in ``time_us`` order (non-decreasing; strictly increasing for generated ones)."""

    events: tuple[StreamEvent, ...]

    @cached_property
    def times(self) -> list[int]:
        return [event.time_us for event in self.events]

    @property
    def period_us(self) -> int:
        """How much later each loop cycle starts than the previous one."""
        span = self.events[-1].time_us - self.events[0].time_us if self.events else 0
        return -(-(span + CYCLE_GAP_US) // PERIOD_QUANTUM_US) * PERIOD_QUANTUM_US

    def locate(self, cursor: int | None, *, loop: bool) -> tuple[int, int]:
        """(cycle, index) of the first event with ``time_us >= cursor``; None is the start."""
        if cursor is None or not self.events:
            return 0, 0
        cycle = max(0, (cursor - self.events[0].time_us) // self.period_us) if loop else 0
        index = bisect.bisect_left(self.times, cursor - cycle * self.period_us)
        if loop and index == len(self.events):
            return cycle + 1, 0
        return cycle, index

    def cycle(self, number: int) -> Stream:
        """The stream as its ``number``-th loop repetition serves it (0: unchanged)."""
        if number == 0:
            return self
        render, offset = self.renderer(number), number * self.period_us
        return Stream(
            tuple(
                StreamEvent(render(i), e.time_us + offset, e.did, e.kind, e.collection)
                for i, e in enumerate(self.events)
            )
        )

    def renderer(self, number: int) -> Callable[[int], bytes]:
        """A function from an event's index to its bytes in loop cycle ``number``."""
        if number == 0:
            return lambda index: self.events[index].raw
        offset = number * self.period_us
        offsets = (offset, number * SEQ_STRIDE, offset >> 20)  # TID value + (offset << 10)
        prefixes = _Prefixes()
        templates = self._templates
        return lambda index: templates[index].render(offsets, prefixes)

    @cached_property
    def _templates(self) -> list[_Template]:
        return [_Template.of(event.raw) for event in self.events]


# What a loop shift rewrites, found once per event in its raw bytes: time_us, the TID revs and
# record keys, TID record keys at the end of at:// URIs, and identity/account seq numbers.
_SHIFTABLE = re.compile(
    rb'"time_us":(?P<time>\d+)'
    rb'|"(?:rev|rkey)":"(?P<tid>[2-7a-j][2-7a-z]{12})"'
    rb'|"at://[^"/]+/[^"/]+/(?P<ref>[2-7a-j][2-7a-z]{12})"'
    rb'|"seq":(?P<seq>\d+)'
)
_TIME, _SEQ, _TID = 0, 1, 2
_PREFIX_CHARS = 7  # a TID's first 7 characters hold its bits 30..64; cycles never touch the rest


class _Prefixes(dict[int, bytes]):
    """The 7 leading characters of TIDs by their value >> 30, computed once per cycle."""

    def __missing__(self, high: int) -> bytes:
        text = tid_text(high << 30)[:_PREFIX_CHARS].encode()
        self[high] = text
        return text


@dataclass(frozen=True, slots=True)
class _Template:
    """An event's bytes as a %-format around its shiftable values, rendered once per cycle."""

    format: bytes  # %d for time_us and seq, %b for the leading characters of a TID
    kinds: tuple[int, ...]
    values: tuple[int, ...]  # time_us, seq, or a TID's value >> 30

    @classmethod
    def of(cls, raw: bytes) -> _Template:
        parts: list[bytes] = []
        kinds: list[int] = []
        values: list[int] = []
        last = 0
        for match in _SHIFTABLE.finditer(raw):
            group = match.lastgroup
            assert group is not None
            start, end = match.span(group)
            parts.append(raw[last:start].replace(b"%", b"%%"))
            if group in ("time", "seq"):
                parts.append(b"%d")
                kinds.append(_TIME if group == "time" else _SEQ)
                values.append(int(raw[start:end]))
            else:
                parts.append(b"%b")
                kinds.append(_TID)
                values.append(tid_value(raw[start:end].decode()) >> 30)
                end = start + _PREFIX_CHARS
            last = end
        parts.append(raw[last:].replace(b"%", b"%%"))
        return cls(b"".join(parts), tuple(kinds), tuple(values))

    def render(self, offsets: tuple[int, int, int], prefixes: _Prefixes) -> bytes:
        """The event shifted by (time_us, seq, TID value >> 30) offsets."""
        return self.format % tuple(
            prefixes[value + offsets[_TID]] if kind == _TID else value + offsets[kind]
            for kind, value in zip(self.kinds, self.values, strict=True)
        )


def recorded_events(settings: ReplaySettings) -> list[StreamEvent]:
    """Every captured event with a ``time_us``, in ``time_us`` order (stable)."""
    lines = read_captures(require_dir(settings.data_dir))
    events = [e for e in map(StreamEvent.parse, lines) if e is not None]
    if skipped := len(lines) - len(events):
        log.info("skipped %d capture lines without time_us (heartbeat replies)", skipped)
    events.sort(key=lambda event: event.time_us)
    return events


def synthetic_events(settings: ReplaySettings, start_us: int | None) -> list[StreamEvent]:
    """``settings.synthetic_events`` generated events from ``start_us`` (None: the profile's)."""
    profile = load_profile(require_dir(settings.data_dir))
    start = profile.start_us if start_us is None else start_us
    lines = generate(settings.seed, profile, start, settings.synthetic_events)
    return [e for e in map(StreamEvent.parse, lines) if e is not None]


def rebased(events: list[StreamEvent], start_us: int) -> list[StreamEvent]:
    """The events moved to begin at about ``start_us``, with the gaps between captures closed.

    Runs of events less than a quantum (about a second) apart keep their spacing; each later run
    starts about a quantum after the previous one ends. Shifts are whole quanta, so TIDs (revs,
    record keys) move with their event's time exactly as in a loop cycle.
    """
    out: list[StreamEvent] = []
    prefixes = _Prefixes()
    shift = 0
    previous: StreamEvent | None = None
    for event in events:
        if previous is None:
            shift = (start_us - event.time_us) // PERIOD_QUANTUM_US * PERIOD_QUANTUM_US
        elif event.time_us - previous.time_us > PERIOD_QUANTUM_US:
            target = out[-1].time_us + PERIOD_QUANTUM_US - event.time_us
            shift = -(-target // PERIOD_QUANTUM_US) * PERIOD_QUANTUM_US
        raw = _Template.of(event.raw).render((shift, 0, shift >> 20), prefixes)
        out.append(StreamEvent(raw, event.time_us + shift, event.did, event.kind, event.collection))
        previous = event
    return out


def build_stream(settings: ReplaySettings, now_us: int | None = None) -> Stream:
    """The stream of ``settings.stream``: recorded, synthetic, or mixed (recorded first).

    With ``settings.rebase_to_now`` the stream starts at ``now_us`` (default: the wall clock)
    instead of the captures' own times, so a replay reads as live.
    """
    start_us = None
    if settings.rebase_to_now:
        start_us = int(time.time() * 1_000_000) if now_us is None else now_us
    if settings.stream == "synthetic":
        return Stream(tuple(synthetic_events(settings, start_us)))
    recorded = recorded_events(settings)
    if start_us is not None:
        recorded = rebased(recorded, start_us)
    if settings.stream == "recorded" or not recorded:
        return Stream(tuple(recorded))
    next_second = (recorded[-1].time_us // 1_000_000 + 1) * 1_000_000
    return Stream(tuple(recorded + synthetic_events(settings, next_second)))
