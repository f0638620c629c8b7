"""Ingest against the real thing: a KRaft broker, the replay server, the worker as a process."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streampulse.events import decode_dead_letter
from streampulse.ingest.normalizing import normalize
from streampulse.replay.streams import build_stream
from streampulse.settings import KafkaSettings, ReplaySettings
from tests.harness.processes import ManagedProcess
from tests.harness.topics import read_topic, wait_for_count

pytestmark = pytest.mark.integration

SYNTHETIC = 10_000


def _replay_env(data_dir: Path, **overrides: object) -> dict[str, str]:
    values: dict[str, object] = {
        "port": 0,
        "data_dir": data_dir,
        "stream": "mixed",
        "synthetic_events": SYNTHETIC,
        "rate": "max",
    }
    values.update(overrides)
    return {
        f"STREAMPULSE_REPLAY__{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in values.items()
    }


def _ingest_env(
    kafka: KafkaSettings, url: str, dictionary: Path, **ingest: object
) -> dict[str, str]:
    env = {
        "STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "STREAMPULSE_KAFKA__RAW_TOPIC": kafka.raw_topic,
        "STREAMPULSE_KAFKA__DLQ_TOPIC": kafka.dlq_topic,
        "STREAMPULSE_KAFKA__PARTITIONS": str(kafka.partitions),
        "STREAMPULSE_JETSTREAM__ENDPOINTS": orjson.dumps([url]).decode(),
        "STREAMPULSE_JETSTREAM__ZSTD_DICTIONARY": str(dictionary),
        "STREAMPULSE_JETSTREAM__COMPRESS": "false",
        "STREAMPULSE_INGEST__CURSOR_MARGIN_S": "1.0",
        "STREAMPULSE_INGEST__RECONNECT_INITIAL_S": "0.05",
    }
    env.update({f"STREAMPULSE_INGEST__{k.upper()}": str(v) for k, v in ingest.items()})
    return env


Launch = Callable[..., ManagedProcess]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start ``streampulse <command>`` processes; all are stopped when the test ends."""
    started: list[ManagedProcess] = []

    def start(command: str, env: dict[str, str]) -> ManagedProcess:
        log = tmp_path / f"{command}-{len(started)}.log"
        process = ManagedProcess.streampulse([command], env, log)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


def _start_replay(launch: Launch, data_dir: Path, **overrides: object) -> str:
    replay = launch("replay", _replay_env(data_dir, **overrides))
    match = replay.wait_for_output(r"listening on (ws://\S+/subscribe)", timeout_s=60)
    return match.group(1)


def _expected(data_dir: Path, **overrides: Any) -> dict[str, dict[str, Any]]:
    """What the worker must write: every event of the replayed stream, normalized."""
    settings = ReplaySettings(data_dir=data_dir, stream="mixed", synthetic_events=SYNTHETIC)
    stream = build_stream(settings.model_copy(update=overrides))
    expected: dict[str, dict[str, Any]] = {}
    for event in stream.events:
        record = dict(normalize(event.raw, 0))
        record.pop("ingested_at_us")
        expected[str(record["event_id"])] = record
    return expected


def _written(kafka: KafkaSettings) -> list[dict[str, Any]]:
    records = []
    for record in read_topic(kafka, kafka.raw_topic):
        value = orjson.loads(record.value)
        assert record.key == value["did"].encode(), "records are keyed by DID"
        value.pop("ingested_at_us")
        records.append(value)
    return records


def _wait_for_all(kafka: KafkaSettings, expected: dict[str, Any], timeout_s: float = 180) -> None:
    """Wait until every expected event id is in the raw topic (duplicates do not count)."""
    wait_for_count(kafka, kafka.raw_topic, len(expected), timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        seen = {orjson.loads(r.value)["event_id"] for r in read_topic(kafka, kafka.raw_topic)}
        if seen >= expected.keys() or time.monotonic() > deadline:
            return
        time.sleep(0.5)


def _assert_complete(written: list[dict[str, Any]], expected: dict[str, dict[str, Any]]) -> int:
    """Every expected event is there with the expected content; returns the duplicate count."""
    by_id: dict[str, dict[str, Any]] = {}
    for record in written:
        seen = by_id.setdefault(record["event_id"], record)
        assert seen == record, "a duplicate must be the same event"
    missing = set(expected) - set(by_id)
    assert not missing, f"{len(missing)} events missing, e.g. {sorted(missing)[:3]}"
    assert set(by_id) == set(expected)
    for event_id, record in by_id.items():
        assert record == expected[event_id]
    return len(written) - len(by_id)


def test_every_replayed_event_lands_in_kafka_as_normalized(
    launch: Launch, jetstream_data_dir: Path, kafka_settings: KafkaSettings
) -> None:
    expected = _expected(jetstream_data_dir)
    assert len(expected) >= 166 + SYNTHETIC
    url = _start_replay(launch, jetstream_data_dir)
    dictionary = jetstream_data_dir / "zstd_dictionary_v1.bin"
    ingest = launch("ingest", _ingest_env(kafka_settings, url, dictionary))
    wait_for_count(kafka_settings, kafka_settings.raw_topic, len(expected))
    ingest.signal(signal.SIGTERM)
    assert ingest.wait() == 0
    summary = orjson.loads(ingest.wait_for_output(r"ingest-summary (\{.*\})").group(1))
    written = _written(kafka_settings)
    assert len(written) == len(expected), "one connection, no duplicates"
    assert _assert_complete(written, expected) == 0
    assert summary["produced"] == len(expected)
    assert summary["dead_letters"] == 0


def test_sigkill_and_restart_loses_nothing(
    launch: Launch, jetstream_data_dir: Path, kafka_settings: KafkaSettings
) -> None:
    synthetic = 40_000
    expected = _expected(jetstream_data_dir, synthetic_events=synthetic)
    url = _start_replay(launch, jetstream_data_dir, synthetic_events=synthetic, rate=8000)
    dictionary = jetstream_data_dir / "zstd_dictionary_v1.bin"
    env = _ingest_env(kafka_settings, url, dictionary)
    first = launch("ingest", env)
    wait_for_count(kafka_settings, kafka_settings.raw_topic, 8_000)
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    second = launch("ingest", env)
    second.wait_for_output("resuming from cursor")
    _wait_for_all(kafka_settings, expected)
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    duplicates = _assert_complete(_written(kafka_settings), expected)
    assert duplicates < 10_000, "the overlap is bounded by the cursor margin"


def test_dropped_connections_resume_without_gaps(
    launch: Launch, jetstream_data_dir: Path, kafka_settings: KafkaSettings
) -> None:
    expected = _expected(jetstream_data_dir)
    url = _start_replay(launch, jetstream_data_dir, drop_after=3_000)
    dictionary = jetstream_data_dir / "zstd_dictionary_v1.bin"
    ingest = launch("ingest", _ingest_env(kafka_settings, url, dictionary))
    _wait_for_all(kafka_settings, expected)
    ingest.signal(signal.SIGTERM)
    assert ingest.wait() == 0
    summary = orjson.loads(ingest.wait_for_output(r"ingest-summary (\{.*\})").group(1))
    assert summary["reconnects"] >= 3
    _assert_complete(_written(kafka_settings), expected)


def test_malformed_frames_become_dead_letters(
    launch: Launch, jetstream_data_dir: Path, kafka_settings: KafkaSettings
) -> None:
    expected = _expected(jetstream_data_dir)
    every = 1_000
    malformed = len(expected) // every
    url = _start_replay(launch, jetstream_data_dir, malformed_every=every)
    dictionary = jetstream_data_dir / "zstd_dictionary_v1.bin"
    ingest = launch("ingest", _ingest_env(kafka_settings, url, dictionary))
    wait_for_count(kafka_settings, kafka_settings.raw_topic, len(expected))
    wait_for_count(kafka_settings, kafka_settings.dlq_topic, malformed)
    ingest.signal(signal.SIGTERM)
    assert ingest.wait() == 0
    written = _written(kafka_settings)
    assert len(written) == len(expected)
    _assert_complete(written, expected)
    letters = [
        decode_dead_letter(r.value) for r in read_topic(kafka_settings, kafka_settings.dlq_topic)
    ]
    assert len(letters) == malformed
    reasons = Counter(letter["reason"] for letter, _original in letters)
    assert set(reasons) == {"invalid_json", "missing_field", "unknown_kind", "oversized_text"}
    for letter, original in letters:
        assert letter["stage"] == "ingest"
        assert letter["error"]
        assert original, "the original bytes are kept"
    metrics = ingest.output()
    assert "ingest-summary" in metrics
    summary = orjson.loads(ingest.wait_for_output(r"ingest-summary (\{.*\})").group(1))
    assert summary["dead_letters"] == malformed


def test_compressed_and_plain_streams_yield_the_same_records(
    launch: Launch, jetstream_data_dir: Path, kafka_broker: Any
) -> None:
    url = _start_replay(launch, jetstream_data_dir)
    dictionary = jetstream_data_dir / "zstd_dictionary_v1.bin"
    expected = _expected(jetstream_data_dir)
    results = []
    for compress in ("true", "false"):
        kafka = KafkaSettings(
            bootstrap_servers=kafka_broker.bootstrap_servers,
            raw_topic=f"raw-compress-{compress}-{id(results)}",
            dlq_topic=f"dlq-compress-{compress}-{id(results)}",
            partitions=3,
        )
        env = _ingest_env(kafka, url, dictionary)
        env["STREAMPULSE_JETSTREAM__COMPRESS"] = compress
        ingest = launch("ingest", env)
        wait_for_count(kafka, kafka.raw_topic, len(expected))
        ingest.signal(signal.SIGTERM)
        assert ingest.wait() == 0
        results.append(sorted(_written(kafka), key=lambda r: r["event_id"]))
    compressed, plain = results
    assert len(compressed) == len(expected)
    assert compressed == plain
