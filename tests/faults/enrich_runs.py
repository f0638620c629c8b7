"""What the enrich fault tests share: a raw stream written to Kafka, enrich workers run as real
processes (restartable), and the outcome counted from the topics with read_committed readers:
which posts were enriched (how many times), which were dead-lettered, which are missing.

Waiting is on conditions with deadlines. ``settle`` is the watchdog: it returns once every post
is accounted for, and raises ``Hung`` when nothing moved for ``stall_s`` or the deadline passed,
or ``Died`` when the worker exited on its own.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from streampulse.events import DeadLetter, decode_dead_letter
from streampulse.ingest.normalizing import normalize
from streampulse.kafka import ensure_topics, reader_config
from streampulse.replay.streams import build_stream
from streampulse.settings import KafkaSettings, ReplaySettings
from tests.harness.processes import ManagedProcess
from tests.harness.topics import read_topic

POST = "app.bsky.feed.post"


class Hung(AssertionError):
    """No progress within the watchdog's limits while the worker was up."""


class Died(AssertionError):
    """The worker exited although nothing asked it to."""


def write_raw_stream(kafka: KafkaSettings, data_dir: Path, events: int, seed: int = 7) -> set[str]:
    """A realistic synthetic raw stream; returns the event ids of the posts to enrich."""
    ensure_topics(kafka, [kafka.raw_topic, kafka.enriched_topic, kafka.dlq_topic])
    stream = build_stream(
        ReplaySettings(data_dir=data_dir, stream="synthetic", synthetic_events=events, seed=seed)
    )
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5})
    posts: set[str] = set()
    for event in stream.events:
        record = normalize(event.raw, 1)
        if (
            record["collection"] == POST
            and record["text"]
            and record["operation"] in ("create", "update")
        ):
            posts.add(record["event_id"])
        producer.produce(kafka.raw_topic, orjson.dumps(record), record["did"].encode())
        producer.poll(0)
    assert producer.flush(60) == 0
    return posts


def write_backlog(kafka: KafkaSettings, data_dir: Path, records: int) -> int:
    """``records`` likes (skipped by enrich, cheap to read) behind the posts; returns bytes."""
    stream = build_stream(ReplaySettings(data_dir=data_dir, stream="recorded"))
    like = next(
        normalize(e.raw, 1)
        for e in stream.events
        if b'"app.bsky.feed.like"' in e.raw and b'"create"' in e.raw
    )
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 20})
    written = 0
    for n in range(records):
        value = orjson.dumps({**like, "event_id": f"{like['event_id']}-backlog-{n}"})
        written += len(value)
        while True:
            try:
                producer.produce(kafka.raw_topic, value, like["did"].encode())
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    return written


def enrich_env(kafka: KafkaSettings, gateway_url: str, **enrich: object) -> dict[str, str]:
    env = {
        "STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "STREAMPULSE_KAFKA__RAW_TOPIC": kafka.raw_topic,
        "STREAMPULSE_KAFKA__ENRICHED_TOPIC": kafka.enriched_topic,
        "STREAMPULSE_KAFKA__DLQ_TOPIC": kafka.dlq_topic,
        "STREAMPULSE_KAFKA__PARTITIONS": str(kafka.partitions),
        "STREAMPULSE_ENRICH__GATEWAY_URL": gateway_url,
        "STREAMPULSE_ENRICH__GROUP_ID": f"enrich-{kafka.raw_topic}",
        # a killed worker's partitions move on after 6 s (the brokers' minimum), not 45 s
        "STREAMPULSE_ENRICH__SESSION_TIMEOUT_S": "6",
    }
    env.update({f"STREAMPULSE_ENRICH__{k.upper()}": str(v) for k, v in enrich.items()})
    return env


@dataclass
class Outcome:
    """Posts sent, and what the topics hold for them (read_committed)."""

    posts: set[str]
    enriched: Counter[str] = field(default_factory=Counter)
    dead: dict[str, DeadLetter] = field(default_factory=dict)  # event id -> its dead letter

    @property
    def delivered(self) -> int:
        return len(self.posts & set(self.enriched))

    @property
    def dead_lettered(self) -> int:
        return len(self.posts & set(self.dead))

    @property
    def duplicated(self) -> int:
        return sum(n - 1 for n in self.enriched.values())

    @property
    def lost(self) -> int:
        return len(self.posts - set(self.enriched) - set(self.dead))

    @property
    def settled(self) -> bool:
        return self.lost == 0

    def add(self, topic_kind: str, value: bytes) -> None:
        if topic_kind == "enriched":
            self.enriched[orjson.loads(value)["event_id"]] += 1
        else:
            letter, original = decode_dead_letter(value)
            try:
                event_id = orjson.loads(original)["event_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                event_id = f"unreadable-{len(self.dead)}"
            self.dead[str(event_id)] = letter


def final_outcome(kafka: KafkaSettings, posts: set[str]) -> Outcome:
    """The authoritative count, once the workers stopped: whole topics, read_committed."""
    outcome = Outcome(posts)
    for kind, topic in (("enriched", kafka.enriched_topic), ("dlq", kafka.dlq_topic)):
        for record in read_topic(kafka, topic, timeout_s=120):
            outcome.add(kind, record.value)
    return outcome


def uncommitted_records(kafka: KafkaSettings, topic: str) -> int:
    """Records in ``topic`` that read_committed readers never see (aborted transactions)."""
    config = {**reader_config(kafka, client_id=f"test-{uuid.uuid4().hex[:6]}")}
    config["isolation.level"] = "read_uncommitted"
    consumer = Consumer(config)
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end])
        seen, pending, deadline = 0, {p for p, end in ends.items() if end}, time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=0.5):
                partition = message.partition() or 0
                if message.error() is None:
                    seen += 1
                if (message.offset() or 0) + 1 >= ends[partition]:
                    pending.discard(partition)
        assert not pending, f"reading {topic} uncommitted timed out"
    finally:
        consumer.close()
    return seen - len(read_topic(kafka, topic, timeout_s=120))


class Tail:
    """A read_committed reader of the enriched and dead-letter topics, counting as it goes."""

    def __init__(self, kafka: KafkaSettings, posts: set[str]) -> None:
        self.outcome = Outcome(posts)
        self._kinds = {kafka.enriched_topic: "enriched", kafka.dlq_topic: "dlq"}
        self._consumer = Consumer(reader_config(kafka, client_id=f"tail-{uuid.uuid4().hex[:6]}"))
        metadata = self._consumer.list_topics(timeout=10)
        self._consumer.assign(
            [
                TopicPartition(topic, p, 0)
                for topic in self._kinds
                for p in metadata.topics[topic].partitions
            ]
        )

    def poll(self) -> int:
        """Read what is new; returns how many records came."""
        count = 0
        for message in self._consumer.consume(10_000, timeout=0.2):
            if message.error() is None:
                self.outcome.add(self._kinds[message.topic() or ""], message.value() or b"")
                count += 1
        return count

    def seen(self) -> int:
        return sum(self.outcome.enriched.values()) + len(self.outcome.dead)

    def close(self) -> None:
        self._consumer.close()


def settle(
    tail: Tail,
    worker: ManagedProcess,
    *,
    deadline_s: float,
    stall_s: float,
    until: Callable[[Outcome], bool] = lambda o: o.settled,
) -> float:
    """Wait until ``until(outcome)``: the watchdog. Returns the seconds it took."""
    started = time.monotonic()
    moved = started
    while not until(tail.outcome):
        now = time.monotonic()
        if tail.poll():
            moved = now
        elif worker.process.poll() is not None:
            raise Died(f"enrich exited {worker.process.returncode}:\n{worker.output()[-3000:]}")
        elif now - moved > stall_s or now - started > deadline_s:
            o = tail.outcome
            raise Hung(
                f"no progress for {now - moved:.0f} s ({now - started:.0f} s in): "
                f"{o.delivered} enriched, {o.dead_lettered} dead-lettered, {o.lost} missing"
            )
    return time.monotonic() - started


def wait_until(
    check: Callable[[], bool], what: str, timeout_s: float, every_s: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise Hung(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(every_s)


class Watermarks:
    """The enriched topic's high watermarks (uncommitted records included): a progress trigger
    that fires mid-transaction as well as between cycles."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._topic = kafka.enriched_topic
        self._consumer = Consumer(reader_config(kafka, client_id=f"marks-{kafka.raw_topic}"))
        self._partitions = list(
            self._consumer.list_topics(self._topic, timeout=10).topics[self._topic].partitions
        )

    def total(self) -> int:
        return sum(
            self._consumer.get_watermark_offsets(
                TopicPartition(self._topic, p), timeout=10, cached=False
            )[1]
            for p in self._partitions
        )

    def close(self) -> None:
        self._consumer.close()


class Workers:
    """Enrich workers started (and restarted) as processes; all stopped at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self._logs = logs
        self.started: list[ManagedProcess] = []

    def start(self, **extra: str) -> ManagedProcess:
        env = {**self.env, **extra}
        log = self._logs / f"enrich-{len(self.started)}.log"
        process = ManagedProcess.streampulse(["enrich"], env, log)
        self.started.append(process)
        return process

    def kill(self, worker: ManagedProcess) -> None:
        worker.signal(signal.SIGKILL)
        worker.wait(timeout_s=30)

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop(timeout_s=60)
