"""Kafka clients, configured from ``KafkaSettings`` in exactly one place.

Every librdkafka property name the project uses appears in this module and nowhere else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streampulse.errors import KafkaError
from streampulse.settings import KafkaSettings

log = logging.getLogger(__name__)


def producer_config(settings: KafkaSettings, *, client_id: str) -> dict[str, Any]:
    """An idempotent, acks=all producer: no duplicates or reordering from its own retries."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": settings.compression,
        "linger.ms": settings.linger_ms,
        "batch.size": settings.batch_size_bytes,
        "delivery.timeout.ms": settings.delivery_timeout_ms,
        "queue.buffering.max.messages": settings.queue_max_messages,
        "queue.buffering.max.kbytes": 1024 * 1024,
        "statistics.interval.ms": 0,
    }


def gapless_producer_config(settings: KafkaSettings, *, client_id: str) -> dict[str, Any]:
    """An idempotent producer that never gives up on a record by itself (no message timeout).

    librdkafka may report a record as timed out and then deliver later ones of the same
    partition (it resets the idempotent sequence), a gap. Without its timeout it retries until
    the broker answers, so a partition keeps a gap-free prefix of what it was given; the caller
    enforces ``delivery_timeout_ms`` itself (no acknowledgement for that long: stop the process).
    """
    return {**producer_config(settings, client_id=client_id), "delivery.timeout.ms": 0}


def transactional_producer_config(
    settings: KafkaSettings,
    *,
    client_id: str,
    transactional_id: str,
    transaction_timeout_ms: int = 60_000,
) -> dict[str, Any]:
    """A producer whose writes and consumer offsets commit atomically (exactly-once).

    The broker aborts a transaction left open ``transaction_timeout_ms`` (its producer died);
    librdkafka requires a record's delivery timeout not to exceed it.
    """
    return {
        **producer_config(settings, client_id=client_id),
        "transactional.id": transactional_id,
        "transaction.timeout.ms": transaction_timeout_ms,
        "delivery.timeout.ms": min(settings.delivery_timeout_ms, transaction_timeout_ms),
    }


def consumer_config(
    settings: KafkaSettings,
    *,
    group_id: str,
    client_id: str,
    auto_commit: bool = False,
    session_timeout_ms: int | None = None,
    max_poll_interval_ms: int | None = None,
    prefetch_kbytes: int | None = None,
) -> dict[str, Any]:
    """A consumer that reads only committed records and commits offsets when told to.

    ``session_timeout_ms``: how long the group waits for a silent member (heartbeats at a third
    of it, at most every 3 s); ``max_poll_interval_ms``: the longest time between two polls
    before the member is considered stuck and leaves the group; ``prefetch_kbytes``: the most
    records, in KiB, fetched ahead of the application (plus at most one fetch). None:
    librdkafka's defaults (45 s, 300 s, 64 MiB).
    """
    tuning: dict[str, Any] = {}
    if session_timeout_ms is not None:
        tuning["session.timeout.ms"] = session_timeout_ms
        tuning["heartbeat.interval.ms"] = max(100, min(3000, session_timeout_ms // 3))
    if max_poll_interval_ms is not None:
        tuning["max.poll.interval.ms"] = max_poll_interval_ms
    if prefetch_kbytes is not None:
        tuning["queued.max.messages.kbytes"] = prefetch_kbytes
    return {
        **tuning,
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": group_id,
        "client.id": client_id,
        "enable.auto.commit": auto_commit,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": False,
    }


def reader_config(settings: KafkaSettings, *, client_id: str) -> dict[str, Any]:
    """A consumer used with ``assign()`` only: it never joins a group or commits."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": f"{client_id}-reader",
        "client.id": client_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
    }


def admin_client(settings: KafkaSettings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap_servers})


def _wait_for_leaders(admin: AdminClient, topics: list[str], timeout_s: float) -> None:
    """Block until every partition of ``topics`` has a leader (new topics need a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        metadata = admin.list_topics(timeout=timeout_s)
        ready = all(
            topic in metadata.topics
            and metadata.topics[topic].error is None
            and metadata.topics[topic].partitions
            and all(p.leader >= 0 for p in metadata.topics[topic].partitions.values())
            for topic in topics
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise KafkaError(f"topics {topics} have partitions without a leader")
        time.sleep(0.1)


def ensure_topics(
    settings: KafkaSettings, topics: Iterable[str], *, timeout_s: float = 30.0
) -> None:
    """Create the topics that do not exist yet, with the configured partitions and retention."""
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise KafkaError(f"cannot reach Kafka at {settings.bootstrap_servers}") from exc
    missing = [topic for topic in topics if topic not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [
            NewTopic(
                topic,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                config={
                    "retention.ms": str(settings.retention_ms),
                    "compression.type": "producer",
                },
            )
            for topic in missing
        ],
        operation_timeout=timeout_s,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            log.info("created topic %s (%d partitions)", topic, settings.partitions)
        except KafkaException as exc:
            if exc.args and exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                continue
            raise KafkaError(f"cannot create topic {topic}") from exc
    _wait_for_leaders(admin, missing, timeout_s)
