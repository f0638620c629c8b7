"""One trace per post, across real processes: replay -> ingest -> Kafka -> enrich -> model server.

Every process writes its spans to its own JSON-lines file; the test joins them by trace id and
checks the parent-child chain a post's trace must have, and the traceparent headers in Kafka.
"""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streampulse.events import POST
from streampulse.ingest.normalizing import normalize
from streampulse.local.ports import free_port
from streampulse.replay.streams import build_stream
from streampulse.settings import KafkaSettings, ReplaySettings, Settings
from tests.harness.processes import ManagedProcess
from tests.harness.tiny_models import TinyModels, build_tiny_models
from tests.harness.topics import read_topic, topic_end_offsets, wait_for_count

pytestmark = pytest.mark.integration

SYNTHETIC = 2000
MODELS = ("ner", "sentiment", "toxicity")

Span = dict[str, Any]
Launch = Callable[[list[str], dict[str, str]], ManagedProcess]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    started: list[ManagedProcess] = []

    def start(args: list[str], env: dict[str, str]) -> ManagedProcess:
        process = ManagedProcess.streampulse(args, env, tmp_path / f"{args[0]}.log")
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


def _kafka_env(kafka: KafkaSettings) -> dict[str, str]:
    return {
        "STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "STREAMPULSE_KAFKA__RAW_TOPIC": kafka.raw_topic,
        "STREAMPULSE_KAFKA__ENRICHED_TOPIC": kafka.enriched_topic,
        "STREAMPULSE_KAFKA__DLQ_TOPIC": kafka.dlq_topic,
        "STREAMPULSE_KAFKA__PARTITIONS": str(kafka.partitions),
    }


def _tracing_env(traces_file: Path) -> dict[str, str]:
    return {
        "STREAMPULSE_TELEMETRY__TRACES_FILE": str(traces_file),
        "STREAMPULSE_TELEMETRY__TRACE_SAMPLE_RATIO": "1.0",
    }


def _posts_to_enrich(data_dir: Path) -> tuple[int, set[str]]:
    """How many events the replay serves, and the ids of the posts enrich must score."""
    stream = build_stream(ReplaySettings(data_dir=data_dir, synthetic_events=SYNTHETIC))
    posts: set[str] = set()
    for event in stream.events:
        record = normalize(event.raw, 1)
        if (
            record["collection"] == POST
            and record["operation"] in ("create", "update")
            and record["text"]
        ):
            posts.add(record["event_id"])
    return len(stream.events), posts


def _wait_enriched(
    kafka: KafkaSettings, posts: set[str], enrich: ManagedProcess, timeout_s: float = 180
) -> list[tuple[dict[str, Any], dict[str, bytes]]]:
    """Every post's enriched record, with its headers; fails early if enrich died."""
    deadline = time.monotonic() + timeout_s
    while True:
        if enrich.process.poll() is not None:
            raise AssertionError(f"enrich exited early:\n{enrich.output()[-3000:]}")
        if sum(topic_end_offsets(kafka, kafka.enriched_topic).values()) >= len(posts):
            records = [
                (orjson.loads(r.value), r.headers) for r in read_topic(kafka, kafka.enriched_topic)
            ]
            if {value["event_id"] for value, _headers in records} >= posts:
                return records
        if time.monotonic() > deadline:
            raise AssertionError(f"not every post was enriched within {timeout_s}s")
        time.sleep(0.5)


def _spans(path: Path) -> list[Span]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _traceparent_ids(value: bytes) -> tuple[str, str]:
    version, trace_id, span_id, flags = value.decode().split("-")
    assert version == "00"
    assert int(flags, 16) & 1, "every post is sampled at ratio 1"
    return trace_id, span_id


def test_one_post_is_one_trace_across_every_stage(
    launch: Launch,
    kafka_settings: KafkaSettings,
    jetstream_data_dir: Path,
    settings: Settings,
    tmp_path: Path,
) -> None:
    tiny: TinyModels = build_tiny_models(settings.cache_dir)
    files = {
        service: tmp_path / f"{service}.jsonl" for service in ("ingest", "enrich", "model-server")
    }
    total_events, posts = _posts_to_enrich(jetstream_data_dir)
    assert len(posts) > 300

    port = free_port()
    server = launch(
        ["serve-models"],
        {
            "STREAMPULSE_SERVING__MODEL_DIRS": orjson.dumps([str(d) for d in tiny.dirs]).decode(),
            "STREAMPULSE_SERVING__PORT": str(port),
            **_tracing_env(files["model-server"]),
        },
    )
    replay = launch(
        ["replay"],
        {
            "STREAMPULSE_REPLAY__PORT": "0",
            "STREAMPULSE_REPLAY__DATA_DIR": str(jetstream_data_dir),
            "STREAMPULSE_REPLAY__SYNTHETIC_EVENTS": str(SYNTHETIC),
            "STREAMPULSE_REPLAY__RATE": "max",
        },
    )
    url = replay.wait_for_output(r"listening on (ws://\S+/subscribe)", timeout_s=60).group(1)
    ingest = launch(
        ["ingest"],
        {
            **_kafka_env(kafka_settings),
            "STREAMPULSE_JETSTREAM__ENDPOINTS": orjson.dumps([url]).decode(),
            "STREAMPULSE_JETSTREAM__COMPRESS": "false",
            **_tracing_env(files["ingest"]),
        },
    )
    server.wait_for_output(r"ready: ner, sentiment, toxicity", timeout_s=180)
    enrich = launch(
        ["enrich"],
        {
            **_kafka_env(kafka_settings),
            "STREAMPULSE_ENRICH__GATEWAY_URL": f"http://127.0.0.1:{port}",
            "STREAMPULSE_ENRICH__GROUP_ID": f"enrich-{kafka_settings.raw_topic}",
            "STREAMPULSE_LOG_FORMAT": "json",
            **_tracing_env(files["enrich"]),
        },
    )
    wait_for_count(kafka_settings, kafka_settings.raw_topic, total_events)
    enriched = _wait_enriched(kafka_settings, posts, enrich)
    for process in (ingest, enrich, server):  # a clean stop flushes the spans
        process.signal(signal.SIGTERM)
        assert process.wait() == 0, process.output()[-3000:]

    spans = {service: _spans(path) for service, path in files.items()}
    by_id: dict[str, Span] = {s["span_id"]: s for service in spans.values() for s in service}
    for service, name in (("ingest", "streampulse-ingest"), ("enrich", "streampulse-enrich")):
        assert {s["service"] for s in spans[service]} == {name}
    assert {s["service"] for s in spans["model-server"]} == {"streampulse-model-server"}

    # ingest: one root span per post it wrote, whose context is the raw record's traceparent
    raw_traceparents = {
        orjson.loads(r.value)["event_id"]: r.headers["traceparent"]
        for r in read_topic(kafka_settings, kafka_settings.raw_topic)
        if "traceparent" in r.headers
    }
    ingest_spans = {s["attributes"]["streampulse.event_id"]: s for s in spans["ingest"]}
    assert set(ingest_spans) >= posts
    for event_id in posts:
        span = ingest_spans[event_id]
        assert span["name"] == "ingest post"
        assert span["parent_span_id"] is None
        assert span["attributes"]["streampulse.collection"] == POST
        assert _traceparent_ids(raw_traceparents[event_id]) == (span["trace_id"], span["span_id"])

    # model server: who each predict span was a child of or linked to, per model
    scored_by: dict[tuple[str, str], set[str]] = defaultdict(set)  # (trace, span) -> models
    for span in spans["model-server"]:
        model = span["attributes"]["streampulse.model"]
        assert span["name"] == f"predict {model}"
        assert span["attributes"]["streampulse.batch_size"] >= 1
        scored_by[span["trace_id"], span["parent_span_id"]].add(model)
        for link in span["links"]:
            scored_by[link["trace_id"], link["span_id"]].add(model)

    services_of: dict[str, set[str]] = defaultdict(set)
    for span in by_id.values():
        services_of[span["trace_id"]].add(span["service"])
    whole_traces = 0
    for value, headers in enriched:
        event_id = value["event_id"]
        trace_id, span_id = _traceparent_ids(headers["traceparent"])
        enrich_span = by_id[span_id]
        assert enrich_span["name"] == "enrich post"
        assert enrich_span["service"] == "streampulse-enrich"
        assert enrich_span["attributes"]["streampulse.event_id"] == event_id
        ingest_span = by_id[enrich_span["parent_span_id"]]
        assert ingest_span is ingest_spans[event_id], "ingest is the parent of enrich"
        assert ingest_span["trace_id"] == enrich_span["trace_id"] == trace_id
        assert ingest_span["start_ns"] <= enrich_span["start_ns"]
        assert scored_by[trace_id, span_id] == set(MODELS), "every model's span leads here"
        if services_of[trace_id] == {
            "streampulse-ingest",
            "streampulse-enrich",
            "streampulse-model-server",
        }:
            whole_traces += 1
    # a request's span is a child of its first post (the others link to it): with requests of
    # up to 32 texts, at least one post in 32 has all three stages in its own trace
    assert whole_traces >= len(posts) // 32
