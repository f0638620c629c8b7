"""The Flink job killed and restored from its last checkpoint: nothing counted twice or missed.

Phase A is committed (visible in the tables, so a checkpoint holds it). Phase B is produced and
the job is killed at once, so B may be anywhere between unread and processed-but-uncommitted.
The job restarts from the newest completed checkpoint and phase C follows, with a duplicate of
an event of phase A: it is counted once only if the dedup state was restored too. The
append-only ``enriched_posts`` shows any replayed record as a second row. Each phase's last
event is in a later minute, so its watermark closes the minutes before it (and their volume
windows are written); the last one closes every minute of the test.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from streampulse.kafka import ensure_topics, producer_config
from streampulse.settings import KafkaSettings, Settings
from tests.harness.flink import FlinkJob, flink_environment, latest_checkpoint, query, wait_until
from tests.integration.test_flink_aggregates import POST, at, enriched, raw

pytestmark = pytest.mark.integration

A, B = "did:plc:restore-a", "did:plc:restore-b"
PHASE_A = [
    *(raw(n, A if n % 2 else B, at(0, n), langs=["en"]) for n in range(1, 6)),
    raw(6, A, at(1, 6), langs=["en"]),
]
PHASE_B = [raw(n, A, at(2, n), langs=["en"]) for n in range(7, 9)]
PHASE_C = [raw(n, B, at(3, n), langs=["en"]) for n in range(9, 11)]
CLOSING = raw(11, B, at(5, 11), langs=["en"])
QUERIES = [
    "SELECT event_id FROM enriched_posts",
    "SELECT window_start, collection, lang, events, authors FROM volume_per_minute",
]


def _produce(kafka: KafkaSettings, events: list[dict[str, Any]]) -> None:
    producer = Producer(producer_config(kafka, client_id="flink-restore-test"))
    for event in events:
        producer.produce(kafka.raw_topic, value=orjson.dumps(event), key=b"k")
        producer.produce(kafka.enriched_topic, value=enriched(event, 0.2, []), key=b"k")
    assert producer.flush(30) == 0


def _total(rows: list[list[dict[str, Any]]]) -> tuple[int, int]:
    return len(rows[0]), sum(row["events"] for row in rows[1])


def test_restore_from_checkpoint_counts_everything_once(
    kafka_settings: KafkaSettings, settings: Settings, tmp_path: Path
) -> None:
    env = flink_environment(settings.cache_dir)
    kafka = kafka_settings.model_copy(update={"partitions": 1})
    ensure_topics(kafka, [kafka.raw_topic, kafka.enriched_topic])
    warehouse, checkpoints = tmp_path / "warehouse", tmp_path / "checkpoints"
    args: dict[str, object] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "raw_topic": kafka.raw_topic,
        "enriched_topic": kafka.enriched_topic,
        "group_id": f"flink-{uuid.uuid4().hex[:6]}",
        "warehouse": warehouse,
        "checkpoint_interval_ms": 1000,
        "checkpoint_dir": checkpoints.as_uri(),
    }
    first = FlinkJob(env, args, tmp_path / "job-1.log")
    try:
        job_id = first.wait_started()
        # Flink's working files are in the job's scratch directory, not the system's temp
        assert list(first.scratch_dir.glob("minicluster_*/blobStorage"))
        _produce(kafka, PHASE_A)
        wait_until(lambda: query(env, warehouse, QUERIES), lambda r: _total(r) == (6, 5), 240,
                   "phase A committed")  # fmt: skip
        _produce(kafka, PHASE_B)
    finally:
        first.kill()
    assert not first.scratch_dir.exists()  # removed after the crash as well
    restored_from = latest_checkpoint(checkpoints, job_id)

    second = FlinkJob(env, {**args, "restore_from": restored_from.as_uri()}, tmp_path / "job-2.log")
    try:
        second.wait_started()
        # PHASE_A[0] again: a duplicate across restarts
        _produce(kafka, [*PHASE_C, PHASE_A[0], CLOSING])
        posts, volume = wait_until(
            lambda: query(env, warehouse, QUERIES),
            lambda r: _total(r) == (11, 10),
            240,
            "phases B and C committed after the restore",
        )
    finally:
        second.stop()

    every = [*PHASE_A, *PHASE_B, *PHASE_C, CLOSING]
    assert sorted(row["event_id"] for row in posts) == sorted(e["event_id"] for e in every)
    assert sorted(tuple(row.values()) for row in volume) == [  # minute 5 (CLOSING) is open
        ("2025-01-15T12:00:00", POST, "en", 5, 2),
        ("2025-01-15T12:01:00", POST, "en", 1, 1),
        ("2025-01-15T12:02:00", POST, "en", 2, 1),
        ("2025-01-15T12:03:00", POST, "en", 2, 1),
    ]
