"""`streampulse up` end to end: real Kafka, replay fallback, ingest, progress, clean stop."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from streampulse.local.kafka_broker import free_port
from streampulse.settings import KafkaSettings
from tests.harness.processes import ManagedProcess
from tests.harness.topics import wait_for_count

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_streams_the_replay_into_kafka_and_stops_everything(
    tmp_path: Path, jetstream_data_dir: Path
) -> None:
    kafka_port = free_port()
    up = ManagedProcess.streampulse(
        ["up"],
        {
            "STREAMPULSE_LOCAL__STATE_DIR": str(tmp_path / "state"),
            "STREAMPULSE_LOCAL__KAFKA_PORT": str(kafka_port),
            "STREAMPULSE_LOCAL__KAFKA_HEAP_MB": "512",
            # a closed local port: "live Jetstream" is unreachable, deterministically
            "STREAMPULSE_JETSTREAM__ENDPOINTS": f'["ws://127.0.0.1:{free_port()}/subscribe"]',
        },
        tmp_path / "up.log",
    )
    try:
        up.wait_for_output("live Jetstream is NOT reachable", timeout_s=120)
        up.wait_for_output(r"ingest +[1-9]\d* ev/s", timeout_s=60)
        kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{kafka_port}")
        assert wait_for_count(kafka, kafka.raw_topic, 200, timeout_s=60) >= 200
        output = up.output()
        pids = [int(pid) for pid in re.findall(r"\(pid (\d+)", output)]
        assert len(pids) == 3, output  # kafka, replay, ingest
        up.signal(signal.SIGINT)
        assert up.wait(timeout_s=90) == 0
        assert "stopped: every process started by `up` has exited" in up.output()
        assert [pid for pid in pids if _alive(pid)] == []
    finally:
        up.stop()
