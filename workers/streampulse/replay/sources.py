"""What the data directory holds: Jetstream captures (``*.jsonl``) and the rate profile CSV."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from streampulse.errors import StreamPulseError
from streampulse.events import FOLLOW, LIKE, POST

log = logging.getLogger(__name__)

CAPTURE_GLOB = "*.jsonl"
PROFILE_GLOB = "per_second_rates_*.csv"
DICTIONARY_NAME = "zstd_dictionary_v1.bin"


class ReplaySetupError(StreamPulseError):
    """The replay server cannot start: its data is missing or unreadable, or a setting is bad."""


@dataclass(frozen=True, slots=True)
class SecondCounts:
    """Creates of each profiled collection in one second."""

    likes: int
    posts: int
    follows: int

    @property
    def total(self) -> int:
        return self.likes + self.posts + self.follows


@dataclass(frozen=True, slots=True)
class RateProfile:
    """Consecutive seconds of counts, cycled by whoever reads past the end."""

    seconds: tuple[SecondCounts, ...]
    start_us: int  # the first profiled second, unix microseconds

    def at(self, second: int) -> SecondCounts:
        """The counts of the ``second``-th second, cycling the profile."""
        return self.seconds[second % len(self.seconds)]


def require_dir(data_dir: Path | None) -> Path:
    """The data directory, or a clear error naming the setting that is missing."""
    if data_dir is None:
        raise ReplaySetupError(
            "replay data_dir is not set (STREAMPULSE_REPLAY__DATA_DIR): "
            "point it at a directory of Jetstream captures and a rate profile"
        )
    if not data_dir.is_dir():
        raise ReplaySetupError(f"replay data_dir {data_dir} is not a directory")
    return data_dir


def read_captures(data_dir: Path) -> list[bytes]:
    """Every line of every capture, files by name, lines in file (arrival) order."""
    paths = sorted(data_dir.glob(CAPTURE_GLOB))
    if not paths:
        raise ReplaySetupError(f"no {CAPTURE_GLOB} captures in {data_dir}")
    lines: list[bytes] = []
    for path in paths:
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise ReplaySetupError(f"unreadable capture {path}: {exc}") from exc
        lines.extend(line.rstrip(b"\r") for line in content.split(b"\n") if line.strip())
    log.debug("read %d capture lines from %d files", len(lines), len(paths))
    return lines


def load_profile(data_dir: Path) -> RateProfile:
    """The first ``per_second_rates_*.csv`` by name: ``second`` plus one column per NSID."""
    found = sorted(data_dir.glob(PROFILE_GLOB))
    if not found:
        raise ReplaySetupError(f"no {PROFILE_GLOB} rate profile in {data_dir}")
    path = found[0]
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        seconds = tuple(
            SecondCounts(int(row[LIKE]), int(row[POST]), int(row[FOLLOW])) for row in rows
        )
        start = datetime.fromisoformat(rows[0]["second"]) if rows else None
    except (OSError, KeyError, ValueError) as exc:
        raise ReplaySetupError(f"unreadable rate profile {path}: {exc}") from exc
    if start is None or not any(s.total for s in seconds):
        raise ReplaySetupError(f"rate profile {path} has no events")
    return RateProfile(seconds, int(start.timestamp()) * 1_000_000)


def load_dictionary(data_dir: Path | None) -> bytes | None:
    """The shared zstd dictionary of the data directory, or None when it has none."""
    if data_dir is None:
        return None
    path = data_dir / DICTIONARY_NAME
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ReplaySetupError(f"unreadable zstd dictionary {path}: {exc}") from exc
