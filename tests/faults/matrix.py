"""The fault matrix's records: one row per injected fault (items 1-7 of docs/reliability.md) and
one per security check (items 8-10), written by the tests as JSON files and printed by
``python -m tests.faults.report`` as two tables and one JSON line.

A scenario records what was injected and what came out, counted: events sent, delivered,
dead-lettered, duplicated and lost, and what the process did (``up``: it rode the fault out;
``exited``: it exited as designed; ``crashed``: it died unexpectedly; ``hung``: it stopped making
progress without exiting). A test asserts its own outcome; the record is the evidence.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Process = Literal["up", "exited", "crashed", "hung"]
DESIGNED: frozenset[str] = frozenset({"up", "exited"})


def artifacts_dir() -> Path:
    root = Path(os.environ.get("STREAMPULSE_TEST_ARTIFACTS_DIR", "test-artifacts"))
    return root / "faults"


@dataclass
class Scenario:
    """One injected fault and its counted outcome."""

    item: int  # the numbered fault of docs/reliability.md
    stage: str
    fault: str
    events_sent: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    duplicated: int = 0
    lost: int = 0
    process: Process = "up"
    exactly_once: bool = False  # whether duplicates count against exactly-once
    notes: str = ""
    extra: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", f"{self.item}-{self.stage}-{self.fault}".lower())

    def write(self) -> Path:
        path = artifacts_dir() / "scenarios" / f"{self.key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


@dataclass
class SecurityCheck:
    item: int
    check: str
    passed: bool
    detail: str = ""

    def write(self) -> Path:
        key = re.sub(r"[^a-z0-9]+", "-", f"{self.item}-{self.check}".lower())
        path = artifacts_dir() / "security" / f"{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def read_all(directory: Path | None = None) -> tuple[list[Scenario], list[SecurityCheck]]:
    root = directory or artifacts_dir()
    scenarios = [
        Scenario(**json.loads(p.read_text())) for p in sorted(root.glob("scenarios/*.json"))
    ]
    checks = [
        SecurityCheck(**json.loads(p.read_text())) for p in sorted(root.glob("security/*.json"))
    ]
    return scenarios, checks
