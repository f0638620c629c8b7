"""Enrichment against the real thing: a KRaft broker, a model server with tiny models, the worker
as a process; faults injected by killing processes."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from streampulse.events import decode_dead_letter
from streampulse.ingest.normalizing import normalize
from streampulse.kafka import ensure_topics
from streampulse.local.ports import free_port
from streampulse.replay.streams import build_stream
from streampulse.settings import KafkaSettings, ReplaySettings, Settings
from tests.harness.processes import ManagedProcess
from tests.harness.tiny_models import TinyModels, build_tiny_models
from tests.harness.topics import read_topic, topic_end_offsets, wait_for_count

pytestmark = pytest.mark.integration

MODELS = ("toxicity", "ner", "sentiment")


@pytest.fixture(scope="module")
def tiny(settings: Settings) -> TinyModels:
    return build_tiny_models(settings.cache_dir)


Start = Callable[..., ManagedProcess]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    started: list[ManagedProcess] = []

    def launch(args: list[str], env: dict[str, str]) -> ManagedProcess:
        process = ManagedProcess.streampulse(args, env, tmp_path / f"{args[0]}-{len(started)}.log")
        started.append(process)
        return process

    yield launch
    for process in reversed(started):
        process.stop()


def _model_server(start: Start, tiny: TinyModels, port: int) -> ManagedProcess:
    env = {
        "STREAMPULSE_SERVING__MODEL_DIRS": orjson.dumps([str(d) for d in tiny.dirs]).decode(),
        "STREAMPULSE_SERVING__PORT": str(port),
        "STREAMPULSE_SERVING__MAX_TEXT_CHARS": "1000",
    }
    server = start(["serve-models"], env)
    server.wait_for_output(r"ready: ner, sentiment, toxicity", timeout_s=180)
    return server


def _enrich_env(kafka: KafkaSettings, port: int, **enrich: object) -> dict[str, str]:
    env = {
        "STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "STREAMPULSE_KAFKA__RAW_TOPIC": kafka.raw_topic,
        "STREAMPULSE_KAFKA__ENRICHED_TOPIC": kafka.enriched_topic,
        "STREAMPULSE_KAFKA__DLQ_TOPIC": kafka.dlq_topic,
        "STREAMPULSE_KAFKA__PARTITIONS": str(kafka.partitions),
        "STREAMPULSE_ENRICH__GATEWAY_URL": f"http://127.0.0.1:{port}",
        "STREAMPULSE_ENRICH__GROUP_ID": f"enrich-{kafka.raw_topic}",
        "STREAMPULSE_ENRICH__BREAKER_OPEN_S": "0.5",
    }
    env.update({f"STREAMPULSE_ENRICH__{k.upper()}": str(v) for k, v in enrich.items()})
    return env


def _produce_raw(
    kafka: KafkaSettings, data_dir: Path, events: int, extra: list[bytes] = ()
) -> set[str]:
    """Write a realistic raw stream; returns the event ids of the posts that must be enriched."""
    ensure_topics(kafka, [kafka.raw_topic, kafka.enriched_topic, kafka.dlq_topic])
    stream = build_stream(
        ReplaySettings(data_dir=data_dir, stream="synthetic", synthetic_events=events)
    )
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5})
    posts: set[str] = set()
    for event in stream.events:
        record = normalize(event.raw, 1)
        is_post = record["collection"] == "app.bsky.feed.post" and bool(record["text"])
        if is_post and record["operation"] in ("create", "update"):
            posts.add(record["event_id"])
        producer.produce(kafka.raw_topic, orjson.dumps(record), record["did"].encode())
        producer.poll(0)
    for value in extra:
        producer.produce(kafka.raw_topic, value, b"did:plc:poison")
    assert producer.flush(30) == 0
    return posts


def _enriched(kafka: KafkaSettings) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in read_topic(kafka, kafka.enriched_topic)]


def _wait_enriched(
    kafka: KafkaSettings, posts: set[str], workers: list[ManagedProcess], timeout_s: float = 240
) -> list[dict[str, Any]]:
    """Wait until every post id is in the enriched topic; fail at once if a worker died."""
    deadline = time.monotonic() + timeout_s
    while True:
        for worker in workers:
            if worker.process.poll() is not None:
                raise AssertionError(f"enrich exited early:\n{worker.output()[-3000:]}")
        filled = sum(topic_end_offsets(kafka, kafka.enriched_topic).values()) >= len(posts)
        records = _enriched(kafka) if filled else []
        if filled and {r["event_id"] for r in records} >= posts:
            return records
        if time.monotonic() > deadline:
            return _enriched(kafka)
        time.sleep(0.5)


def _assert_every_post_enriched(records: list[dict[str, Any]], posts: set[str]) -> int:
    ids = [r["event_id"] for r in records]
    assert set(ids) == posts, f"missing {len(posts - set(ids))}, unexpected {len(set(ids) - posts)}"
    for record in records:
        assert 0.0 <= record["toxicity"]["score"] <= 1.0
        assert set(record["toxicity"]["labels"]) == {"toxic", "insult", "threat"}
        assert record["sentiment"]["label"]
        assert isinstance(record["entities"], list)
        assert sorted(m.split("@")[0] for m in record["models"]) == sorted(MODELS)
        assert record["enriched_at_us"] > 0
    return len(ids) - len(set(ids))


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
def test_every_post_is_enriched(
    start: Start,
    tiny: TinyModels,
    kafka_settings: KafkaSettings,
    jetstream_data_dir: Path,
    delivery: str,
) -> None:
    port = free_port()
    _model_server(start, tiny, port)
    posts = _produce_raw(kafka_settings, jetstream_data_dir, 6000)
    assert len(posts) > 1000
    worker = start(["enrich"], _enrich_env(kafka_settings, port, delivery=delivery))
    records = _wait_enriched(kafka_settings, posts, [worker])
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    duplicates = _assert_every_post_enriched(records, posts)
    if delivery == "exactly_once":
        assert duplicates == 0
        assert len(records) == len(posts)
    assert read_topic(kafka_settings, kafka_settings.dlq_topic) == []


def test_model_server_killed_and_restarted_loses_nothing(
    start: Start, tiny: TinyModels, kafka_settings: KafkaSettings, jetstream_data_dir: Path
) -> None:
    port = free_port()
    server = _model_server(start, tiny, port)
    posts = _produce_raw(kafka_settings, jetstream_data_dir, 12000)
    worker = start(["enrich"], _enrich_env(kafka_settings, port, batch_posts=32))
    wait_for_count(kafka_settings, kafka_settings.enriched_topic, 300)
    server.signal(signal.SIGKILL)
    server.wait()
    _model_server(start, tiny, port)
    records = _wait_enriched(kafka_settings, posts, [worker])
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    _assert_every_post_enriched(records, posts)
    assert read_topic(kafka_settings, kafka_settings.dlq_topic) == []
    assert "breaker open" in worker.output()


def test_worker_killed_and_restarted_loses_nothing(
    start: Start, tiny: TinyModels, kafka_settings: KafkaSettings, jetstream_data_dir: Path
) -> None:
    port = free_port()
    _model_server(start, tiny, port)
    posts = _produce_raw(kafka_settings, jetstream_data_dir, 12000)
    env = _enrich_env(kafka_settings, port, batch_posts=32)
    first = start(["enrich"], env)
    wait_for_count(kafka_settings, kafka_settings.enriched_topic, 300)
    first.signal(signal.SIGKILL)
    first.wait()
    second = start(["enrich"], env)
    records = _wait_enriched(kafka_settings, posts, [second])
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    _assert_every_post_enriched(records, posts)


def test_two_workers_with_a_rebalance_lose_nothing(
    start: Start, tiny: TinyModels, kafka_settings: KafkaSettings, jetstream_data_dir: Path
) -> None:
    port = free_port()
    _model_server(start, tiny, port)
    posts = _produce_raw(kafka_settings, jetstream_data_dir, 12000)
    env = _enrich_env(kafka_settings, port, batch_posts=32)
    first = start(["enrich"], env)
    wait_for_count(kafka_settings, kafka_settings.enriched_topic, 300)
    second = start(["enrich"], env)
    second.wait_for_output("assigned", timeout_s=60)
    records = _wait_enriched(kafka_settings, posts, [first, second])
    for worker in (first, second):
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
    _assert_every_post_enriched(records, posts)
    assert "revoked" in first.output()


def test_rejected_and_poison_records_become_dead_letters(
    start: Start, tiny: TinyModels, kafka_settings: KafkaSettings, jetstream_data_dir: Path
) -> None:
    port = free_port()
    _model_server(start, tiny, port)
    too_long = dict(
        normalize(
            next(
                e.raw
                for e in build_stream(
                    ReplaySettings(data_dir=jetstream_data_dir, stream="recorded")
                ).events
                if b'"app.bsky.feed.post"' in e.raw and b'"create"' in e.raw
            ),
            1,
        )
    )
    too_long["event_id"] += "-long"
    too_long["text"] = "far too long for the model server " * 40  # > 1000 characters
    poison = [
        b"{not json",
        b"\xff\xfe",
        orjson.dumps({"event_id": 7, "did": "did:plc:x", "time_us": 1, "kind": "commit"}),
        orjson.dumps([1, 2]),
        orjson.dumps({**too_long, "event_id": "x-wrong-text", "text": {"no": 1}}),
        orjson.dumps(too_long),
    ]
    posts = _produce_raw(kafka_settings, jetstream_data_dir, 3000, extra=poison)
    worker = start(["enrich"], _enrich_env(kafka_settings, port))
    records = _wait_enriched(kafka_settings, posts, [worker])
    wait_for_count(kafka_settings, kafka_settings.dlq_topic, len(poison))
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    _assert_every_post_enriched(records, posts)
    letters = [
        decode_dead_letter(r.value) for r in read_topic(kafka_settings, kafka_settings.dlq_topic)
    ]
    assert sorted(original for _letter, original in letters) == sorted(poison)
    reasons = {original: letter["reason"] for letter, original in letters}
    assert reasons[b"{not json"] == "invalid_json"
    assert reasons[poison[2]] == "wrong_type"
    assert reasons[poison[3]] == "not_an_object"
    assert reasons[poison[5]] == "unscored"
    unscored = next(letter for letter, original in letters if original == poison[5])
    assert "rejected_413" in unscored["error"]
    assert all(letter["stage"] == "enrich" for letter, _original in letters)
    summary = orjson.loads(worker.wait_for_output(r"enrich-summary (\{.*\})").group(1))
    assert summary["dead_letters"] == len(poison)
