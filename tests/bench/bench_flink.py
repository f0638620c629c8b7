"""make bench-flink: 500,000 events through the Flink job into Paimon, at parallelism 1 and 2.

Events: the replay's synthetic stream at the real rate profile (likes, posts, reposts, follows
... as Jetstream sends them), normalized by the ingest code; every post also goes to the
enriched topic with a toxicity score and entities, as the enrich worker writes it. The events
are produced to Kafka first (2 partitions), then the job starts from the earliest offsets.

- Throughput: events / (time from every task of the job running until every raw event is
  counted in ``volume_per_minute`` and every enriched post is in ``enriched_posts``, committed
  by a checkpoint); a final event an hour later, in every partition, closes every window. The
  time before, from submitting the job until its tasks run (deploying them, compiling their
  generated code, joining the consumer group), is a one-time start-up cost, printed apart.
- Freshness: afterwards, posts produced at 20/s for a minute; each post's freshness is the time
  from its produce acknowledgement until it is readable in ``enriched_posts`` (polled through
  pypaimon every 0.25 s), with a 10 s checkpoint interval.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from streampulse.enrich.records import ENTITIES, TOXICITY, enriched_record
from streampulse.errors import MalformedEvent
from streampulse.ingest.normalizing import normalize
from streampulse.kafka import ensure_topics, producer_config
from streampulse.lakehouse.reading import Lakehouse
from streampulse.local.iceberg_rest import warehouse_uri
from streampulse.local.kafka_broker import KafkaBroker, ensure_kafka
from streampulse.local.ports import free_port
from streampulse.local.status import fetch_flink_progress
from streampulse.replay.streams import build_stream
from streampulse.settings import KafkaSettings, PaimonSettings, ReplaySettings, Settings
from tests.harness.flink import FlinkJob, flink_environment
from tests.harness.kube.process import wait_until

EVENTS = int(os.environ.get("BENCH_FLINK_EVENTS", "500000"))
FRESHNESS_RATE = 20.0
FRESHNESS_S = float(os.environ.get("BENCH_FLINK_FRESHNESS_S", "60"))
CHECKPOINT_MS = 10_000
POST = "app.bsky.feed.post"
ENTITY_POOL = ["Bluesky:ORG", "Paris:LOC", "Alice:PER", "NASA:ORG", "Tokyo:LOC", "Bob:PER"]


def _enriched(event: dict[str, Any], n: int) -> bytes:
    entity = ENTITY_POOL[n % len(ENTITY_POOL)].split(":")
    predictions = {
        TOXICITY: {"label": "toxic", "scores": {"toxic": (n % 100) / 100}},
        ENTITIES: {"entities": [
            {"text": entity[0], "label": entity[1], "start": 0, "end": 4, "score": 0.9}
        ]},
    }  # fmt: skip
    return enriched_record(event, predictions, {TOXICITY: "1", ENTITIES: "1"}, event["time_us"])


def build_events(
    data_dir: Path | None, events: int = EVENTS
) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """(key, raw value) for ``events`` normalized events, and the enriched records of the posts."""
    stream = build_stream(
        ReplaySettings(data_dir=data_dir, stream="synthetic", synthetic_events=events)
    )
    raw: list[tuple[bytes, bytes]] = []
    enriched: list[bytes] = []
    for n, event in enumerate(stream.events):
        try:
            record = dict(normalize(event.raw, 1))
        except MalformedEvent:
            continue
        raw.append((record["did"].encode(), orjson.dumps(record)))
        if record["collection"] == POST and record["operation"] == "create" and record["text"]:
            enriched.append(_enriched(record, n))
    return raw, enriched


def _produce(
    kafka: KafkaSettings,
    topic: str,
    records: list[tuple[bytes, bytes]],
    closing: Sequence[tuple[int, bytes]] = (),
) -> None:
    """The records by key, then each closing record to its own partition."""
    producer = Producer(producer_config(kafka, client_id="bench-flink"))
    for key, value in records:
        _send(producer, topic, value=value, key=key)
    for partition, value in closing:
        _send(producer, topic, value=value, partition=partition)
    assert producer.flush(120) == 0


def _send(producer: Producer, topic: str, **message: Any) -> None:
    """Produce one message, waiting for room in the producer's queue when it is full."""
    while True:
        try:
            producer.produce(topic, **message)
            return
        except BufferError:
            producer.poll(0.1)


def load_topics(
    broker: KafkaBroker, raw: list[tuple[bytes, bytes]], posts: list[bytes]
) -> KafkaSettings:
    """The bench's two topics on ``broker`` (2 partitions), holding ``raw`` and ``posts`` and,
    after them, events that close every window."""
    kafka = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, partitions=2,
        raw_topic="bench.raw", enriched_topic="bench.enriched",
    )  # fmt: skip
    ensure_topics(kafka, [kafka.raw_topic, kafka.enriched_topic])
    last_time_us = max(orjson.loads(v)["time_us"] for _k, v in raw[-1000:])
    _produce(kafka, kafka.raw_topic, raw, _closing_events(last_time_us, kafka.partitions))
    _produce(kafka, kafka.enriched_topic, [(b"k", v) for v in posts])
    return kafka


def _closing_events(last_time_us: int, partitions: int) -> list[tuple[int, bytes]]:
    """(partition, like) an hour of event time later, for every partition of the raw topic.

    Their watermark closes every window before them. Each partition needs its own: the source's
    watermark is the least of its partitions', and a partition that has gone idle drops out of
    it only while another is still active; once all are idle it stays where it was, so a
    partition without the closing event would hold the last minute open.
    """
    t = last_time_us + 3600 * 1_000_000
    events = []
    for partition in range(partitions):
        like = {
            "schema_version": 1, "did": "did:plc:bench", "time_us": t,
            "event_id": f"did:plc:bench/app.bsky.feed.like/close{partition}@{t}",
            "kind": "commit", "operation": "create", "collection": "app.bsky.feed.like",
            "rkey": f"close{partition}", "rev": "1", "cid": "c",
            "ingested_at_us": t, "subject_uri": "at://did:plc:bench/app.bsky.feed.post/x",
        }  # fmt: skip
        events.append((partition, orjson.dumps(like)))
    return events


def _wait_all_counted(
    lakehouse: Lakehouse, expected: tuple[int, int], deadline: float
) -> float | None:
    """The monotonic time at which every raw event and enriched post is counted; None: never.

    The tables are read (only the columns counted) when one of them has a new snapshot, not
    at every poll: the job commits once per checkpoint, and reads compete with it for the CPU.
    """
    raw_events, posts = expected
    seen: tuple[int | None, int | None] = (None, None)
    while time.monotonic() < deadline:
        tables = lakehouse.tables()
        if "volume_per_minute" in tables and "enriched_posts" in tables:
            snapshots = (
                lakehouse.snapshot_id("volume_per_minute"),
                lakehouse.snapshot_id("enriched_posts"),
            )
            if snapshots != seen and None not in snapshots:
                seen = snapshots
                counted = lakehouse.read("volume_per_minute", ["events"]).column("events")
                stored = lakehouse.read("enriched_posts", ["event_id"]).num_rows
                if sum(counted.to_pylist()) >= raw_events and stored >= posts:
                    return time.monotonic()
        time.sleep(0.25)
    return None


def _tasks_running_at(rest_url: str) -> float | None:
    """Now (monotonic) if every task of the (only) job is running, else None."""
    progress = fetch_flink_progress(rest_url)
    return time.monotonic() if progress is not None and progress.all_tasks_running else None


def paimon_settings(work: Path, parallelism: int) -> PaimonSettings:
    """One run's warehouse, as a ``file:`` URI: the job's as ``streampulse up`` gives it (Paimon
    writes the Iceberg metadata's paths as given, and Trino needs a scheme)."""
    return PaimonSettings(warehouse=warehouse_uri(str(work / f"warehouse-p{parallelism}")))


def run_throughput(
    settings: Settings,
    kafka: KafkaSettings,
    parallelism: int,
    work: Path,
    expected: tuple[int, int],
) -> tuple[float, float, FlinkJob, Lakehouse]:
    """Start the job over the backlog: (start-up seconds, seconds until every event is counted)."""
    paimon = paimon_settings(work, parallelism)
    lakehouse = Lakehouse.open(paimon, work / "unused")
    rest_port = free_port()
    job = FlinkJob(
        flink_environment(settings.cache_dir),
        {
            "bootstrap_servers": kafka.bootstrap_servers,
            "raw_topic": kafka.raw_topic,
            "enriched_topic": kafka.enriched_topic,
            "group_id": f"bench-{uuid.uuid4().hex[:6]}",
            "warehouse": paimon.warehouse,
            "checkpoint_interval_ms": CHECKPOINT_MS,
            "checkpoint_dir": (work / f"checkpoints-p{parallelism}").as_uri(),
            "parallelism": parallelism,
            "rest_port": rest_port,
        },
        work / f"job-p{parallelism}.log",
        {"JVM_ARGS": "-Xmx2g"},
    )
    job.wait_started(timeout_s=300)
    submitted = time.monotonic()
    # a REST answer slower than the reader's timeout while the tasks deploy is asked again
    running: float = wait_until(
        lambda: _tasks_running_at(f"http://127.0.0.1:{rest_port}"),
        timeout=300, what="every task of the job running", interval=0.1,
    )  # fmt: skip
    finished = _wait_all_counted(lakehouse, expected, deadline=running + 1800)
    if finished is not None:
        return running - submitted, finished - running, job, lakehouse
    job.stop()
    raise AssertionError(f"p{parallelism}: not every event counted within 30 minutes")


def run_freshness(kafka: KafkaSettings, lakehouse: Lakehouse, last_time_us: int) -> list[float]:
    """Seconds from produce acknowledgement to visible in enriched_posts, per probe post."""
    producer = Producer(producer_config(kafka, client_id="bench-flink-fresh"))
    acked: dict[str, float] = {}
    visible: dict[str, float] = {}

    def on_ack(err: Any, msg: Any) -> None:
        if err is None:
            acked[orjson.loads(msg.value())["event_id"]] = time.monotonic()

    count = int(FRESHNESS_RATE * FRESHNESS_S)
    start = time.monotonic()
    seen_snapshot: int | None = None
    n = 0
    while len(visible) < count and time.monotonic() - start < FRESHNESS_S + 120:
        while n < count and time.monotonic() - start >= n / FRESHNESS_RATE:
            t = last_time_us + 3600 * 1_000_000 + int((time.monotonic() - start) * 1e6)
            event = {
                "schema_version": 1, "event_id": f"did:plc:fresh/{POST}/p{n}@1",
                "did": "did:plc:fresh", "time_us": t, "kind": "commit", "operation": "create",
                "collection": POST, "rkey": f"p{n}", "rev": "1", "cid": "c",
                "ingested_at_us": t, "text": f"fresh {n}", "langs": ["en"],
            }  # fmt: skip
            producer.produce(
                kafka.enriched_topic, _enriched(event, n), b"fresh", on_delivery=on_ack
            )
            n += 1
        producer.poll(0)
        snapshot = lakehouse.snapshot_id("enriched_posts")
        if snapshot != seen_snapshot:
            seen_snapshot = snapshot
            now = time.monotonic()
            ids = lakehouse.read("enriched_posts", ["event_id"]).column("event_id").to_pylist()
            for event_id in ids:
                if event_id.startswith("did:plc:fresh/") and event_id not in visible:
                    visible[event_id] = now
        time.sleep(0.25)
    producer.flush(30)
    return [visible[e] - acked[e] for e in visible if e in acked]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    settings = Settings()
    print(f"building {EVENTS:,} events ...", flush=True)
    raw, posts = build_events(settings.replay.data_dir)
    last_time_us = max(orjson.loads(v)["time_us"] for _k, v in raw[-1000:])
    results: dict[int, float] = {}
    startup: dict[int, float] = {}
    fresh: list[float] = []
    # the jobs' last checkpoint files may still be settling when the directory goes
    with tempfile.TemporaryDirectory(prefix="bench-flink-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        libs = ensure_kafka(settings.cache_dir, settings.local.kafka_version)
        with KafkaBroker(libs=libs, data_dir=work / "kafka", heap_mb=1024) as broker:
            t0 = time.monotonic()
            kafka = load_topics(broker, raw, posts)
            print(f"produced {len(raw):,} raw + {len(posts):,} enriched in "
                  f"{time.monotonic() - t0:.1f}s", flush=True)  # fmt: skip
            unique_raw = len({orjson.loads(v)["event_id"] for _k, v in raw})  # duplicates: once
            expected = (unique_raw, len(posts))
            for parallelism in (1, 2):
                startup[parallelism], seconds, job, lakehouse = run_throughput(
                    settings, kafka, parallelism, work, expected
                )
                results[parallelism] = (len(raw) + len(posts)) / seconds
                print(
                    f"p{parallelism}: tasks running {startup[parallelism]:.1f}s after "
                    f"submission, every event counted {seconds:.1f}s later",
                    flush=True,
                )
                try:
                    if parallelism == 1:
                        fresh = run_freshness(kafka, lakehouse, last_time_us)
                finally:
                    job.stop()
    p50, p95 = statistics.median(fresh), _pct(fresh, 0.95)
    print()
    print(f"{'figure':<34}{'value':>12}")
    print(f"{'events in (raw + enriched)':<34}{len(raw) + len(posts):>12,}")
    print(f"{'events/s, parallelism 1':<34}{results[1]:>12,.0f}")
    print(f"{'events/s, parallelism 2':<34}{results[2]:>12,.0f}")
    print(f"{'start-up p1 / p2 (s)':<34}{f'{startup[1]:.1f} / {startup[2]:.1f}':>12}")
    print(f"{'freshness p50 (s), 10 s ckpt':<34}{p50:>12.1f}")
    print(f"{'freshness p95 (s), 10 s ckpt':<34}{p95:>12.1f}")
    print(f"{'probe posts seen':<34}{len(fresh):>12}")
    print(orjson.dumps({
        "bench": "flink", "events_per_s_p1": round(results[1], 1),
        "events_per_s_p2": round(results[2], 1), "freshness_p50_s": round(p50, 2),
        "freshness_p95_s": round(p95, 2),
    }).decode())  # fmt: skip


if __name__ == "__main__":
    main()
