"""The record of a running ``streampulse up``: who runs, where each stage answers.

``up`` writes ``<state_dir>/up.json`` as stages start and removes it when everything has stopped;
``streampulse status`` and ``streampulse down`` read it from another terminal.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

RECORD_NAME = "up.json"


@dataclass
class Stage:
    name: str
    pid: int | None = None
    metrics_url: str = ""
    url: str = ""


@dataclass
class RunRecord:
    """What ``up`` started, written atomically after every change."""

    pid: int
    started_at: float
    stages: dict[str, Stage] = field(default_factory=dict)
    ready: bool = False

    def add(self, stage: Stage, state_dir: Path) -> None:
        self.stages[stage.name] = stage
        self.write(state_dir)

    def write(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        partial = state_dir / f".{RECORD_NAME}.partial"
        partial.write_bytes(orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2))
        partial.replace(state_dir / RECORD_NAME)

    @classmethod
    def read(cls, state_dir: Path) -> RunRecord | None:
        path = state_dir / RECORD_NAME
        if not path.is_file():
            return None
        data = orjson.loads(path.read_bytes())
        stages = {name: Stage(**stage) for name, stage in data.pop("stages").items()}
        return cls(stages=stages, **data)

    def pids(self) -> list[int]:
        return [self.pid, *(s.pid for s in self.stages.values() if s.pid is not None)]


def remove_record(state_dir: Path) -> None:
    (state_dir / RECORD_NAME).unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (exited, waiting to be reaped by its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust the signal check
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def stop_run(record: RunRecord, timeout_s: float = 120.0) -> list[int]:
    """Ask ``up`` to stop (SIGTERM: it stops its stages in order); if ``up`` itself is gone,
    stop its stages directly. Returns the pids still alive after ``timeout_s``, killed."""
    if alive(record.pid):
        os.kill(record.pid, signal.SIGTERM)
    else:
        for pid in record.pids()[1:]:
            if alive(pid):
                _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p) for p in record.pids()):
        time.sleep(0.2)
    left = [p for p in record.pids() if alive(p)]
    for pid in left:
        _signal_group(pid, signal.SIGKILL)
    return left


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
