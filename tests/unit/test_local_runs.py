"""The record of a running ``streampulse up`` and how ``down`` stops it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from streampulse.local.runs import RunRecord, Stage, alive, remove_record, stop_run
from streampulse.local.stack import latest_checkpoint

pytestmark = pytest.mark.unit


def test_the_record_round_trips_and_is_removed(tmp_path: Path) -> None:
    record = RunRecord(pid=123, started_at=1.5)
    record.add(Stage("kafka", 456, url="127.0.0.1:9092"), tmp_path)
    record.add(Stage("ingest", 789, metrics_url="http://127.0.0.1:1/metrics"), tmp_path)
    assert RunRecord.read(tmp_path) == record
    assert record.pids() == [123, 456, 789]
    remove_record(tmp_path)
    assert RunRecord.read(tmp_path) is None


def test_down_stops_the_stages_itself_when_up_is_gone(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record = RunRecord(pid=gone.pid, started_at=time.time(), stages={"x": Stage("x", sleeper.pid)})
    try:
        assert stop_run(record, timeout_s=20) == []
        assert sleeper.wait(timeout=5) != 0
        assert not alive(sleeper.pid)
    finally:
        sleeper.kill()


def test_latest_checkpoint_is_the_newest_completed_one(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "job-a" / "chk-3").mkdir(parents=True)
    (tmp_path / "job-a" / "chk-3" / "_metadata").write_text("x")
    (tmp_path / "job-b" / "chk-9").mkdir(parents=True)  # in progress: no _metadata yet
    assert latest_checkpoint(tmp_path) == tmp_path / "job-a" / "chk-3"
