"""Read what really landed in Kafka, for assertions."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streampulse.kafka import reader_config
from streampulse.settings import KafkaSettings


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def topic_end_offsets(settings: KafkaSettings, topic: str) -> dict[int, int]:
    consumer = Consumer(reader_config(settings, client_id=f"test-{uuid.uuid4().hex[:6]}"))
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def read_topic(settings: KafkaSettings, topic: str, timeout_s: float = 60.0) -> list[Record]:
    """Every record currently in ``topic``, in partition then offset order."""
    ends = topic_end_offsets(settings, topic)
    consumer = Consumer(reader_config(settings, client_id=f"test-{uuid.uuid4().hex[:6]}"))
    records: list[Record] = []
    try:
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in pending])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic} timed out; partitions left {pending}")
            for message in consumer.consume(10_000, timeout=0.5):
                error = message.error()
                partition = message.partition() or 0
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        if (
                            message.offset() is not None
                            and (message.offset() or 0) >= ends[partition]
                        ):
                            pending.discard(partition)
                        continue
                    raise AssertionError(f"reading {topic}: {error}")
                offset = message.offset() or 0
                records.append(
                    Record(
                        partition,
                        offset,
                        message.key(),
                        message.value() or b"",
                        {k: v or b"" for k, v in message.headers() or []},
                    )
                )
                if offset + 1 >= ends[partition]:
                    pending.discard(partition)
    finally:
        consumer.close()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


def wait_for_count(
    settings: KafkaSettings, topic: str, count: int, timeout_s: float = 120.0
) -> int:
    """Poll the topic's end offsets until they add up to at least ``count``."""
    deadline = time.monotonic() + timeout_s
    total = 0
    while time.monotonic() < deadline:
        try:
            total = sum(topic_end_offsets(settings, topic).values())
        except (KafkaException, KeyError):
            total = 0  # the topic does not exist yet, or its leader is still being elected
        if total >= count:
            return total
        time.sleep(0.2)
    raise AssertionError(f"{topic} holds {total} records, expected at least {count}")
