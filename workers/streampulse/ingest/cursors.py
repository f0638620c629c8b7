"""Where to resume: the raw topic itself is the ingest worker's only state.

The producer is idempotent, so within one partition Kafka holds a gap-free prefix of what was sent
to it. An event that was lost in flight therefore came after the newest event stored in its own
partition. Resuming from the smallest of the partitions' newest ``time_us`` (minus a safety margin
for Jetstream's slightly unordered times and for failover between instances) loses nothing; the
overlap is re-sent and its duplicates carry the same ``event_id``.
"""

from __future__ import annotations

import logging
import time

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as LibKafkaError

from streampulse.errors import KafkaError
from streampulse.kafka import reader_config
from streampulse.settings import KafkaSettings

log = logging.getLogger(__name__)


def _watermarks(consumer: Consumer, partition: TopicPartition, timeout_s: float) -> tuple[int, int]:
    """Low and high offsets, retried while a new partition's leader is still being elected."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=timeout_s)
            return low, high
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _newest_time_us(consumer: Consumer, topic: str, tail: int, timeout_s: float) -> list[int]:
    """The largest ``time_us`` among the last ``tail`` records of each non-empty partition."""
    metadata = consumer.list_topics(topic, timeout=timeout_s)
    info = metadata.topics.get(topic)
    if info is None or info.error is not None:
        return []
    ends: dict[int, int] = {}
    starts: list[TopicPartition] = []
    for partition in info.partitions:
        low, high = _watermarks(consumer, TopicPartition(topic, partition), timeout_s)
        if high > low:
            ends[partition] = high
            starts.append(TopicPartition(topic, partition, max(low, high - tail)))
    if not starts:
        return []
    consumer.assign(starts)
    newest: dict[int, int] = {}
    pending = set(ends)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        partition = message.partition() or 0
        error = message.error()
        if error is not None:
            if error.code() == LibKafkaError._PARTITION_EOF:
                pending.discard(partition)
                continue
            raise KafkaError(f"reading the tail of {topic}: {error}")
        offset = message.offset() or 0
        try:
            time_us = orjson.loads(message.value() or b"{}").get("time_us")
        except orjson.JSONDecodeError:
            time_us = None
        if type(time_us) is int:
            newest[partition] = max(newest.get(partition, 0), time_us)
        if offset + 1 >= ends[partition]:
            pending.discard(partition)
    if pending:
        raise KafkaError(f"timed out reading the tails of {topic} partitions {sorted(pending)}")
    return list(newest.values())


def resume_cursor(
    settings: KafkaSettings, *, tail_records: int, margin_s: float, timeout_s: float = 30.0
) -> int | None:
    """The Jetstream cursor to resume from, or None when the raw topic holds no events yet."""
    consumer = Consumer(reader_config(settings, client_id="streampulse-ingest-cursor"))
    try:
        newest = _newest_time_us(consumer, settings.raw_topic, tail_records, timeout_s)
    except KafkaException as exc:
        raise KafkaError(f"cannot read {settings.raw_topic} to find the cursor") from exc
    finally:
        consumer.close()
    if not newest:
        return None
    cursor = min(newest) - int(margin_s * 1_000_000)
    log.info(
        "resuming from cursor %d (newest per partition: %d..%d, margin %.1fs)",
        cursor,
        min(newest),
        max(newest),
        margin_s,
    )
    return cursor
