"""`streampulse up` under a fault, and what it exposes: every listening socket of the stack is on
loopback (item 8), and a stage killed under it stops the whole stack with a non-zero exit that
names the stage, leaving no process behind (item 7; docs/reliability.md says why it does not
restart the stage)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from streampulse.local.ports import free_port
from streampulse.local.runs import RunRecord, alive
from tests.faults.matrix import Scenario, SecurityCheck
from tests.harness.processes import ManagedProcess
from tests.harness.sockets import listeners, process_tree

pytestmark = pytest.mark.faults


def test_a_killed_stage_stops_up_loudly_and_every_socket_was_on_loopback(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {
        "STREAMPULSE_LOCAL__STATE_DIR": str(state),
        "STREAMPULSE_LOCAL__KAFKA_PORT": str(free_port()),
        "STREAMPULSE_LOCAL__KAFKA_HEAP_MB": "512",
        "STREAMPULSE_LOCAL__STATUS_EVERY_S": "5",
        "STREAMPULSE_DASHBOARD__PORT": str(free_port()),
        "STREAMPULSE_JETSTREAM__ENDPOINTS": f'["ws://127.0.0.1:{free_port()}/subscribe"]',
    }
    up = ManagedProcess.streampulse(["up"], env, tmp_path / "up.log")
    try:
        up.wait_for_output("all stages running", timeout_s=900)
        record = RunRecord.read(state)
        assert record is not None
        pids = record.pids()

        found = listeners(up.process.pid)
        exposed = [x for x in found if not x.loopback]
        SecurityCheck(
            item=8,
            check=f"every listening socket of `up` is on loopback ({len(found)} sockets)",
            passed=not exposed and len(found) >= len(record.stages),
            detail="; ".join(f"{x.address}:{x.port} {x.command[:60]}" for x in exposed),
        ).write()
        assert len(found) >= len(record.stages), found
        assert exposed == [], exposed

        enrich = record.stages["enrich"].pid
        assert enrich is not None
        os.kill(enrich, signal.SIGKILL)
        killed_at = time.monotonic()
        code = up.wait(timeout_s=180)
        stopped_s = time.monotonic() - killed_at
        output = up.output()
        left = [pid for pid in [*pids, *process_tree(up.process.pid)[1:]] if alive(pid)]
        Scenario(
            item=7,
            stage="local",
            fault="the enrich process SIGKILLed under `streampulse up`",
            process="exited" if code != 0 and not left else "crashed",
            notes=f"`up` exited {code} after {stopped_s:.1f} s, {len(left)} processes left",
        ).write()
        assert code != 0
        assert "enrich exited" in output, output[-2000:]
        assert left == []
        assert RunRecord.read(state) is None
    finally:
        up.stop(timeout_s=120)
